"""Workflows over moto: fifty children with `fail` and with `continue`, the fan-in counted exactly once
per child however often its end is seen, `then` run once, a retried child re-opening its workflow."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.models import Status
from chalicelib.registry import REGISTRY, PermanentError, Registry, TaskType
from chalicelib.workflows.fan_in import WorkflowFollowUp
from chalicelib.workflows.service import parse
from chalicelib.workflows.store import workflow_store
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.lambda_sqs import Delivery, lambda_records

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}


class Merges:
    """The `merge` type, a `then`: records each payload it ran with."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, payload: dict[str, Any], context: Any) -> dict[str, int]:
        with self.lock:
            self.runs.append(payload)
        return {"merged": len(payload.get("children", []))}


@pytest.fixture
def merges() -> Merges:
    return Merges()


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock, merges: Merges) -> Harness:
    registry = Registry()
    for name in REGISTRY.names():
        registry.register(REGISTRY.get(name))  # type: ignore[arg-type]
    registry.register(TaskType("merge", merges))
    runtime.registry = registry
    return Harness(client, runtime, clock)


def post(h: Harness, body: Any) -> Any:
    return h.client.http.post("/workflows", body=json.dumps(body), headers=JSON)


def workflow(h: Harness, workflow_id: str) -> dict[str, Any]:
    response = h.client.http.get(f"/workflows/{workflow_id}")
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def drain(h: Harness, rounds: int = 200) -> int:
    """Deliver the task queue until it is empty; how many records were delivered."""
    delivered = 0
    for _ in range(rounds):
        records = h.deliver().records
        if not records:
            return delivered
        delivered += len(records)
    raise AssertionError(f"the queue still held messages after {rounds} deliveries")


def body_of(workflow_id: str, payloads: list[dict[str, Any]], policy: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "children": [{"type": "simulate", "payload": payload} for payload in payloads],
        "then": {"type": "merge", "payload": {"label": "all"}},
        "onChildFailure": policy,
        **extra,
    }


def test_a_workflow_of_50_children_with_continue_runs_then_once_with_every_outcome_in_order(
    h: Harness, merges: Merges
) -> None:
    payloads = [DOOMED if n % 10 == 3 else SUCCEEDS for n in range(50)]
    response = post(h, body_of("w50", payloads, "continue"))
    assert response.status_code == 201, response.body
    assert json.loads(response.body)["children"] == [f"w50/{n}" for n in range(1, 51)]

    drain(h)

    assert len(merges.runs) == 1
    run = merges.runs[0]
    assert run["label"] == "all"
    assert [child["id"] for child in run["children"]] == [f"w50/{n}" for n in range(1, 51)]
    failed = [child["id"] for child in run["children"] if child["status"] == "FAILED"]
    assert failed == [f"w50/{n + 1}" for n in range(50) if n % 10 == 3]
    assert all("lastError" in child for child in run["children"] if child["status"] == "FAILED")
    assert all("result" in child for child in run["children"] if child["status"] == "COMPLETED")
    view = workflow(h, "w50")
    assert view == {
        "id": "w50",
        "status": "COMPLETED",
        "counts": {"COMPLETED": 45, "FAILED": 5},
        "children": [f"w50/{n}" for n in range(1, 51)],
        "then": {"id": "w50/then", "status": "COMPLETED"},
    }
    assert h.task("w50%2Fthen")["result"] == {"merged": 50}


def test_a_workflow_of_50_children_with_fail_is_failed_by_one_child_and_cancels_the_unfinished(
    h: Harness, merges: Merges
) -> None:
    payloads = [DOOMED if n == 7 else SUCCEEDS for n in range(50)]
    assert post(h, body_of("wfail", payloads, "fail")).status_code == 201
    url = h.rt.tasks_queue.url
    records = [record for _ in range(10) for record in lambda_records(h.sqs, url)]
    doomed = [record for record in records if json.loads(record["body"])["id"] == "wfail/8"]
    assert len(records) == 50 and len(doomed) == 1

    h.client.lambda_.invoke("process_tasks", {"Records": doomed})
    h.reveal(Delivery([r for r in records if r not in doomed]))
    drain(h)

    view = workflow(h, "wfail")
    assert view["status"] == "FAILED"
    assert view["counts"] == {"CANCELLED": 49, "FAILED": 1}
    assert view["then"] == {"id": "wfail/then", "status": "NOT_RUN"}
    assert merges.runs == []
    assert h.client.http.get("/tasks/wfail%2Fthen").status_code == 404


def test_retrying_the_failed_child_reopens_the_workflow_and_then_runs_when_it_completes(
    h: Harness, merges: Merges
) -> None:
    runs: list[int] = []

    def flaky(payload: dict[str, Any], context: Any) -> str:
        runs.append(1)
        if len(runs) == 1:
            raise PermanentError("the first run fails")
        return "ok"

    h.rt.registry.register(TaskType("flaky", flaky))
    body = {
        "id": "wr",
        "children": [
            {"id": "wr-a", "type": "simulate", "payload": SUCCEEDS},
            {"id": "wr-b", "type": "flaky", "payload": {}},
        ],
        "then": {"type": "merge"},
        "onChildFailure": "fail",
    }
    assert post(h, body).status_code == 201
    url = h.rt.tasks_queue.url
    records = [record for _ in range(3) for record in lambda_records(h.sqs, url)]
    first = [r for r in records if json.loads(r["body"])["id"] == "wr-a"]
    h.client.lambda_.invoke("process_tasks", {"Records": first})  # wr-a completes before wr-b fails
    h.client.lambda_.invoke("process_tasks", {"Records": [r for r in records if r not in first]})
    assert workflow(h, "wr")["status"] == "FAILED"

    retried = h.client.http.post("/tasks/wr-b/retry", body="{}", headers=JSON)
    assert retried.status_code == 202, retried.body
    reopened = workflow(h, "wr")
    assert reopened["status"] == "RUNNING"
    assert reopened["then"]["status"] == "WAITING"

    drain(h)
    assert workflow(h, "wr")["status"] == "COMPLETED"
    assert len(merges.runs) == 1
    assert [c["status"] for c in merges.runs[0]["children"]] == ["COMPLETED", "COMPLETED"]


def test_a_child_whose_end_is_seen_twice_is_counted_once_and_then_published_once(h: Harness, merges: Merges) -> None:
    assert post(h, body_of("wtwice", [SUCCEEDS, SUCCEEDS], "continue")).status_code == 201
    url = h.rt.tasks_queue.url
    records = [record for _ in range(3) for record in lambda_records(h.sqs, url)]
    first = [r for r in records if json.loads(r["body"])["id"] == "wtwice/1"]
    h.client.lambda_.invoke("process_tasks", {"Records": first})
    # The consumer's answer is lost: the same message comes back, finds the child terminal, follows up again.
    h.client.lambda_.invoke("process_tasks", {"Records": first})
    record = h.rt.store.get("wtwice/1")
    WorkflowFollowUp().publish(h.rt, record)
    counted = workflow_store(h.rt).read("wtwice")
    assert counted is not None and len(counted.ended) == 1
    assert h.client.http.get("/tasks/wtwice%2Fthen").status_code == 404

    h.client.lambda_.invoke("process_tasks", {"Records": [r for r in records if r not in first]})
    h.client.lambda_.invoke("process_tasks", {"Records": first})  # and once more, after the last child
    drain(h)
    assert len(merges.runs) == 1
    assert h.task("wtwice%2Fthen")["status"] == "COMPLETED"


def test_children_ending_at_the_same_moment_are_each_counted_and_then_runs_once(h: Harness, merges: Merges) -> None:
    count = 20
    assert post(h, body_of("wrace", [SUCCEEDS] * count, "continue")).status_code == 201
    url = h.rt.tasks_queue.url
    records = [record for _ in range(5) for record in lambda_records(h.sqs, url)]
    h.client.lambda_.invoke("process_tasks", {"Records": records[:10]})
    h.client.lambda_.invoke("process_tasks", {"Records": records[10:]})
    ended = [h.rt.store.get(f"wrace/{n}") for n in range(1, count + 1)]
    assert all(record is not None and record.status is Status.COMPLETED for record in ended)
    # Every child's follow-up again, all at once, released together by a barrier.
    barrier = threading.Barrier(count)

    def follow(record: Any) -> None:
        barrier.wait(timeout=10)
        WorkflowFollowUp().publish(h.rt, record)

    threads = [threading.Thread(target=follow, args=(record,)) for record in ended]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    counted = workflow_store(h.rt).read("wrace")
    assert counted is not None and sorted(counted.ended) == list(range(1, count + 1))
    drain(h)
    assert len(merges.runs) == 1


def test_a_repeated_post_completes_a_half_made_workflow_and_publishes_nothing_twice(h: Harness) -> None:
    body = body_of("whalf", [SUCCEEDS] * 12, "continue")
    workflow_store(h.rt).create(parse(body, h.rt))  # a POST that died after the workflow item
    assert post(h, body).status_code == 201
    assert h.depth(h.rt.tasks_queue.url) == 12
    assert post(h, body).status_code == 201
    assert h.depth(h.rt.tasks_queue.url) == 12
    other = post(h, {**body, "onChildFailure": "fail"})
    assert other.status_code == 409, other.body
    assert workflow(h, "whalf")["counts"] == {"PENDING": 12}


def test_a_child_id_taken_by_another_task_is_a_conflict_naming_it(h: Harness) -> None:
    h.publish("taken", SUCCEEDS)
    body = {
        "id": "wtaken",
        "children": [{"payload": SUCCEEDS}, {"id": "taken", "payload": SUCCEEDS}],
        "then": {"type": "merge"},
    }
    response = post(h, body)
    assert response.status_code == 409, response.body
    assert [d["field"] for d in json.loads(response.body)["error"]["details"]] == ["children[1].id"]


def test_a_workflow_naming_another_task_s_id_is_refused_before_anything_is_written(h: Harness) -> None:
    h.publish("held", SUCCEEDS)
    queued = h.depth(h.rt.tasks_queue.url)
    body = body_of("wheld", [SUCCEEDS] * 3, "continue")
    body["children"][2]["id"] = "held"
    response = post(h, body)
    assert response.status_code == 409, response.body
    assert "nothing was stored" in json.loads(response.body)["error"]["message"]
    assert h.client.http.get("/workflows/wheld").status_code == 404
    assert workflow_store(h.rt).read("wheld") is None
    assert h.depth(h.rt.tasks_queue.url) == queued and h.rt.store.get("wheld/1") is None
    body["children"][2]["id"] = "wheld/own"  # the id is free again: the same workflow with its own ids
    assert post(h, body).status_code == 201


def test_a_child_id_taken_after_the_check_ends_the_workflow_failed_and_cancels_its_other_children(
    h: Harness, merges: Merges, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = body_of("wrace", [SUCCEEDS] * 4, "continue", callback={"url": "http://127.0.0.1:9/hook"})
    body["children"][1]["id"] = "raced-child"
    store_class = type(workflow_store(h.rt))
    real_items = store_class.items

    def checked_then_taken(self: Any, task_ids: Any, attributes: tuple[str, ...]) -> dict[str, Any]:
        found = real_items(self, task_ids, attributes)
        if attributes == ("workflow",) and h.rt.store.get("raced-child") is None:
            h.publish("raced-child", SUCCEEDS)  # another publish lands just after the check read
        return found

    monkeypatch.setattr(store_class, "items", checked_then_taken)
    response = post(h, body)
    monkeypatch.undo()
    assert response.status_code == 409, response.body
    error = json.loads(response.body)["error"]
    assert "is FAILED" in error["message"] and [d["field"] for d in error["details"]] == ["children[1].id"]
    view = workflow(h, "wrace")
    assert view["status"] == "FAILED" and view["then"] == {"id": "wrace/then", "status": "NOT_RUN"}
    assert view["counts"] == {"CANCELLED": 3, "PENDING": 1}  # the other task, untouched
    assert h.rt.store.get("raced-child").workflow is None
    callback = h.rt.store.get("wrace/callback")
    assert callback is not None and callback.payload["delivery"]["status"] == "FAILED"
    assert "'raced-child' is another task's" in callback.payload["delivery"]["lastError"]
    drain(h)  # the cancelled children's messages are dropped; the other task runs; then never does
    assert merges.runs == [] and workflow(h, "wrace")["status"] == "FAILED"
    assert h.rt.store.get("raced-child").status is Status.COMPLETED
    queued = h.depth(h.rt.tasks_queue.url)  # the callback's, waiting out its backoff
    again = post(h, body)  # the same POST again: still refused, nothing published again
    assert again.status_code == 409 and "is FAILED" in json.loads(again.body)["error"]["message"]
    assert h.depth(h.rt.tasks_queue.url) == queued


def test_a_workflow_with_a_callback_publishes_it_as_workflow_id_callback_once_it_ends(h: Harness) -> None:
    assert (
        post(h, body_of("wcb", [SUCCEEDS] * 3, "continue", callback={"url": "http://127.0.0.1:9/hook"})).status_code
        == 201
    )
    for _ in range(3):
        records = lambda_records(h.sqs, h.rt.tasks_queue.url)
        tasks = [r for r in records if not json.loads(r["body"])["id"].endswith("/callback")]
        if tasks:
            h.client.lambda_.invoke("process_tasks", {"Records": tasks})
    while records := [
        r for r in lambda_records(h.sqs, h.rt.tasks_queue.url) if json.loads(r["body"])["type"] != "callback"
    ]:
        h.client.lambda_.invoke("process_tasks", {"Records": records})
    callback = h.rt.store.get("wcb/callback")
    assert callback is not None
    assert callback.payload["delivery"]["id"] == "wcb"
    assert callback.payload["delivery"]["status"] == "COMPLETED"
    assert callback.payload["delivery"]["result"] == {"merged": 3}


def test_the_view_of_an_unknown_workflow_is_a_404(h: Harness) -> None:
    response = h.client.http.get("/workflows/nothing-here")
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "not_found"


CHILD = {"payload": SUCCEEDS}
THEN = {"type": "merge"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"children": [CHILD], "then": THEN}, "id"),
        ({"id": "w", "then": THEN}, "children"),
        ({"id": "w", "children": [], "then": THEN}, "children"),
        ({"id": "w", "children": [CHILD] * 1001, "then": THEN}, "children"),
        ({"id": "w", "children": [CHILD]}, "then"),
        ({"id": "w", "children": [CHILD], "then": {"type": "nope"}}, "then.type"),
        (
            {"id": "w", "children": [CHILD], "then": {"type": "merge", "payload": {"children": []}}},
            "then.payload.children",
        ),
        ({"id": "w", "children": [CHILD], "then": THEN, "onChildFailure": "maybe"}, "onChildFailure"),
        ({"id": "w", "children": [{"type": "nope", "payload": {}}], "then": THEN}, "children[0].type"),
        (
            {"id": "w", "children": [CHILD, {"payload": {"simulation": {"failureChance": 2}}}], "then": THEN},
            "children[1].payload.simulation.failureChance",
        ),
        ({"id": "w", "children": [{"id": "x", **CHILD}, {"id": "x", **CHILD}], "then": THEN}, "children[1].id"),
        ({"id": "w", "children": [{"id": "w/then", **CHILD}], "then": THEN}, "children[0].id"),
        ({"id": "w", "children": [{"type": "callback", "payload": {}}], "then": THEN}, "children[0].type"),
        ({"id": "w" * 250, "children": [CHILD], "then": THEN}, "id"),
        ({"id": "w", "children": [CHILD], "then": THEN, "callback": {"url": "ftp://x"}}, "callback.url"),
        ({"id": "w", "children": [CHILD], "then": THEN, "extra": 1}, "extra"),
    ],
)
def test_a_workflow_that_breaks_a_rule_is_a_400_naming_the_field(h: Harness, body: dict[str, Any], field: str) -> None:
    response = post(h, body)
    assert response.status_code == 400, response.body
    details = json.loads(response.body)["error"]["details"]
    assert field in [detail["field"] for detail in details], details


def test_children_whose_ids_would_not_fit_the_workflow_item_are_a_400_naming_the_rule(h: Harness) -> None:
    # 1,000 ids of 256 characters of two bytes each: 512,000 bytes, over the 256,000 the item holds.
    children = [{"id": f"{n:04d}" + "é" * 252, **CHILD} for n in range(1000)]
    response = post(h, {"id": "wbig", "children": children, "then": THEN})
    assert response.status_code == 400
    (detail,) = json.loads(response.body)["error"]["details"]
    assert detail["field"] == "children" and "256,000 bytes" in detail["message"]


def test_the_largest_workflow_fits_the_item_with_every_child_counted(h: Harness) -> None:
    """1,000 ids of 256 ASCII characters, a then payload of 64 KiB, all 1,000 ends counted: under 400 KB."""
    body = {
        "id": "wmax",
        "children": [{"id": f"{n:04d}" + "x" * 252, **CHILD} for n in range(1000)],
        "then": {"type": "merge", "payload": {"pad": "p" * (64 * 1024 - 12)}},
    }
    store = workflow_store(h.rt)
    store.create(parse(body, h.rt))
    # 999 ends in one write, in the store's own shape, then the last through the store: each of
    # 1,000 counted writes returns the whole ~390 KB item, which takes moto minutes in all.
    ends = {str(n): {"M": {"s": {"S": "CANCELLED"}, "v": {"N": "1000000"}}} for n in range(1, 1000)}
    h.rt.store.client.update_item(
        TableName=h.rt.settings.TASKS_TABLE,
        Key={"id": {"S": "workflow\x1fwmax"}},
        UpdateExpression="SET #ended = :ends",
        ExpressionAttributeNames={"#ended": "ended"},
        ExpressionAttributeValues={":ends": {"M": ends}},
    )
    last = store.count_end("wmax", 1000, Status.CANCELLED, 1_000_000)
    assert last is not None and len(last.ended) == 1000
    assert store.count_end("wmax", 1000, Status.CANCELLED, 1_000_000) is not None  # a repeat is refused
    counted = store.read("wmax")
    assert counted is not None and len(counted.ended) == 1000
    item = h.rt.store.client.get_item(TableName=h.rt.settings.TASKS_TABLE, Key={"id": {"S": "workflow\x1fwmax"}})
    assert len(json.dumps(item["Item"])) < 409_600
