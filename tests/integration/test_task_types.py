"""Task types end to end in one process: publish over the app, deliver from the real queues."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from chalice.test import Client
from pydantic import BaseModel

from chalicelib.handlers import REGISTRY
from chalicelib.models import MAX_TASK_BYTES
from chalicelib.registry import MAX_RESULT_BYTES, Registry, TaskContext, TaskType
from chalicelib.tasks.table import MAX_ERROR_BYTES
from tests.conftest import FakeClock
from tests.integration.harness import Harness

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def publish(h: Harness, body: dict[str, Any]) -> Any:
    return h.client.http.post("/publish", body=json.dumps(body), headers=JSON)


def details(response: Any) -> list[dict[str, str]]:
    return json.loads(response.body)["error"]["details"]


def test_a_checksum_task_runs_and_its_result_is_stored_and_returned(h: Harness) -> None:
    response = publish(h, {"id": "sum", "type": "checksum", "payload": {"text": "hello", "algorithm": "md5"}})
    assert response.status_code == 201
    assert h.task("sum")["type"] == "checksum" and h.task("sum")["result"] is None

    assert h.deliver().raised is None

    task = h.task("sum")
    assert task["status"] == "COMPLETED"
    assert task["result"] == {"algorithm": "md5", "digest": hashlib.md5(b"hello").hexdigest()}


def test_a_task_without_type_is_simulated_and_returns_what_it_slept(h: Harness) -> None:
    h.publish("seed", {"simulation": {"executionTime": 5, "failureChance": 0}})
    h.deliver()
    task = h.task("seed")
    assert (task["type"], task["status"], task["result"]) == ("simulate", "COMPLETED", {"sleptMs": 5})


def test_an_unknown_type_is_refused_listing_the_known_ones(h: Harness) -> None:
    response = publish(h, {"id": "u", "type": "resize-image", "payload": {}})
    assert response.status_code == 400
    assert details(response)[0]["field"] == "type"
    assert "capped, checksum, per-customer, simulate, steps, throttled" in details(response)[0]["message"]
    for bad in ("", 7, None):
        response = publish(h, {"id": "u", "type": bad, "payload": {}})
        assert response.status_code == 400 and details(response)[0]["field"] == "type", bad
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_payload_is_checked_against_its_types_model_at_the_door(h: Harness) -> None:
    response = publish(h, {"id": "c", "type": "checksum", "payload": {"algorithm": "crc32"}})
    assert response.status_code == 400
    assert {d["field"] for d in details(response)} == {"payload.text", "payload.algorithm"}
    assert h.client.http.get("/tasks/c").status_code == 404


@pytest.mark.parametrize("field", ["failureChance", "executionTime"])
def test_null_simulation_values_are_refused(h: Harness, field: str) -> None:
    response = publish(h, {"id": "n", "payload": {"simulation": {field: None}}})
    assert response.status_code == 400
    assert details(response)[0]["field"] == "payload.simulation"
    assert f"{field} must be a number, not null" in details(response)[0]["message"]


def test_a_payload_sent_to_the_queue_directly_is_checked_again_and_fails_permanently(h: Harness) -> None:
    h.send_raw(json.dumps({"id": "direct", "type": "checksum", "payload": {"text": 12}}))
    h.send_raw(json.dumps({"id": "nobody", "type": "no-such-type", "payload": {}}))

    delivery = h.deliver()

    assert delivery.raised is None  # both finished: nothing comes back
    direct, nobody = h.task("direct"), h.task("nobody")
    assert (direct["status"], direct["attempts"]) == ("FAILED", 1)
    assert direct["lastError"].startswith("permanent failure: the payload does not fit task type 'checksum'")
    assert "payload.text" in direct["lastError"]
    assert (nobody["status"], nobody["attempts"]) == ("FAILED", 1)
    assert "unknown task type 'no-such-type'" in nobody["lastError"]
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_permanent_failure_ends_the_task_after_exactly_one_attempt(h: Harness) -> None:
    h.publish("doomed", {"simulation": {"failureChance": 1, "permanentFailure": True}})

    delivery = h.deliver()

    assert delivery.raised is None
    task = h.task("doomed")
    assert (task["status"], task["attempts"], task["nextAttemptAt"]) == ("FAILED", 1, None)
    assert task["lastError"] == "permanent failure: simulated failure (failureChance 1)"
    assert [(e["attempt"], e["outcome"]) for e in task["history"]] == [(1, "failed")]
    assert h.depth(h.rt.tasks_queue.url) == 0 and h.depth(h.rt.dead_letters.url) == 0


class Slow(BaseModel):
    seconds: float


def with_types(h: Harness, *types: TaskType) -> None:
    registry = Registry()
    for name in REGISTRY.names():
        registry.register(REGISTRY.get(name))  # type: ignore[arg-type]
    for task_type in types:
        registry.register(task_type)
    h.rt.registry = registry


def test_an_attempt_that_overruns_its_timeout_is_failed_and_retried(h: Harness) -> None:
    def overrun(payload: Slow, context: TaskContext) -> str:
        h.clock.advance(payload.seconds)
        return "late"

    with_types(h, TaskType("slow", overrun, payload=Slow, timeout_seconds=2))
    assert publish(h, {"id": "late", "type": "slow", "payload": {"seconds": 3}}).status_code == 201

    assert h.deliver().raised is not None  # a retry is scheduled: the message comes back

    task = h.task("late")
    assert (task["status"], task["result"]) == ("RETRYING", None)
    assert task["history"][0]["error"].startswith("timed out after 3000 ms")


def test_a_type_with_fewer_attempts_stops_after_them_with_its_own_backoff(h: Harness) -> None:
    from chalicelib.registry import Backoff, TaskFailed

    def always(payload: dict[str, Any], context: TaskContext) -> None:
        raise TaskFailed(f"attempt {context.attempt} of {context.max_attempts}")

    with_types(h, TaskType("twice", always, max_attempts=2, backoff=Backoff(300, 300)))
    publish(h, {"id": "two", "type": "twice", "payload": {}})

    first = h.deliver()
    assert 150 <= h.visibility[first.records[0]["receiptHandle"]] <= 300  # equal jitter of the type's 300 s
    h.clock.advance(300)
    h.reveal(first)
    h.deliver()

    task = h.task("two")
    assert (task["status"], task["attempts"], task["maxAttempts"]) == ("FAILED", 2, 2)
    assert task["lastError"] == "attempt 2 of 2"


def test_a_maximal_payload_result_and_history_fit_in_one_item(h: Harness, settings: Any) -> None:
    """DynamoDB refuses items over 400 KB (and so does moto): the limits keep a task below it."""
    from chalicelib.models import Task

    store = h.rt.store
    envelope = len(json.dumps({"id": "big", "type": "simulate", "payload": {"blob": ""}}, separators=(",", ":")))
    payload = {"blob": "é" * ((MAX_TASK_BYTES - envelope) // 2)}
    task = Task(id="big", type="simulate", payload=payload)
    assert len(task.message_body().encode()) <= MAX_TASK_BYTES
    max_attempts = 100  # the highest MAX_ATTEMPTS the settings allow
    store.create(task, max_attempts)
    error = "€" * MAX_ERROR_BYTES  # three bytes each: cut to MAX_ERROR_BYTES
    for attempt in range(1, max_attempts):
        acquired = store.acquire(task, f"owner-{attempt}", f"m-{attempt}", max_attempts, 60)
        store.fail(acquired, error, retry_at_ms=store.now_ms())
    acquired = store.acquire(task, "last", "m-last", max_attempts, 60)
    result = json.dumps("x" * (MAX_RESULT_BYTES - 2))
    store.complete(acquired, result)

    record = store.get("big")
    assert record is not None and record.status.value == "COMPLETED" and len(record.history) == max_attempts
    assert all(len(entry["error"].encode()) <= MAX_ERROR_BYTES for entry in record.history[:-1])
    assert len(record.result_json or "") == MAX_RESULT_BYTES


def test_a_checksum_task_costs_the_aws_calls_a_simulated_one_does(h: Harness) -> None:
    h.publish("warm-up", {"simulation": {"failureChance": 0}})  # the queues' URLs are looked up once
    h.deliver()
    calls: dict[str, list[str]] = {"checksum": [], "simulate": []}
    current: list[str] = []
    for client in (h.rt.store.client, h.sqs):
        client.meta.events.register("before-call", lambda model, **_: current.append(model.name))
    for task_type, payload in (("checksum", {"text": "hello"}), ("simulate", {"simulation": {"failureChance": 0}})):
        current.clear()
        assert publish(h, {"id": f"cost-{task_type}", "type": task_type, "payload": payload}).status_code == 201
        assert h.deliver().raised is None
        assert h.task(f"cost-{task_type}")["status"] == "COMPLETED"
        calls[task_type] = sorted(current)
    # Publish: PutItem, SendMessage. Deliver: the event source's receive and delete, the
    # acquire and the complete. Reading the task back: one GetItem.
    assert calls["checksum"] == calls["simulate"]
    assert calls["checksum"].count("UpdateItem") == 2 and calls["checksum"].count("PutItem") == 1
