"""Long work: a heartbeating type's lease, its message's visibility, progress and cancel through the heartbeat."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.consume.heartbeat import COALESCE_SHARE, MAX_PROGRESS_BYTES, VISIBILITY_MARGIN_SECONDS
from chalicelib.registry import (
    LEASE_HEARTBEATS,
    AttemptAbandoned,
    RegistrationError,
    TaskCancelled,
    TaskContext,
    TaskType,
)
from tests.conftest import FakeClock
from tests.integration.harness import Harness
from tests.integration.test_task_types import with_types

JSON = {"Content-Type": "application/json"}
BEAT = 2.0  # heartbeat_seconds of the test types
LEASE = LEASE_HEARTBEATS * BEAT


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def long_type(name: str, handler: Any, timeout: float = 60.0) -> TaskType:
    return TaskType(name, handler, timeout_seconds=timeout, heartbeat_seconds=BEAT)


def publish(h: Harness, task_id: str, task_type: str, payload: dict[str, Any] | None = None) -> None:
    body = {"id": task_id, "type": task_type, "payload": payload or {}}
    response = h.client.http.post("/publish", body=json.dumps(body), headers=JSON)
    assert response.status_code == 201, response.body


def item(h: Harness, task_id: str) -> dict[str, Any]:
    raw = h.rt.store.get_item(task_id)
    assert raw is not None
    return raw


def visibility_changes(h: Harness) -> list[int]:
    return list(h.visibility.values())


def test_a_long_type_runs_under_a_lease_of_three_heartbeats_and_its_message_is_hidden_for_it(h: Harness) -> None:
    seen: dict[str, Any] = {}

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        seen["lease_ms"] = int(item(h, context.task_id)["leaseExpiresAt"]) - h.rt.store.now_ms()
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l1", "long")
    h.deliver()

    assert h.task("l1")["status"] == "COMPLETED"
    assert seen["lease_ms"] == int(LEASE * 1000)  # not the stage's 60 s
    assert visibility_changes(h) == [int(LEASE) + VISIBILITY_MARGIN_SECONDS]  # hidden for the lease at the start


def test_a_heartbeat_extends_the_lease_and_the_visibility_and_stores_progress(h: Harness) -> None:
    leases: list[int] = []

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        for done in range(1, 4):
            h.clock.advance(BEAT)
            context.heartbeat({"done": done, "total": 3})
            leases.append(int(item(h, context.task_id)["leaseExpiresAt"]))
            assert json.loads(h.client.http.get(f"/tasks/{context.task_id}").body)["progress"] == {
                "done": done,
                "total": 3,
            }
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l2", "long")
    h.deliver()

    assert h.task("l2")["status"] == "COMPLETED"
    assert leases == sorted(leases) and len(set(leases)) == 3  # each heartbeat moved the lease on
    assert leases[-1] - leases[0] == int(2 * BEAT * 1000)
    assert visibility_changes(h).count(int(LEASE) + VISIBILITY_MARGIN_SECONDS) >= 1
    assert h.task("l2")["progress"] == {"done": 3, "total": 3}


def test_heartbeats_closer_than_a_third_of_the_interval_are_coalesced_into_one_write(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str | None] = []
    real = h.rt.store.heartbeat

    def counted(acquired: Any, lease: float, progress: str | None) -> None:
        writes.append(progress)
        real(acquired, lease, progress)

    monkeypatch.setattr(h.rt.store, "heartbeat", counted)

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        for n in range(10):  # ten calls in one floor's time: one write
            h.clock.advance(BEAT * COALESCE_SHARE / 20)
            context.heartbeat({"n": n})
        h.clock.advance(BEAT * COALESCE_SHARE)
        context.heartbeat()  # past the floor: the last progress goes out now
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l3", "long")
    h.deliver()

    assert writes == ['{"n":9}']
    assert h.task("l3")["progress"] == {"n": 9}


def test_progress_that_is_too_large_or_not_json_is_refused_to_the_handler(h: Harness) -> None:
    errors: list[str] = []

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        for bad in ("x" * MAX_PROGRESS_BYTES, {1, 2}, float("nan")):
            try:
                context.heartbeat(bad)
            except ValueError as exc:
                errors.append(str(exc))
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l4", "long")
    h.deliver()

    assert len(errors) == 3 and "at most 4096 bytes" in errors[0]
    assert h.task("l4")["status"] == "COMPLETED"


def test_a_heartbeat_after_the_lease_was_lost_raises_and_the_result_is_discarded(h: Harness) -> None:
    raised: list[BaseException] = []

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        # Another consumer takes the task over: its lease is not ours any more.
        h.rt.store._client.update_item(
            TableName=h.rt.settings.TASKS_TABLE,
            Key={"id": {"S": context.task_id}},
            UpdateExpression="SET leaseOwner = :other",
            ExpressionAttributeValues={":other": {"S": "someone-else"}},
        )
        h.clock.advance(BEAT)
        try:
            context.heartbeat({"done": 1})
        except AttemptAbandoned as exc:
            raised.append(exc)
        return "a result nobody keeps"

    with_types(h, long_type("long", work))
    publish(h, "l5", "long")
    delivery = h.deliver()

    assert len(raised) == 1
    task = h.task("l5")
    assert task["result"] is None and task["status"] == "PROCESSING"  # the other holder decides
    assert task["progress"] is None
    assert h.depth(h.rt.tasks_queue.url) == 1  # the message is kept, never deleted
    assert delivery.records


def test_a_cancel_of_a_running_task_ends_it_cancelled_at_its_next_heartbeat(h: Harness) -> None:
    stopped: list[BaseException] = []

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        assert not context.cancel_requested()
        response = h.client.http.post(f"/tasks/{context.task_id}/cancel", body="{}", headers=JSON)
        assert response.status_code == 202  # PROCESSING: cancel requested
        assert context.cancel_requested()
        h.clock.advance(BEAT)
        try:
            context.heartbeat()
        except TaskCancelled as exc:
            stopped.append(exc)
            raise
        return "not reached"

    with_types(h, long_type("long", work))
    publish(h, "l6", "long")
    h.deliver()

    assert len(stopped) == 1
    task = h.task("l6")
    assert task["status"] == "CANCELLED"
    assert [(e.get("attempt"), e.get("outcome")) for e in task["history"] if "attempt" in e] == [(1, "cancelled")]
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_handler_that_swallows_the_cancel_still_ends_cancelled(h: Harness) -> None:
    def work(payload: dict[str, Any], context: TaskContext) -> str:
        h.client.http.post(f"/tasks/{context.task_id}/cancel", body="{}", headers=JSON)
        h.clock.advance(BEAT)
        with contextlib.suppress(TaskCancelled):
            context.heartbeat()
        return "finished anyway"

    with_types(h, long_type("long", work))
    publish(h, "l7", "long")
    h.deliver()

    task = h.task("l7")
    assert task["status"] == "CANCELLED" and task["result"] is None


def test_a_retry_starts_with_no_progress(h: Harness) -> None:
    calls: list[int] = []

    def work(payload: dict[str, Any], context: TaskContext) -> str:
        calls.append(context.attempt)
        h.clock.advance(BEAT)
        context.heartbeat({"attempt": context.attempt})
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")
        assert json.loads(h.client.http.get(f"/tasks/{context.task_id}").body)["progress"] == {"attempt": 2}
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l8", "long")
    first = h.deliver()
    assert h.task("l8")["progress"] == {"attempt": 1}  # kept with the failed attempt until the next starts
    h.clock.advance(h.visibility[first.records[0]["receiptHandle"]])
    h.reveal(first)
    seen: dict[str, Any] = {}
    original = work

    def second(payload: dict[str, Any], context: TaskContext) -> str:
        seen["progress"] = json.loads(h.client.http.get(f"/tasks/{context.task_id}").body)["progress"]
        return original(payload, context)

    with_types(h, long_type("long", second))
    h.deliver()

    assert seen["progress"] is None  # the new attempt starts with none
    assert h.task("l8")["status"] == "COMPLETED"
    assert calls == [1, 2]


def test_a_type_without_heartbeat_seconds_may_call_heartbeat_and_nothing_is_written(h: Harness) -> None:
    def work(payload: dict[str, Any], context: TaskContext) -> str:
        context.heartbeat({"done": 1})
        assert context.cancel_requested() is False
        return "done"

    with_types(h, TaskType("plain", work))
    publish(h, "p1", "plain")
    h.deliver()

    assert h.task("p1")["progress"] is None
    assert visibility_changes(h) == []  # no heartbeat, no visibility change: today's requests


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        ({"heartbeat_seconds": 2.0}, "needs timeout_seconds"),
        ({"heartbeat_seconds": 0.5, "timeout_seconds": 60}, "from 1 s"),
        ({"heartbeat_seconds": 90, "timeout_seconds": 60}, "to timeout_seconds"),
        ({"timeout_seconds": 901}, "at most 900"),
    ],
)
def test_heartbeat_options_are_checked_at_registration(options: dict[str, Any], rule: str) -> None:
    from chalicelib.registry import Registry

    with pytest.raises(RegistrationError, match=rule):
        Registry().register(TaskType("bad", lambda payload, context: None, **options))


def test_the_last_progress_a_coalesced_heartbeat_held_back_is_written_with_the_result(h: Harness) -> None:
    def work(payload: dict[str, Any], context: TaskContext) -> str:
        h.clock.advance(BEAT)
        context.heartbeat({"done": 1, "total": 2})  # written
        context.heartbeat({"done": 2, "total": 2})  # too soon: held back
        return "done"

    with_types(h, long_type("long", work))
    publish(h, "l9", "long")
    h.deliver()

    task = h.task("l9")
    assert task["status"] == "COMPLETED"
    assert task["progress"] == {"done": 2, "total": 2}


def test_a_heartbeat_that_writes_costs_one_update_and_one_visibility_change_and_a_plain_task_none(
    h: Harness,
) -> None:
    from tests.integration.test_batch_publish import RequestCounter

    def long_work(payload: dict[str, Any], context: TaskContext) -> str:
        for _ in range(4):
            h.clock.advance(BEAT)
            context.heartbeat({"step": 1})
        return "done"

    def plain_work(payload: dict[str, Any], context: TaskContext) -> str:
        context.heartbeat({"step": 1})
        return "done"

    with_types(h, long_type("long", long_work), TaskType("plain", plain_work))
    costs = {}
    for name in ("plain", "long"):
        publish(h, f"cost-{name}", name)
        counter = RequestCounter(h.rt.store._client, h.rt.tasks_queue._client, h.sqs)
        h.deliver()
        costs[name] = Counter(counter.calls)  # a snapshot: the counter keeps counting
        assert h.task(f"cost-{name}")["status"] == "COMPLETED"

    plain, long = costs["plain"], costs["long"]
    assert long["UpdateItem"] - plain["UpdateItem"] == 4  # one per heartbeat that wrote
    # One at the attempt's start, one per heartbeat that wrote.
    assert long["ChangeMessageVisibilityBatch"] - plain.get("ChangeMessageVisibilityBatch", 0) == 1 + 4
    assert plain.get("ChangeMessageVisibilityBatch", 0) == 0 and plain["UpdateItem"] == 2  # acquire and complete
