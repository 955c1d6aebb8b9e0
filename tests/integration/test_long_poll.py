"""`GET /tasks/{id}?waitSeconds=N`: the long-poll, proved on a fake clock whose pauses run the consumer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.publish.wait import DEFAULT_SCHEDULE, MAX_WAIT_SECONDS, WaitClock
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness
from tests.integration.lambda_sqs import Delivery


class Pauses:
    """The long-poll's sleep: moves its clock and the store's, and runs what a test put at a pause (the consumer).

    The wait has a clock of its own, as on Lambda (a monotonic one), so that a test can move the
    store's past a backoff without spending the wait.
    """

    def __init__(self, store_clock: FakeClock) -> None:
        self.store_clock = store_clock
        self.clock = FakeClock()
        self.taken: list[float] = []
        self.at: dict[int, Callable[[], Any]] = {}  # pause number (from 1) -> what happens during it

    def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        self.clock.advance(seconds)
        self.store_clock.advance(seconds)
        action = self.at.get(len(self.taken))
        if action is not None:
            action()


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


@pytest.fixture
def pauses(runtime: Any, clock: FakeClock) -> Pauses:
    pauses = Pauses(clock)
    runtime.wait_clock = WaitClock(now=pauses.clock, sleep=pauses)
    return pauses


@pytest.fixture
def reads(runtime: Any) -> list[dict[str, Any]]:
    """Every GetItem the API makes on the task table, in order."""
    made: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == runtime.settings.TASKS_TABLE:
            made.append(params)

    runtime.store.client.meta.events.register("before-parameter-build.dynamodb.GetItem", record)
    return made


def wait(h: Harness, task_id: str, query: str) -> tuple[int, dict[str, Any]]:
    response = h.client.http.get(f"/tasks/{quote(task_id, safe='')}?{query}")
    return response.status_code, json.loads(response.body)


def test_a_wait_answers_as_soon_as_the_consumer_ends_the_task(
    h: Harness, pauses: Pauses, reads: list[dict[str, Any]]
) -> None:
    h.publish("awaited", SUCCEEDS)
    pauses.at[3] = h.deliver  # the task runs to its end during the third pause

    status, view = wait(h, "awaited", "waitSeconds=20")

    assert (status, view["status"]) == (200, "COMPLETED")
    assert pauses.taken == [0.1, 0.2, 0.25]  # answered by the read right after the end, not at 20 s
    assert len(reads) == 4 and all(read["ConsistentRead"] for read in reads)


def test_a_wait_goes_on_through_retries_and_answers_the_failure_that_ends_it(h: Harness, pauses: Pauses) -> None:
    h.publish("flaky", FAILS)
    deliveries: list[Delivery] = []

    def attempt() -> None:
        if deliveries:  # the backoff passes on the store's clock, not the wait's
            h.clock.advance(h.visibility[deliveries[-1].records[0]["receiptHandle"]])
            h.reveal(deliveries[-1])
        deliveries.append(h.deliver())
        assert h.task("flaky")["status"] == ("FAILED" if len(deliveries) == 3 else "RETRYING")

    pauses.at.update({1: attempt, 2: attempt, 3: attempt})

    status, view = wait(h, "flaky", "waitSeconds=5")

    assert (status, view["status"], view["attempts"], len(pauses.taken)) == (200, "FAILED", 3, 3)


def test_a_wait_on_a_terminal_task_answers_at_once_with_one_read(
    h: Harness, pauses: Pauses, reads: list[dict[str, Any]]
) -> None:
    h.publish("done", SUCCEEDS)
    h.deliver()

    status, view = wait(h, "done", f"waitSeconds={MAX_WAIT_SECONDS}")

    assert (status, view["status"]) == (200, "COMPLETED")
    assert pauses.taken == [] and len(reads) == 1


def test_a_wait_that_times_out_answers_the_current_view_at_its_deadline(
    h: Harness, pauses: Pauses, reads: list[dict[str, Any]]
) -> None:
    h.publish("slow", SUCCEEDS)
    started = pauses.clock.now

    status, view = wait(h, "slow", "waitSeconds=2")

    assert (status, view["status"]) == (200, "PENDING")
    assert pauses.clock.now - started == pytest.approx(2.0)  # the last read is at the deadline, not past it
    assert pauses.taken[:3] == [0.1, 0.2, 0.25] and max(pauses.taken) == 0.25
    assert len(reads) == DEFAULT_SCHEDULE.max_reads(2) == 10


def test_a_wait_sees_the_attempt_running_when_it_times_out_during_it(h: Harness, pauses: Pauses) -> None:
    h.publish("running", SUCCEEDS)
    received = h.sqs.receive_message(QueueUrl=h.rt.tasks_queue.url)["Messages"][0]
    from chalicelib.models import Task

    pauses.at[1] = lambda: h.rt.store.acquire(
        Task(id="running", payload=SUCCEEDS), "a-consumer", received["MessageId"], 3, lease_seconds=60
    )

    status, view = wait(h, "running", "waitSeconds=1")

    assert (status, view["status"], view["history"][-1]["outcome"]) == (200, "PROCESSING", "running")


def test_without_wait_seconds_or_with_0_the_read_answers_at_once(
    h: Harness, pauses: Pauses, reads: list[dict[str, Any]]
) -> None:
    h.publish("now", SUCCEEDS)

    assert wait(h, "now", "")[1]["status"] == "PENDING"
    assert wait(h, "now", "waitSeconds=0")[1]["status"] == "PENDING"
    assert pauses.taken == [] and len(reads) == 2


def test_a_wait_for_an_unknown_id_is_a_404_at_once(h: Harness, pauses: Pauses) -> None:
    status, body = wait(h, "nobody", "waitSeconds=20")

    assert (status, body["error"]["code"]) == (404, "not_found")
    assert pauses.taken == []


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("waitSeconds=21", "less than or equal to 20"),
        ("waitSeconds=-1", "whole number written with the digits 0-9"),
        ("waitSeconds=1.5", "whole number written with the digits 0-9"),
        ("waitSeconds=%C2%B2", "whole number written with the digits 0-9"),
        ("waitSeconds=", "whole number written with the digits 0-9"),
        ("waitSeconds=soon", "whole number written with the digits 0-9"),
        ("waitSeconds=5&waitSeconds=6", "must be given at most once"),
    ],
)
def test_a_bad_wait_is_a_400_naming_wait_seconds_and_the_rule(
    h: Harness, pauses: Pauses, query: str, rule: str
) -> None:
    h.publish("any", SUCCEEDS)

    status, body = wait(h, "any", query)

    assert status == 400 and body["error"]["code"] == "validation_error", body
    (detail,) = body["error"]["details"]
    assert detail["field"] == "waitSeconds" and rule in detail["message"], detail
    assert pauses.taken == []


def test_an_unknown_parameter_of_a_task_read_is_a_400_naming_it(h: Harness) -> None:
    h.publish("any", SUCCEEDS)

    status, body = wait(h, "any", "wait=5")

    assert status == 400
    assert body["error"]["details"] == [
        {"field": "wait", "message": "is not a parameter of this route (it takes waitSeconds)"}
    ]
