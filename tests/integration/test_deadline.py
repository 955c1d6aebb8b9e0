"""The attempt's deadline inside a Lambda invocation, through the app's consumer and the real queue and table.

The invocation is given as Lambda gives it, a context whose remaining time counts
down; here a fake one, shorter than the type's timeout.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from chalice.local import LambdaContext
from chalice.test import Client

import app
from chalicelib.consume.consumer import BatchIncomplete
from chalicelib.consume.deadline import margin_seconds
from chalicelib.registry import TaskContext, TaskType
from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.lambda_sqs import Delivery, lambda_records
from tests.integration.test_task_types import publish, with_types

TYPE_TIMEOUT_SECONDS = 20
# What the fake invocation leaves an attempt after its margin: less than the type's timeout.
LEFT_SECONDS = 8
# The real seconds a batch waits for its handlers before it settles without a runaway:
# ample for nine quick tasks against moto.
RUNAWAY_WAIT_SECONDS = 5


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


class LambdaClock:
    """The fake context's time source: still until moved."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


def context(h: Harness, left_seconds: float, clock: Any = None) -> LambdaContext:
    """A process_tasks context with `left_seconds` more than the margin remaining."""
    remaining_ms = (margin_seconds(h.rt.settings) + left_seconds) * 1000
    return LambdaContext("process_tasks", 256, max_runtime_ms=remaining_ms, time_source=clock)  # type: ignore[arg-type]


def invoke(h: Harness, lambda_context: LambdaContext) -> Delivery:
    """One poll, handed to process_tasks with `lambda_context` as Lambda hands it; settled as the event source does."""
    records = lambda_records(h.sqs, h.rt.tasks_queue.url)
    delivery = Delivery(records)
    try:
        delivery.returned = app.process_tasks({"Records": records}, lambda_context)
    except Exception as exc:  # noqa: BLE001 - the mapping keeps the batch whatever was raised
        delivery.raised = exc
        return delivery
    entries = [{"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(records)]
    h.sqs.delete_message_batch(QueueUrl=h.rt.tasks_queue.url, Entries=entries)
    return delivery


def test_the_deadline_is_the_invocation_s_end_less_the_margin_when_that_comes_first(h: Harness) -> None:
    seen: list[tuple[float, float]] = []

    def note(payload: Any, ctx: TaskContext) -> str:
        seen.append((ctx.deadline, ctx.remaining_seconds()))
        return "noted"

    with_types(h, TaskType("report", note, timeout_seconds=TYPE_TIMEOUT_SECONDS))
    publish(h, {"id": "short", "type": "report", "payload": {}})
    assert invoke(h, context(h, LEFT_SECONDS, LambdaClock())).raised is None
    publish(h, {"id": "long", "type": "report", "payload": {}})
    assert invoke(h, context(h, TYPE_TIMEOUT_SECONDS + 30, LambdaClock())).raised is None

    # The store's clock counts whole milliseconds.
    expected = [(h.clock() + LEFT_SECONDS, LEFT_SECONDS), (h.clock() + TYPE_TIMEOUT_SECONDS, TYPE_TIMEOUT_SECONDS)]
    assert seen == [pytest.approx(pair, abs=0.001) for pair in expected]
    assert h.task("short")["status"] == h.task("long")["status"] == "COMPLETED"


def test_a_handler_that_returns_after_the_invocation_s_deadline_is_recorded_timed_out(h: Harness) -> None:
    lambda_clock = LambdaClock()

    def overrun(payload: Any, ctx: TaskContext) -> str:
        h.clock.advance(LEFT_SECONDS + 1)
        lambda_clock.now += LEFT_SECONDS + 1
        return "late"

    with_types(h, TaskType("report", overrun, timeout_seconds=TYPE_TIMEOUT_SECONDS))
    publish(h, {"id": "late", "type": "report", "payload": {}})

    delivery = invoke(h, context(h, LEFT_SECONDS, lambda_clock))

    assert isinstance(delivery.raised, BatchIncomplete)  # a retry: its message comes back
    task = h.task("late")
    assert (task["status"], task["result"], task["attempts"]) == ("RETRYING", None, 1)
    assert task["history"][0]["error"] == (
        "timed out after 9000 ms (the invocation's end less its margin left it 8000 ms); its result was discarded"
    )


def test_a_runaway_handler_is_recorded_timed_out_its_message_comes_back_and_its_batch_mates_are_settled(
    h: Harness,
) -> None:
    release, threads = threading.Event(), []

    def runaway(payload: Any, ctx: TaskContext) -> str:
        threads.append(threading.current_thread())
        release.wait(60)  # ignores its deadline until the test lets it go
        return "too late"

    with_types(h, TaskType("runaway", runaway, timeout_seconds=TYPE_TIMEOUT_SECONDS))
    for n in range(9):
        h.publish(f"mate-{n}", SUCCEEDS)
    publish(h, {"id": "runaway", "type": "runaway", "payload": {}})
    # A real clock: the consumer waits for its handlers, then settles without the runaway.
    invocation = context(h, RUNAWAY_WAIT_SECONDS)
    started = time.monotonic()
    try:
        delivery = invoke(h, invocation)
        took = time.monotonic() - started
    finally:
        release.set()
    assert len(delivery.records) == 10

    assert isinstance(delivery.raised, BatchIncomplete)
    assert took < margin_seconds(h.rt.settings) + RUNAWAY_WAIT_SECONDS  # ended before the invocation did
    assert [h.task(f"mate-{n}")["status"] for n in range(9)] == ["COMPLETED"] * 9
    task = h.task("runaway")
    assert (task["status"], task["attempts"]) == ("RETRYING", 1)
    assert task["history"][0]["outcome"] == "failed"
    assert task["history"][0]["error"].startswith("timed out after")
    assert "still running at the invocation's end less its margin" in task["history"][0]["error"]
    (runaway_record,) = [r for r in delivery.records if json.loads(r["body"])["id"] == "runaway"]
    backoff = h.visibility[runaway_record["receiptHandle"]]
    assert 30 <= backoff <= 60 and h.depth(h.rt.tasks_queue.url) == 1  # only its message is left

    threads[0].join(10)  # the handler returns at last: its result is discarded
    assert not threads[0].is_alive()
    assert (h.task("runaway")["status"], h.task("runaway")["result"]) == ("RETRYING", None)

    h.clock.advance(backoff)
    h.reveal(delivery, only=lambda body: json.loads(body)["id"] == "runaway")
    assert h.deliver().raised is None  # the next attempt's handler returns at once
    task = h.task("runaway")
    assert (task["status"], task["attempts"], task["result"]) == ("COMPLETED", 2, "too late")
    assert h.depth(h.rt.tasks_queue.url) == 0
