"""The consumers against a real (moto) queue with its redrive policy, delivered as Lambda would."""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.consume.consumer import BatchIncomplete
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness, fail_until_last


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def test_a_task_that_succeeds_is_completed_once_and_its_message_deleted(h: Harness) -> None:
    h.publish("ok", SUCCEEDS)

    delivery = h.deliver()

    assert delivery.raised is None
    task = h.task("ok")
    assert task["status"] == "COMPLETED"
    assert task["attempts"] == 1
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "succeeded")]
    assert task["finishedAt"] is not None
    assert h.depth(h.rt.tasks_queue.url) == 0
    item = h.rt.store._client.get_item(TableName="taskproc-test-tasks", Key={"id": {"S": "ok"}})["Item"]
    retention = h.rt.settings.RETENTION_DAYS * 86_400
    assert abs(int(item["expiresAt"]["N"]) - (h.clock() + retention)) < 5  # the table's TTL attribute
    assert "leaseOwner" not in item and "leaseExpiresAt" not in item


def test_a_failure_schedules_a_retry_by_setting_the_message_visibility_to_the_backoff(h: Harness) -> None:
    h.publish("flaky", FAILS)

    delivery = h.deliver()

    assert isinstance(delivery.raised, BatchIncomplete)
    delay = h.visibility[delivery.records[0]["receiptHandle"]]
    assert 30 <= delay <= 60  # attempt 1: ceiling 60 s, equal jitter keeps at least half
    task = h.task("flaky")
    assert task["status"] == "RETRYING"
    assert task["lastError"] == "simulated failure (failureChance 1)"
    assert task["nextAttemptAt"] is not None
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "failed")]
    assert h.deliver().records == []  # hidden for the backoff
    assert h.depth(h.rt.tasks_queue.url) == 1


def test_the_retry_runs_after_the_backoff_and_the_backoff_grows(h: Harness) -> None:
    h.publish("flaky", FAILS)
    first = h.deliver()
    h.clock.advance(h.visibility[first.records[0]["receiptHandle"]])
    h.reveal(first)

    second = h.deliver()

    assert 60 <= h.visibility[second.records[0]["receiptHandle"]] <= 120  # attempt 2: ceiling 120 s
    task = h.task("flaky")
    assert task["attempts"] == 2
    assert [a["outcome"] for a in task["history"]] == ["failed", "failed"]


class FailThenSucceed(random.Random):
    """The runtime's random source, drawing below any failure chance once and above it after."""

    def __init__(self) -> None:
        super().__init__(0)
        self.draws = iter([0.0])

    def random(self) -> float:
        return next(self.draws, 0.99)

    def uniform(self, a: float, b: float) -> float:  # the backoff's jitter draws nothing of ours
        return (a + b) / 2


def test_a_task_completed_after_a_failed_attempt_has_no_last_error_and_keeps_it_in_history(h: Harness) -> None:
    h.rt.rng = FailThenSucceed()
    h.publish("second-try", {"simulation": {"failureChance": 0.5}})
    first = h.deliver()
    assert h.task("second-try")["lastError"] == "simulated failure (failureChance 0.5)"
    h.clock.advance(h.visibility[first.records[0]["receiptHandle"]])
    h.reveal(first)

    h.deliver()

    task = h.task("second-try")
    assert (task["status"], task["lastError"]) == ("COMPLETED", None)
    assert [(a["outcome"], a["error"]) for a in task["history"]] == [
        ("failed", "simulated failure (failureChance 0.5)"),
        ("succeeded", None),
    ]


def test_the_last_failure_is_failed_and_reaches_the_dead_letter_queue_at_once(h: Harness) -> None:
    h.publish("doomed", FAILS)

    last = fail_until_last(h, "doomed")

    assert h.visibility[last.records[0]["receiptHandle"]] == 0
    task = h.task("doomed")
    assert task["status"] == "FAILED"
    assert task["attempts"] == 3
    assert task["lastError"] == "simulated failure (failureChance 1)"
    assert [a["outcome"] for a in task["history"]] == ["failed"] * 3
    assert h.deliver().records == []  # the next receive moved it to the DLQ
    dead = h.deliver_dead_letters()
    assert [json.loads(r["body"])["id"] for r in dead.records] == ["doomed"]
    assert dead.raised is None
    assert h.task("doomed")["status"] == "FAILED"
    assert h.depth(h.rt.dead_letters.url) == 0


def test_message_error_fails_every_attempt_whatever_the_failure_chance(h: Harness) -> None:
    response = h.client.http.post(
        "/tasks", body=json.dumps({"message": "ERROR"}), headers={"Content-Type": "application/json"}
    )
    task_id = json.loads(response.body)["taskId"]

    fail_until_last(h, task_id)

    task = h.task(task_id)
    assert task["status"] == "FAILED"
    assert task["attempts"] == 3
    assert "ERROR" in task["lastError"]


def test_a_duplicate_delivery_of_a_completed_task_is_dropped_without_running(h: Harness) -> None:
    h.publish("once", SUCCEEDS)
    h.deliver()
    h.send_raw(json.dumps({"id": "once", "payload": SUCCEEDS}))

    delivery = h.deliver()

    assert delivery.raised is None
    assert len(delivery.records) == 1
    assert h.task("once")["attempts"] == 1
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_duplicate_while_the_lease_is_live_is_neither_run_nor_deleted(h: Harness) -> None:
    from chalicelib.models import Task

    h.publish("busy", SUCCEEDS)
    h.rt.store.acquire(Task(id="busy", payload=SUCCEEDS), "other-consumer", "m-0", 3, lease_seconds=60)

    delivery = h.deliver()

    assert isinstance(delivery.raised, BatchIncomplete)
    assert 59 <= h.visibility[delivery.records[0]["receiptHandle"]] <= 60  # back when the lease ends
    assert h.task("busy")["attempts"] == 1
    assert h.depth(h.rt.tasks_queue.url) == 1


def test_an_expired_lease_is_taken_over_and_the_dead_attempt_recorded_expired(h: Harness) -> None:
    from chalicelib.models import Task

    h.publish("orphan", SUCCEEDS)
    h.rt.store.acquire(Task(id="orphan", payload=SUCCEEDS), "dead-consumer", "m-0", 3, lease_seconds=60)
    assert h.task("orphan")["history"][0]["outcome"] == "running"
    h.clock.advance(61)
    assert h.task("orphan")["history"][0]["outcome"] == "expired"

    h.deliver()

    task = h.task("orphan")
    assert task["status"] == "COMPLETED"
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "expired"), (2, "succeeded")]


def test_a_last_attempt_that_expired_fails_the_task_on_the_next_delivery(h: Harness) -> None:
    from chalicelib.models import Task

    h.publish("crashy", SUCCEEDS)
    for n in range(3):
        h.rt.store.acquire(Task(id="crashy", payload=SUCCEEDS), f"dead-{n}", "m-0", 3, lease_seconds=60)
        h.clock.advance(61)

    delivery = h.deliver()

    assert isinstance(delivery.raised, BatchIncomplete)
    task = h.task("crashy")
    assert task["status"] == "FAILED"
    assert task["lastError"].startswith("attempt 3 of 3 expired")
    assert task["history"][-1]["outcome"] == "expired"


def test_a_duplicate_during_the_backoff_neither_adds_an_attempt_nor_cuts_it_short(h: Harness) -> None:
    h.publish("patient", FAILS)
    first = h.deliver()
    delay = h.visibility[first.records[0]["receiptHandle"]]
    h.send_raw(json.dumps({"id": "patient", "payload": FAILS}))
    h.clock.advance(delay / 2)

    copy = h.deliver()

    assert isinstance(copy.raised, BatchIncomplete)
    assert h.task("patient")["attempts"] == 1
    remaining = h.visibility[copy.records[0]["receiptHandle"]]
    assert delay / 2 - 1 <= remaining <= delay / 2 + 1


def test_poison_messages_go_to_the_dead_letter_queue_at_once_and_are_recorded(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.send_raw("not json at all")
    h.send_raw(json.dumps({"id": "bad-range", "payload": {"simulation": {"failureChance": 5}}}))
    h.send_raw(json.dumps({"no": "id"}))

    delivery = h.deliver()

    assert delivery.raised is None  # nothing to retry
    assert h.depth(h.rt.tasks_queue.url) == 0
    with caplog.at_level(logging.ERROR, logger="taskproc"):
        dead = h.deliver_dead_letters()
    # A task whose payload breaks its type's model is no poison: it fails permanently, at once.
    assert len(dead.records) == 2
    assert all("poisonReason" in r["messageAttributes"] for r in dead.records)
    task = h.task("bad-range")
    assert task["status"] == "FAILED"
    assert task["attempts"] == 1
    assert task["lastError"].startswith(
        "permanent failure: the payload does not fit task type 'simulate': payload.simulation.failureChance"
    )
    logged = [r for r in caplog.records if r.name == "taskproc" and r.getMessage() == "poison_recorded"]
    assert {getattr(r, "body", None) for r in logged} >= {"not json at all", '{"no": "id"}'}


def test_a_mixed_batch_deletes_what_finished_keeps_what_failed_and_runs_nothing_twice(h: Harness) -> None:
    h.publish("good", SUCCEEDS)
    h.publish("bad", FAILS)
    h.send_raw("poison")

    delivery = h.deliver()

    assert len(delivery.records) == 3
    assert isinstance(delivery.raised, BatchIncomplete)
    assert h.depth(h.rt.tasks_queue.url) == 1  # only the failed task's message is left
    h.clock.advance(120)
    h.reveal(delivery, only=lambda body: body.startswith('{"id":"bad"'))
    again = h.deliver()
    assert [json.loads(r["body"])["id"] for r in again.records] == ["bad"]
    assert h.task("good")["attempts"] == 1
    assert h.task("bad")["attempts"] == 2


def test_with_report_batch_item_failures_only_the_failures_are_reported(h: Harness, runtime: Any) -> None:
    runtime.settings = runtime.settings.model_copy(update={"REPORT_BATCH_ITEM_FAILURES": True})
    h.publish("good", SUCCEEDS)
    h.publish("bad", FAILS)

    delivery = h.deliver()

    assert delivery.raised is None
    failed_ids = [item["itemIdentifier"] for item in delivery.returned["batchItemFailures"]]
    bad = [r["messageId"] for r in delivery.records if json.loads(r["body"])["id"] == "bad"]
    assert failed_ids == bad
    assert h.depth(h.rt.tasks_queue.url) == 1


def test_the_records_of_a_batch_run_concurrently(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import chalicelib.consume.consumer as consumer

    barrier = threading.Barrier(10, timeout=10)
    real_run = consumer.run_attempt

    def run_together(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()  # breaks unless all ten records are running at once
        return real_run(*args, **kwargs)

    monkeypatch.setattr(consumer, "run_attempt", run_together)
    for n in range(10):
        h.publish(f"c{n}", SUCCEEDS)

    delivery = h.deliver()

    assert len(delivery.records) == 10
    assert delivery.raised is None
    assert all(h.task(f"c{n}")["status"] == "COMPLETED" for n in range(10))


def test_an_acquire_whose_answer_was_lost_is_recognised_on_the_retry(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    # In-process moto applies the request before the injected answer replaces its
    # response: the write lands, the consumer sees a 500, and botocore retries it.
    h.publish("landed", SUCCEEDS)
    with inject_errors(h.rt.store._client, "UpdateItem", status=500, code="InternalServerError", times=1) as calls:
        delivery = h.deliver()

    assert calls.count == 1
    assert delivery.raised is None
    task = h.task("landed")
    assert task["status"] == "COMPLETED"
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "succeeded")]


def test_a_completion_whose_answer_was_lost_is_not_mistaken_for_a_lost_lease(h: Harness) -> None:
    from tests.integration.faults import inject_errors

    h.publish("landed", SUCCEEDS)
    with inject_errors(h.rt.store._client, "UpdateItem", status=500, code="InternalServerError", times=1, skip=1):
        delivery = h.deliver()

    assert delivery.raised is None
    assert h.task("landed")["status"] == "COMPLETED"


def test_a_task_dead_lettered_with_attempts_left_is_queued_again_and_runs_them(h: Harness) -> None:
    h.publish("early", FAILS)
    delivery = h.deliver()
    delay = h.visibility[delivery.records[0]["receiptHandle"]]
    # Two deliveries during the backoff are deferred, and use up the message's receives.
    for _ in range(2):
        h.reveal(delivery)
        delivery = h.deliver()
        assert len(delivery.records) == 1 and isinstance(delivery.raised, BatchIncomplete)
    h.reveal(delivery)
    assert h.deliver().records == []  # SQS moved it to the dead-letter queue
    assert h.depth(h.rt.dead_letters.url) == 1
    h.clock.advance(delay)

    dead = h.deliver_dead_letters()

    assert dead.raised is None
    task = h.task("early")
    assert (task["status"], task["attempts"]) == ("RETRYING", 1)
    record = h.rt.store.get("early")
    assert record.redrives == 1
    assert record.last_message_id not in {r["messageId"] for r in dead.records}
    again = h.deliver()
    assert [r["messageId"] for r in again.records] == [record.last_message_id]
    assert h.task("early")["attempts"] == 2


def test_a_task_dead_lettered_again_after_its_redrives_fails_with_its_last_error(h: Harness) -> None:
    from chalicelib.consume.consumer import MAX_REDRIVES

    h.publish("stuck", FAILS)
    first = h.deliver()
    h.sqs.delete_message(QueueUrl=h.rt.tasks_queue.url, ReceiptHandle=first.records[0]["receiptHandle"])
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=first.records[0]["body"])
    h.rt.store._client.update_item(
        TableName="taskproc-test-tasks",
        Key={"id": {"S": "stuck"}},
        UpdateExpression="SET redrives = :n REMOVE lastMessageId",
        ExpressionAttributeValues={":n": {"N": str(MAX_REDRIVES)}},
    )

    h.deliver_dead_letters()

    task = h.task("stuck")
    assert task["status"] == "FAILED"
    assert task["lastError"] == "simulated failure (failureChance 1)"
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_dead_lettered_duplicate_copy_leaves_the_task_to_its_live_message(h: Harness) -> None:
    h.publish("alive", FAILS)
    h.deliver()
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=json.dumps({"id": "alive", "payload": FAILS}))

    dead = h.deliver_dead_letters()

    assert dead.raised is None
    assert h.task("alive")["status"] == "RETRYING"


def test_a_dead_letter_never_overwrites_completed(h: Harness) -> None:
    h.publish("done", SUCCEEDS)
    h.deliver()
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=json.dumps({"id": "done", "payload": SUCCEEDS}))

    h.deliver_dead_letters()

    assert h.task("done")["status"] == "COMPLETED"


def test_an_expired_attempt_whose_record_answer_was_lost_is_recorded_once(h: Harness) -> None:
    from chalicelib.models import Task
    from tests.integration.faults import inject_errors

    h.publish("orphan", SUCCEEDS)
    h.rt.store.acquire(Task(id="orphan", payload=SUCCEEDS), "dead-consumer", "m-0", 3, lease_seconds=60)
    h.clock.advance(61)
    # The takeover's first write is the refused acquire; the second records the expired attempt
    # and drops the dead lease. In-process moto applies it and then the answer is lost, so
    # botocore sends it again, and its version check refuses the repeat.
    with inject_errors(h.rt.store._client, "UpdateItem", status=500, code="InternalServerError", times=1, skip=1):
        h.deliver()

    task = h.task("orphan")
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "expired"), (2, "succeeded")]
