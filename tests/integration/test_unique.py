"""Unique tasks: `uniqueKey` with `uniqueFor` or `uniqueUntil: "terminal"`, claimed in the flow table.

Each test drives the API over Chalice's test client against moto; the holder's end comes from
the real consumer (tests/integration/lambda_sqs.py), and the races run real threads against
moto with its writes made atomic (local/atomic_dynamodb.py), as DynamoDB's are.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.consume.consumer import ADOPTION_REPAIR_MS
from chalicelib.flow.unique import KEY_PREFIX, MESSAGE_LIFETIME_MS, UniqueKeys, Uniqueness
from chalicelib.publish import api
from chalicelib.tasks.record import iso_from_ms
from infra import stack
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness
from tests.integration.test_batch_publish import publish_batch, queued_ids, record_metrics, results_of
from tests.integration.test_never_stranded import ProcessKilled, drain, killed_after

JSON = {"Content-Type": "application/json"}
WINDOW = {"uniqueFor": 60}
UNTIL_TERMINAL = {"uniqueUntil": "terminal"}
# A whole second, so that every moment below is an exact number of milliseconds.
START_SECONDS = 1_800_000_000


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    clock.now = START_SECONDS
    return Harness(client, runtime, clock)


def at_ms(clock: FakeClock, epoch_ms: int) -> None:
    """Set the clock to `epoch_ms` (half a millisecond on, so that float rounding never reads the one before)."""
    clock.now = (epoch_ms + 0.5) / 1000


def publish(h: Harness, task_id: str, key: str = "report", payload: Any = SUCCEEDS, **fields: Any) -> Any:
    body = {"id": task_id, "payload": payload, "uniqueKey": key, **(fields or WINDOW)}
    return h.client.http.post("/publish", body=json.dumps(body), headers=JSON)


def answer(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.body
    return dict(json.loads(response.body))


def held_back_by(existing_id: str, task_id: str) -> dict[str, Any]:
    return {"id": task_id, "status": None, "duplicate": True, "existingId": existing_id}


def claim_of(h: Harness, key: str = "report") -> dict[str, Any] | None:
    return h.rt.flow.get(KEY_PREFIX + key)


def run_to_the_end(h: Harness) -> None:
    """Deliver the queue's messages until it is empty (a task of SUCCEEDS completes on its first)."""
    drain(h)


# --- the window ------------------------------------------------------------------------------


def test_inside_the_window_another_id_is_a_duplicate_naming_the_holder_and_nothing_is_queued(h: Harness) -> None:
    assert answer(publish(h, "first")) == {"id": "first", "status": "PENDING", "duplicate": False}
    h.clock.advance(30)

    second = publish(h, "second")

    assert answer(second) == held_back_by("first", "second")
    assert second.headers["Location"] == "/tasks/first"
    assert queued_ids(h.rt) == ["first"]
    assert h.client.http.get("/tasks/second").status_code == 404


def test_the_window_holds_a_millisecond_before_its_end_and_is_released_exactly_at_it(h: Harness) -> None:
    answer(publish(h, "first", uniqueFor=60))
    claim = claim_of(h)
    assert claim is not None
    end = int(claim["claimedAt"]) + 60_000

    at_ms(h.clock, end - 1)
    assert answer(publish(h, "just-before")) == held_back_by("first", "just-before")
    at_ms(h.clock, end)
    assert answer(publish(h, "at-the-end"))["duplicate"] is False

    # The new holder's window starts now, whatever the first task did.
    at_ms(h.clock, end + 59_999)
    assert answer(publish(h, "inside-the-second")) == held_back_by("at-the-end", "inside-the-second")
    h.clock.advance(3600)
    assert answer(publish(h, "long-after"))["duplicate"] is False
    assert sorted(queued_ids(h.rt)) == ["at-the-end", "first", "long-after"]


def test_the_claim_item_names_its_holder_window_claim_time_and_a_ttl_just_after_the_window(h: Harness) -> None:
    answer(publish(h, "first", uniqueFor=90))
    now_ms = START_SECONDS * 1000
    assert claim_of(h) == {
        "key": "unique#report",
        "holder": "first",
        "until": now_ms + 90_000,
        "claimedAt": now_ms,
        "expiresAt": (now_ms + 90_000) // 1000 + 1,
    }


def test_a_window_ends_by_time_alone_even_when_its_task_has_ended(h: Harness) -> None:
    answer(publish(h, "first", uniqueFor=600))
    run_to_the_end(h)
    assert h.task("first")["status"] == "COMPLETED"

    assert answer(publish(h, "second")) == held_back_by("first", "second")


def test_a_repeat_of_the_holder_s_own_publish_is_today_s_duplicate_and_keeps_the_window(h: Harness) -> None:
    answer(publish(h, "first"))
    before = claim_of(h)
    h.clock.advance(59)

    assert answer(publish(h, "first")) == {"id": "first", "status": "PENDING", "duplicate": True}
    assert claim_of(h) == before
    h.clock.advance(1)
    assert answer(publish(h, "second"))["duplicate"] is False


def test_a_repeat_of_the_holder_after_its_window_leaves_the_key_free_for_another_task(h: Harness) -> None:
    answer(publish(h, "first"))
    h.clock.advance(61)

    assert answer(publish(h, "first")) == {"id": "first", "status": "PENDING", "duplicate": True}
    # Its claim was written for a task that already existed, and released: the key does not hold for nothing.
    assert answer(publish(h, "second"))["duplicate"] is False


def test_keys_are_independent_and_a_publish_without_a_key_never_touches_the_flow_table(h: Harness) -> None:
    calls = _record_calls(h)
    answer(publish(h, "a", key="one"))
    answer(publish(h, "b", key="two"))
    calls.clear()
    plain = h.client.http.post("/publish", body=json.dumps({"id": "c", "payload": SUCCEEDS}), headers=JSON)

    assert answer(plain)["duplicate"] is False
    assert calls == Counter({"SendMessage": 1, "PutItem": 1})


# --- until terminal --------------------------------------------------------------------------


def test_until_terminal_holds_while_the_holder_runs_and_retries_and_is_released_when_it_fails(h: Harness) -> None:
    answer(publish(h, "holder", payload=FAILS, **UNTIL_TERMINAL))
    assert answer(publish(h, "early", **UNTIL_TERMINAL)) == held_back_by("holder", "early")

    delivery = h.deliver()  # the first attempt fails: RETRYING
    assert h.task("holder")["status"] == "RETRYING"
    h.clock.advance(86_400)  # time alone never ends a terminal claim
    assert answer(publish(h, "while-retrying", **WINDOW)) == held_back_by("holder", "while-retrying")

    for _ in range(h.rt.settings.MAX_ATTEMPTS - 1):  # the other attempts fail too: FAILED
        h.reveal(delivery)
        delivery = h.deliver()
        h.clock.advance(h.visibility.get(delivery.records[0]["receiptHandle"], 0))
    assert h.task("holder")["status"] == "FAILED"

    assert answer(publish(h, "after", **UNTIL_TERMINAL))["duplicate"] is False
    now_ms = h.rt.flow.now_ms()
    assert claim_of(h) == {"key": "unique#report", "holder": "after", "until": "terminal", "claimedAt": now_ms}
    assert answer(publish(h, "later", **UNTIL_TERMINAL)) == held_back_by("after", "later")


def test_until_terminal_is_released_when_the_consumer_completes_the_holder(h: Harness) -> None:
    answer(publish(h, "holder", **UNTIL_TERMINAL))
    assert answer(publish(h, "before", **UNTIL_TERMINAL)) == held_back_by("holder", "before")

    run_to_the_end(h)
    assert h.task("holder")["status"] == "COMPLETED"

    assert answer(publish(h, "after", **UNTIL_TERMINAL))["duplicate"] is False
    run_to_the_end(h)
    assert h.task("after")["status"] == "COMPLETED"


def test_a_terminal_claim_replacing_an_ended_window_drops_the_window_s_ttl(h: Harness) -> None:
    answer(publish(h, "window", uniqueFor=1))
    h.clock.advance(1)
    answer(publish(h, "holder", **UNTIL_TERMINAL))
    claim = claim_of(h)
    assert claim is not None and "expiresAt" not in claim and claim["until"] == "terminal"


def test_a_terminal_holder_whose_publish_died_before_its_send_holds_until_the_bound_then_is_voided(
    h: Harness,
) -> None:
    with killed_after(h.rt.flow._client, "UpdateItem"), pytest.raises(ProcessKilled):
        publish(h, "dead", **UNTIL_TERMINAL)
    assert queued_ids(h.rt) == []

    h.clock.advance(ADOPTION_REPAIR_MS / 1000)  # its put could still be landing
    assert answer(publish(h, "too-soon", **UNTIL_TERMINAL)) == held_back_by("dead", "too-soon")
    h.clock.advance(0.001)
    assert answer(publish(h, "next", **UNTIL_TERMINAL))["duplicate"] is False

    voided = h.task("dead")
    assert voided["status"] == "CANCELLED"
    assert voided["lastError"] == (
        "its publish ended before it stored the task; unique key 'report' passed to task 'next'"
    )


def test_a_terminal_holder_whose_publish_died_after_its_send_never_runs_once_the_key_has_passed_on(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with killed_after(h.rt.tasks_queue._client, "SendMessage"), pytest.raises(ProcessKilled):
        publish(h, "orphan", **UNTIL_TERMINAL)
    h.clock.advance(ADOPTION_REPAIR_MS / 1000 + 1)

    assert answer(publish(h, "next", **UNTIL_TERMINAL))["duplicate"] is False
    counted = record_metrics(monkeypatch)
    run_to_the_end(h)

    # The orphan's message was dropped against its voided item: one task of the key ran, not two.
    assert h.task("orphan")["status"] == "CANCELLED" and h.task("orphan")["history"] == []
    assert h.task("next")["status"] == "COMPLETED"
    assert counted[("AttemptsStarted", "simulate")] == 1


def test_a_terminal_holder_adopted_by_the_consumer_after_its_publish_died_holds_until_it_ends(h: Harness) -> None:
    with killed_after(h.rt.tasks_queue._client, "SendMessage"), pytest.raises(ProcessKilled):
        publish(h, "orphan", payload=FAILS, **UNTIL_TERMINAL)
    h.deliver()  # stored from its message, and its first attempt fails
    h.clock.advance(ADOPTION_REPAIR_MS / 1000 + 1)

    assert h.task("orphan")["status"] == "RETRYING"
    assert answer(publish(h, "next", **UNTIL_TERMINAL)) == held_back_by("orphan", "next")


def test_a_claim_older_than_any_message_whose_holder_has_no_item_passes_on_without_a_void(h: Harness) -> None:
    with killed_after(h.rt.flow._client, "UpdateItem"), pytest.raises(ProcessKilled):
        publish(h, "gone", **UNTIL_TERMINAL)
    h.clock.advance(MESSAGE_LIFETIME_MS / 1000 + 1)

    assert answer(publish(h, "next", **UNTIL_TERMINAL))["duplicate"] is False
    assert h.client.http.get("/tasks/gone").status_code == 404


def test_the_message_lifetime_is_the_task_queue_s_retention_plus_sqs_s_longest_delay() -> None:
    retention = stack.load_template()["Resources"]["TasksQueue"]["Properties"]["MessageRetentionPeriod"]
    assert (int(retention) + 900) * 1000 == MESSAGE_LIFETIME_MS


# --- a failed send, a lost table -------------------------------------------------------------


def test_a_publish_whose_send_fails_answers_503_and_releases_its_claim(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    with inject_errors(h.rt.tasks_queue._client, "SendMessage", status=500, code="InternalError"):
        refused = publish(h, "unsent")
    assert refused.status_code == 503
    assert json.loads(refused.body)["error"]["message"] == api.UNQUEUED
    released = claim_of(h)
    assert released is not None and (released["holder"], released["until"]) == ("unsent", h.rt.flow.now_ms())

    assert answer(publish(h, "next"))["duplicate"] is False


def test_a_publish_whose_claim_gets_no_answer_answers_503_and_sends_nothing(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    with inject_errors(h.rt.flow._client, "UpdateItem", status=500, code="InternalServerError"):
        refused = publish(h, "unclaimed")
    assert refused.status_code == 503
    assert json.loads(refused.body)["error"] == {
        "code": "service_unavailable",
        "message": api.UNCLAIMED,
        "details": [],
    }
    assert queued_ids(h.rt) == []


def test_a_release_leaves_a_claim_another_publish_has_taken_since(h: Harness) -> None:
    keys = UniqueKeys(h.rt.flow, h.rt.store)
    mine = keys.claim(Uniqueness("k", 1), "mine")
    h.clock.advance(1)
    theirs = keys.claim(Uniqueness("k", 60), "theirs")

    keys.release(mine)

    assert claim_of(h, "k") is not None and claim_of(h, "k")["holder"] == theirs.holder  # type: ignore[index]
    assert answer(publish(h, "third", key="k")) == held_back_by("theirs", "third")


# --- races -----------------------------------------------------------------------------------


def _race(h: Harness, bodies: list[dict[str, Any]]) -> list[Any]:
    """Publish every body at once, each from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(bodies))

    def publish_now(body: dict[str, Any]) -> Any:
        barrier.wait()
        return api.publish(body, h.rt)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(publish_now, bodies))


@pytest.mark.parametrize("contenders", [2, 4])
def test_publishes_racing_for_a_free_key_admit_exactly_one_and_the_others_name_it(h: Harness, contenders: int) -> None:
    for round_ in range(8):
        key = f"race-{round_}"
        bodies = [{"id": f"{key}-{n}", "payload": SUCCEEDS, "uniqueKey": key, **WINDOW} for n in range(contenders)]

        answers = _race(h, bodies)

        winners = [a.id for a in answers if not a.duplicate]
        assert len(winners) == 1, answers
        assert all(a.existingId == winners[0] for a in answers if a.duplicate), answers
    assert len(queued_ids(h.rt)) == 8


def test_publishes_racing_to_take_over_from_an_ended_terminal_holder_admit_exactly_one(h: Harness) -> None:
    for round_ in range(6):
        key = f"takeover-{round_}"
        answer(publish(h, f"{key}-holder", key=key, **UNTIL_TERMINAL))
        run_to_the_end(h)
        bodies = [{"id": f"{key}-{n}", "payload": SUCCEEDS, "uniqueKey": key, **UNTIL_TERMINAL} for n in range(3)]

        answers = _race(h, bodies)

        winners = [a.id for a in answers if not a.duplicate]
        assert len(winners) == 1, answers
        assert all(a.existingId == winners[0] for a in answers if a.duplicate), answers
        run_to_the_end(h)


# --- batch -----------------------------------------------------------------------------------


def entry(task_id: str, key: str | None = "report", **fields: Any) -> dict[str, Any]:
    unique = {"uniqueKey": key, **(fields or WINDOW)} if key else fields
    return {"id": task_id, "payload": SUCCEEDS, **unique}


def test_in_a_batch_the_first_entry_of_a_key_wins_and_the_later_ones_name_it(h: Harness) -> None:
    answer(publish(h, "earlier", key="held"))
    tasks = [
        entry("b1"),
        entry("plain", key=None),
        entry("b2"),
        entry("other", key="other", **UNTIL_TERMINAL),
        entry("b3", **UNTIL_TERMINAL),
        entry("late", key="held"),
    ]

    results = results_of(publish_batch(h.client, {"tasks": tasks}))

    assert results == [
        {"id": "b1", "status": "PENDING", "duplicate": False},
        {"id": "plain", "status": "PENDING", "duplicate": False},
        held_back_by("b1", "b2"),
        {"id": "other", "status": "PENDING", "duplicate": False},
        held_back_by("b1", "b3"),
        held_back_by("earlier", "late"),
    ]
    assert sorted(queued_ids(h.rt)) == ["b1", "earlier", "other", "plain"]
    assert h.task("b1")["uniqueKey"] == "report"


def test_in_a_batch_a_repeated_id_shares_the_first_entry_s_key_outcome(h: Harness) -> None:
    answer(publish(h, "holder"))

    results = results_of(publish_batch(h.client, {"tasks": [entry("b1"), entry("b1")]}))

    assert results == [held_back_by("holder", "b1"), held_back_by("holder", "b1")]


def test_in_a_batch_whose_sends_fail_an_entry_held_by_an_earlier_one_shares_its_refusal(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    with inject_errors(h.rt.tasks_queue._client, "SendMessageBatch", status=500, code="InternalError"):
        results = results_of(publish_batch(h.client, {"tasks": [entry("b1"), entry("b2")]}))

    assert [(r["id"], r["error"]["code"]) for r in results] == [
        ("b1", "service_unavailable"),
        ("b2", "service_unavailable"),
    ]
    assert answer(publish(h, "next"))["duplicate"] is False  # b1's claim went with its send


def test_in_a_batch_an_entry_whose_claim_gets_no_answer_is_refused_and_the_others_go_on(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    tasks = [entry("keyed"), entry("plain", key=None)]
    with inject_errors(h.rt.flow._client, "UpdateItem", status=500, code="InternalServerError"):
        results = results_of(publish_batch(h.client, {"tasks": tasks}))

    unclaimed = {"code": "service_unavailable", "message": api.UNCLAIMED, "details": []}
    assert results[0] == {"id": "keyed", "error": unclaimed}
    assert results[1] == {"id": "plain", "status": "PENDING", "duplicate": False}
    assert queued_ids(h.rt) == ["plain"]


# --- rules -----------------------------------------------------------------------------------

BROKEN: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
    ({"uniqueFor": 60}, [("uniqueFor", "may only be given with uniqueKey")]),
    ({"uniqueUntil": "terminal"}, [("uniqueUntil", "may only be given with uniqueKey")]),
    (
        {"uniqueKey": "k"},
        [("uniqueKey", 'needs exactly one of uniqueFor (seconds) or uniqueUntil ("terminal")')],
    ),
    (
        {"uniqueKey": "k", "uniqueFor": 60, "uniqueUntil": "terminal"},
        [
            ("uniqueFor", "uniqueFor and uniqueUntil exclude each other: give one"),
            ("uniqueUntil", "uniqueFor and uniqueUntil exclude each other: give one"),
        ],
    ),
    ({"uniqueKey": "k", "uniqueFor": 0}, [("uniqueFor", "Input should be greater than or equal to 1")]),
    ({"uniqueKey": "k", "uniqueFor": 86_401}, [("uniqueFor", "Input should be less than or equal to 86400")]),
    ({"uniqueKey": "k", "uniqueFor": 1.5}, [("uniqueFor", "Input should be a valid integer")]),
    ({"uniqueKey": "k", "uniqueFor": "60"}, [("uniqueFor", "Input should be a valid integer")]),
    ({"uniqueKey": "k", "uniqueFor": None}, [("uniqueFor", "Input should be a valid integer")]),
    ({"uniqueKey": "k", "uniqueUntil": "done"}, [("uniqueUntil", "Input should be 'terminal'")]),
    ({"uniqueKey": "", "uniqueFor": 60}, [("uniqueKey", "String should have at least 1 character")]),
    ({"uniqueKey": 7, "uniqueFor": 60}, [("uniqueKey", "Input should be a valid string")]),
    (
        {"uniqueKey": "é" * 129, "uniqueFor": 60},
        [("uniqueKey", "Value error, must be 1 to 256 bytes in UTF-8 (this one is 258)")],
    ),
    (
        {"uniqueKey": "a\u202eb", "uniqueFor": 60},
        [
            (
                "uniqueKey",
                "Value error, must not contain control characters or bidirectional formatting characters"
                " (U+202E at position 1)",
            )
        ],
    ),
]


@pytest.mark.parametrize(("fields", "problems"), BROKEN)
def test_unique_fields_that_break_a_rule_are_refused_with_400_naming_each_field_and_rule(
    h: Harness, fields: dict[str, Any], problems: list[tuple[str, str]]
) -> None:
    body = {"id": "t", "payload": SUCCEEDS, **fields}

    refused = h.client.http.post("/publish", body=json.dumps(body), headers=JSON)
    batch = results_of(publish_batch(h.client, {"tasks": [body]}))

    assert refused.status_code == 400
    error = json.loads(refused.body)["error"]
    assert error["code"] == "validation_error"
    assert [(d["field"], d["message"]) for d in error["details"]] == problems
    assert batch == [{"id": "t", "error": error}]
    assert queued_ids(h.rt) == [] and claim_of(h, "k") is None


def test_the_largest_key_and_window_are_taken(h: Harness) -> None:
    key = "é" * 128  # 256 bytes
    assert answer(publish(h, "big", key=key, uniqueFor=86_400))["duplicate"] is False
    assert claim_of(h, key) is not None


def test_post_tasks_claims_no_key_its_whole_body_is_the_payload(h: Harness) -> None:
    body = {"simulation": {"failureChance": 0}, "uniqueKey": "k", "uniqueFor": 60}
    created = [json.loads(h.client.http.post("/tasks", body=json.dumps(body), headers=JSON).body) for _ in range(2)]

    views = [h.task(task["id"]) for task in created]
    assert [(view["payload"], view["uniqueKey"]) for view in views] == [(body, None), (body, None)]
    assert claim_of(h, "k") is None


# --- the view and the document ---------------------------------------------------------------


def test_the_view_shows_the_key_and_where_its_window_ends_or_terminal(h: Harness) -> None:
    answer(publish(h, "windowed", key="w", uniqueFor=120))
    answer(publish(h, "terminal", key="t", **UNTIL_TERMINAL))
    h.client.http.post("/publish", body=json.dumps({"id": "plain", "payload": SUCCEEDS}), headers=JSON)

    windowed, terminal, plain = (h.task(task_id) for task_id in ("windowed", "terminal", "plain"))

    assert (windowed["uniqueKey"], windowed["uniqueUntil"]) == ("w", iso_from_ms(START_SECONDS * 1000 + 120_000))
    assert (terminal["uniqueKey"], terminal["uniqueUntil"]) == ("t", "terminal")
    assert (plain["uniqueKey"], plain["uniqueUntil"]) == (None, None)
    run_to_the_end(h)
    assert h.task("windowed")["uniqueKey"] == "w"  # kept through the consumer's writes


def test_the_openapi_document_describes_the_unique_fields_their_pairing_and_the_answers(h: Harness) -> None:
    from openapi_spec_validator import validate

    document = json.loads(h.client.http.get("/openapi.json").body)
    validate(document)
    schemas = document["components"]["schemas"]

    variant = schemas["PublishSimulate"]
    assert {"uniqueKey", "uniqueFor", "uniqueUntil"} <= set(variant["properties"])
    assert variant["properties"]["uniqueFor"]["maximum"] == 86_400
    assert variant["properties"]["uniqueUntil"]["const"] == "terminal"
    assert variant["dependentRequired"] == {"uniqueFor": ["uniqueKey"], "uniqueUntil": ["uniqueKey"]}
    assert schemas["PublishAccepted"]["properties"]["existingId"]["type"] == "string"
    assert "existingId" not in schemas["PublishAccepted"]["required"]
    assert {"uniqueKey", "uniqueUntil"} <= set(schemas["TaskView"]["properties"])


# --- cost ------------------------------------------------------------------------------------


def _record_calls(h: Harness) -> Counter[str]:
    """Every AWS call the API's clients make from now on, by operation name."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        if model.name != "GetQueueUrl":  # once per container, on its first send
            calls[model.name] += 1

    for client in (h.rt.flow._client, h.rt.tasks_queue._client):
        client.meta.events.register("before-parameter-build", count)
    return calls


@pytest.mark.parametrize(
    ("setup", "fields", "expected"),
    [
        (None, WINDOW, {"UpdateItem": 1, "SendMessage": 1, "PutItem": 1}),
        ("window", WINDOW, {"UpdateItem": 1}),
        ("terminal", UNTIL_TERMINAL, {"UpdateItem": 1, "GetItem": 1}),
        ("ended", UNTIL_TERMINAL, {"UpdateItem": 2, "GetItem": 1, "SendMessage": 1, "PutItem": 1}),
    ],
    ids=["free key", "held window", "held until terminal", "taking over from an ended holder"],
)
def test_what_a_unique_publish_costs(
    h: Harness, setup: str | None, fields: dict[str, Any], expected: dict[str, int]
) -> None:
    if setup == "window":
        answer(publish(h, "holder", **WINDOW))
    elif setup in ("terminal", "ended"):
        answer(publish(h, "holder", **UNTIL_TERMINAL))
        if setup == "ended":
            run_to_the_end(h)
    calls = _record_calls(h)

    answer(publish(h, "new", **fields))

    assert calls == Counter(expected)
