"""Tags: given at publish, in a batch or on `POST /tasks`; shown in views and summaries; found by `GET /tasks?tag=`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.operate import listing
from chalicelib.tasks.index import SHARDS
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness, fail_until_last

JSON = {"Content-Type": "application/json"}
RULE = "must be 1 to 64 characters of A-Z, a-z, 0-9 and _ . : = -"
REPEAT = "repeats the tag at index {}: each tag may be given once"
TOO_MANY = "List should have at most 10 items after validation, not 11"


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any) -> tuple[int, Any]:
    response = h.client.http.post(path, body=json.dumps(body), headers=JSON)
    return response.status_code, json.loads(response.body)


def get(h: Harness, path: str) -> tuple[int, Any]:
    response = h.client.http.get(path)
    return response.status_code, json.loads(response.body)


def details(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(detail["field"], detail["message"]) for detail in body["error"]["details"]]


def cancelled(h: Harness, task_id: str, tags: list[str], task_type: str = "simulate") -> None:
    """A task published with `tags` and cancelled while PENDING: it is listed under CANCELLED."""
    payload = {"text": "x"} if task_type == "checksum" else {}
    assert post(h, "/publish", {"id": task_id, "type": task_type, "payload": payload, "tags": tags})[0] == 201
    assert h.client.http.post(f"/tasks/{task_id}/cancel", headers=JSON).status_code == 200
    h.clock.advance(0.001)


def ids(page: dict[str, Any]) -> list[str]:
    return [task["id"] for task in page["tasks"]]


def test_tags_given_at_publish_are_shown_in_the_view_in_their_order(h: Harness) -> None:
    tags = ["env=prod", "team:billing", "order.1234", "A_b-9"]
    assert post(h, "/publish", {"id": "tagged", "payload": SUCCEEDS, "tags": tags})[0] == 201
    h.publish("plain", SUCCEEDS)

    assert h.task("tagged")["tags"] == tags
    assert h.task("plain")["tags"] == []


def test_tags_stay_with_the_task_through_its_run_and_an_operator_s_retry(h: Harness) -> None:
    assert post(h, "/publish", {"id": "kept", "payload": FAILS, "tags": ["keep"]})[0] == 201
    fail_until_last(h, "kept")
    assert (h.task("kept")["status"], h.task("kept")["tags"]) == ("FAILED", ["keep"])

    assert h.client.http.post("/tasks/kept/retry", headers=JSON).status_code == 202
    (record,) = h.deliver().records

    assert json.loads(record["body"])["tags"] == ["keep"]  # the retry's message carries them too
    assert h.task("kept")["tags"] == ["keep"]


def test_a_task_the_consumer_stores_from_its_message_keeps_the_message_s_tags(h: Harness) -> None:
    # What a publish that died after its send leaves: the message, no item.
    h.send_raw(json.dumps({"id": "adopted", "payload": SUCCEEDS, "tags": ["from-message"]}))

    h.deliver()

    assert (h.task("adopted")["status"], h.task("adopted")["tags"]) == ("COMPLETED", ["from-message"])


def test_batch_entries_take_tags_and_a_bad_tag_refuses_only_its_entry(h: Harness) -> None:
    batch = {
        "tasks": [
            {"id": "b1", "payload": SUCCEEDS, "tags": ["batch", "first"]},
            {"id": "b2", "payload": SUCCEEDS, "tags": ["batch", "no spaces"]},
            {"id": "b3", "payload": SUCCEEDS},
        ]
    }

    status, answer = post(h, "/publish/batch", batch)

    assert status == 200
    first, refused, plain = answer["results"]
    assert first["duplicate"] is False and plain["duplicate"] is False
    assert refused["id"] == "b2" and details(refused) == [("tags[1]", f"{RULE} (U+0020 at position 2 is not)")]
    assert (h.task("b1")["tags"], h.task("b3")["tags"]) == (["batch", "first"], [])


def test_post_tasks_takes_its_tags_as_repeated_tag_parameters(h: Harness) -> None:
    response = h.client.http.post("/tasks?tag=web&tag=signup&priority=high", body=json.dumps(SUCCEEDS), headers=JSON)

    assert response.status_code == 201, response.body
    view = h.task(json.loads(response.body)["id"])
    assert (view["tags"], view["priority"]) == (["web", "signup"], "high")


def test_a_bad_tag_on_post_tasks_is_a_400_naming_the_tag_parameter_by_its_place(h: Harness) -> None:
    for query, expected in [
        ("tag=ok&tag=not%2Fok", ("tag[1]", f"{RULE} (U+002F at position 3 is not)")),
        ("tag=ok&tag=fine&tag=ok", ("tag[2]", REPEAT.format(0))),
    ]:
        response = h.client.http.post(f"/tasks?{query}", body=json.dumps(SUCCEEDS), headers=JSON)

        assert response.status_code == 400
        assert details(json.loads(response.body)) == [expected]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([f"t{n}" for n in range(11)], [("tags", TOO_MANY)]),
        (["x" * 65], [("tags[0]", f"{RULE} (this one has 65)")]),
        ([""], [("tags[0]", f"{RULE} (this one has 0)")]),
        (["caf\u00e9"], [("tags[0]", f"{RULE} (U+00E9 at position 3 is not)")]),
        (
            ["a", "b", "a", "b"],
            [
                ("tags[2]", REPEAT.format(0)),
                ("tags[3]", REPEAT.format(1)),
            ],
        ),
        (["ok", 5], [("tags[1]", "Input should be a valid string")]),
        ("a,b", [("tags", "Input should be a valid list")]),
        (None, [("tags", "Input should be a valid list")]),
    ],
)
def test_a_publish_whose_tags_break_a_rule_is_a_400_naming_each_tag_and_the_rule(
    h: Harness, tags: Any, expected: list[tuple[str, str]]
) -> None:
    status, body = post(h, "/publish", {"id": "refused", "payload": SUCCEEDS, "tags": tags})

    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert details(body) == expected
    assert get(h, "/tasks/refused")[0] == 404


def test_ten_tags_of_64_characters_are_accepted(h: Harness) -> None:
    tags = [f"{n}{'x' * 63}" for n in range(10)]

    assert post(h, "/publish", {"id": "full", "payload": SUCCEEDS, "tags": tags})[0] == 201
    assert h.task("full")["tags"] == tags


def test_summaries_show_tags_and_a_tag_narrows_the_listing(h: Harness) -> None:
    cancelled(h, "red-1", ["red"])
    cancelled(h, "blue-1", ["blue", "big"])
    cancelled(h, "red-2", ["red", "big"])
    cancelled(h, "none", [])

    status, everything = get(h, "/tasks?status=CANCELLED")
    assert status == 200
    assert [(task["id"], task["tags"]) for task in everything["tasks"]] == [
        ("none", []),
        ("red-2", ["red", "big"]),
        ("blue-1", ["blue", "big"]),
        ("red-1", ["red"]),
    ]
    assert ids(get(h, "/tasks?status=CANCELLED&tag=red")[1]) == ["red-2", "red-1"]
    # Given again, a tag narrows further: tasks carrying every one given, in any order.
    assert ids(get(h, "/tasks?status=CANCELLED&tag=big&tag=red")[1]) == ["red-2"]
    assert ids(get(h, "/tasks?status=CANCELLED&tag=red&tag=big")[1]) == ["red-2"]
    assert get(h, "/tasks?status=CANCELLED&tag=green")[1] == {"tasks": [], "nextCursor": None}
    # A tag is matched whole: "re" is not "red".
    assert ids(get(h, "/tasks?status=CANCELLED&tag=re")[1]) == []


def test_a_tag_and_a_type_narrow_the_listing_together(h: Harness) -> None:
    cancelled(h, "s", ["nightly"])
    cancelled(h, "c", ["nightly"], task_type="checksum")
    cancelled(h, "c-other", ["weekly"], task_type="checksum")

    assert ids(get(h, "/tasks?status=CANCELLED&tag=nightly&type=checksum")[1]) == ["c"]


def test_a_tag_that_few_tasks_carry_is_found_page_by_page_within_a_read_budget(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 2
    monkeypatch.setattr(listing, "FILTERED_READ_BUDGET", budget)
    for n in range(48):
        cancelled(h, f"task-{n:02}", ["rare"] if n in (3, 30) else ["common"])
    queries: list[dict[str, Any]] = []

    def record(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        queries.append(parsed)

    h.rt.store.client.meta.events.register("after-call.dynamodb.Query", record)

    found: list[str] = []
    pages, cursor, read_per_page = 0, None, []
    while True:
        queries.clear()
        status, page = get(h, "/tasks?status=CANCELLED&tag=rare&limit=5" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        pages += 1
        found += ids(page)
        read_per_page.append(sum(query["ScannedCount"] for query in queries))
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert pages < 48, "the cursor never ran out"

    assert found == ["task-30", "task-03"]  # each once, newest first
    assert pages > 2  # the budget cut pages short, and their cursors went on
    assert max(read_per_page) <= SHARDS * budget  # no page read more than its budget


def test_a_page_that_spent_its_budget_before_any_match_is_empty_with_a_cursor(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "FILTERED_READ_BUDGET", 1)
    for n in range(30):
        cancelled(h, f"task-{n:02}", ["rare"] if n == 0 else [])

    status, page = get(h, "/tasks?status=CANCELLED&tag=rare")

    assert status == 200 and page["tasks"] == [] and page["nextCursor"]


def test_a_tag_filter_s_cursor_resumes_only_the_same_tags(h: Harness) -> None:
    for n in range(3):
        cancelled(h, f"t{n}", ["a", "b"])
    _, page = get(h, "/tasks?status=CANCELLED&tag=a&tag=b&limit=1")
    cursor = page["nextCursor"]
    assert cursor

    assert ids(get(h, f"/tasks?status=CANCELLED&tag=b&tag=a&limit=1&cursor={cursor}")[1]) == ["t1"]
    for other in ("", "&tag=a", "&tag=c&tag=b"):
        status, body = get(h, f"/tasks?status=CANCELLED&limit=1&cursor={cursor}{other}")
        assert status == 400 and details(body)[0][0] == "cursor", other


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag=", ("tag[0]", f"{RULE} (this one has 0)")),
        (f"tag={quote('a b')}", ("tag[0]", f"{RULE} (U+0020 at position 1 is not)")),
        ("tag=a&tag=a", ("tag[1]", REPEAT.format(0))),
        ("&".join(f"tag=t{n}" for n in range(11)), ("tag", TOO_MANY)),
    ],
)
def test_a_bad_tag_filter_is_a_400_naming_the_tag_and_the_rule(
    client: Client, query: str, expected: tuple[str, str]
) -> None:
    response = client.http.get(f"/tasks?status=FAILED&{query}")

    assert response.status_code == 400
    assert details(json.loads(response.body)) == [expected]


def test_behind_api_gateway_repeated_tags_all_narrow_the_listing(h: Harness) -> None:
    import app
    from tests.integration.test_api_gateway_events import gateway_event

    cancelled(h, "both", ["x", "y"])
    cancelled(h, "one", ["x"])
    event = gateway_event("GET", "/tasks", "/tasks")
    event["queryStringParameters"] = {"status": "CANCELLED", "tag": "y"}
    event["multiValueQueryStringParameters"] = {"status": ["CANCELLED"], "tag": ["x", "y"]}

    answer = app.app(event, None)

    assert answer["statusCode"] == 200, answer
    assert ids(json.loads(answer["body"])) == ["both"]
