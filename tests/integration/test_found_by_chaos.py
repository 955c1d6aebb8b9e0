"""What the chaos run found, reproduced deterministically against moto and kept fixed.

A takeover that dies (or loses an answer) between acquiring and recording the dead
attempt; a cancel whose running attempt's consumer died on the last attempt; a retry
of a task recorded from a poison message; a workflow child stored from its message without
its workflow's mark (its API died between the send and the put), never counted; the same child
recorded FAILED by the dead-letter handler, also without its mark.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import FakeClock
from tests.integration.harness import SUCCEEDS, Harness


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def _attempts(h: Harness, task_id: str) -> list[tuple[int, str]]:
    return [(a["attempt"], a["outcome"]) for a in h.task(task_id)["history"] if "attempt" in a]


def test_a_consumer_that_dies_right_after_a_takeover_leaves_both_dead_attempts_in_the_history(h: Harness) -> None:
    from chalicelib.models import Task

    h.publish("orphan", SUCCEEDS)
    # Two consumers die in turn, the second right after its acquire took the task over.
    for owner in ("dead-1", "dead-2"):
        h.rt.store.acquire(Task(id="orphan", payload=SUCCEEDS), owner, "m-0", 3, lease_seconds=60)
        h.clock.advance(61)

    h.deliver()

    assert h.task("orphan")["status"] == "COMPLETED"
    assert _attempts(h, "orphan") == [(1, "expired"), (2, "expired"), (3, "succeeded")]


def test_a_takeover_whose_acquire_answer_was_lost_still_records_the_dead_attempt(h: Harness) -> None:
    from chalicelib.models import Task
    from tests.integration.faults import inject_errors

    h.publish("orphan", SUCCEEDS)
    h.rt.store.acquire(Task(id="orphan", payload=SUCCEEDS), "dead-consumer", "m-0", 3, lease_seconds=60)
    h.clock.advance(61)
    with inject_errors(h.rt.store._client, "UpdateItem", status=500, code="InternalServerError", times=1) as calls:
        h.deliver()

    assert calls.count == 1
    assert h.task("orphan")["status"] == "COMPLETED"
    assert _attempts(h, "orphan") == [(1, "expired"), (2, "succeeded")]


def test_a_cancel_requested_task_whose_last_attempt_died_ends_cancelled_when_dead_lettered(h: Harness) -> None:
    from chalicelib.models import Task

    h.publish("doomed", SUCCEEDS)
    task = Task(id="doomed", payload=SUCCEEDS)
    # The message SQS moves to the dead-letter queue once its receives run out.
    dead_id = h.rt.dead_letters.send(task.message_body())
    for n in range(3):
        if n:
            h.clock.advance(61)  # each consumer dies holding the lease
        h.rt.store.acquire(task, f"dead-{n}", dead_id, 3, lease_seconds=60)
    assert h.client.http.post("/tasks/doomed/cancel").status_code == 202  # while attempt 3 runs
    h.clock.advance(61)

    h.deliver_dead_letters()

    # The running attempt did not succeed: a cancel asked for while it ran ends the task CANCELLED.
    assert h.task("doomed")["status"] == "CANCELLED"


def test_a_task_recorded_from_a_poison_message_cannot_be_retried(h: Harness) -> None:
    h.send_raw(json.dumps({"id": "poisoned", "payload": ["not", "an", "object"]}))
    h.deliver()
    h.deliver_dead_letters()
    assert h.task("poisoned")["status"] == "FAILED"

    response = h.client.http.post("/tasks/poisoned/retry")
    if response.status_code == 202:
        h.deliver()

    # A poison message carried no payload a handler can run: there is nothing to start over.
    assert response.status_code == 409, (response.status_code, h.task("poisoned")["status"])


def test_an_update_answers_the_old_item_it_replaced_even_when_another_write_races_it(aws: Any) -> None:
    """moto copies the item for ReturnValues=ALL_OLD before it takes the write's lock; an
    operator's retry landing in between made an acquire number its attempt 2, not 1."""
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    dynamodb = aws.client("dynamodb")
    table, key = "taskproc-test-tasks", {"id": {"S": "race"}}
    dynamodb.put_item(TableName=table, Item={**key, "attempts": {"N": "1"}})

    def restart() -> None:  # the operator's retry: attempts back to 0
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET attempts = :zero",
            ExpressionAttributeValues={":zero": {"N": "0"}},
        )

    racer = threading.Thread(target=restart)
    update = DynamoDBBackend.update_item
    started = threading.Event()

    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Between the handler's copy of the old item and the write itself.
        if threading.current_thread() is not racer and not started.is_set():
            started.set()
            racer.start()
            racer.join(timeout=1.0)  # room for the race to land in between, if nothing stops it
        return update(self, *args, **kwargs)

    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    try:
        answer = dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="ADD attempts :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_OLD",
        )
    finally:
        DynamoDBBackend.update_item = update  # type: ignore[method-assign]
    racer.join(timeout=10)

    final = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["attempts"]["N"]
    # Either order is a real history; the answer must name the item this update changed.
    assert (answer["Attributes"]["attempts"]["N"], final) in {("1", "0"), ("0", "1")}


def test_an_operator_write_whose_answer_was_lost_answers_as_the_write_it_was(h: Harness) -> None:
    """A chaos run found it: the retry's restart landed, its answer was lost, botocore's retry met
    the changed version, and the operator got a 409 for a retry that had happened."""

    class LosesOneAnswer:
        """The real client, except that the first UpdateItem is applied and then sent again, as
        botocore's retry does after a lost answer: the caller sees what the second one meets."""

        def __init__(self, real: Any) -> None:
            self._real, self.lost = real, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

        def update_item(self, **kwargs: Any) -> Any:
            if not self.lost:
                self.lost += 1
                self._real.update_item(**kwargs)
            return self._real.update_item(**kwargs)

    h.publish("lost-answer", {"simulation": {"failureChance": 1, "permanentFailure": True}})
    h.deliver()
    assert h.task("lost-answer")["status"] == "FAILED"
    real = h.rt.operator_store._client
    h.rt.operator_store._client = flaky = LosesOneAnswer(real)
    try:
        response = h.client.http.post(
            "/tasks/lost-answer/retry", body="{}", headers={"Content-Type": "application/json"}
        )
    finally:
        h.rt.operator_store._client = real
    assert flaky.lost == 1
    assert response.status_code == 202, response.body
    assert [e["kind"] for e in h.task("lost-answer")["history"]].count("retry") == 1


def test_a_workflow_child_stored_from_its_message_keeps_its_mark_so_it_is_counted_and_the_post_repeats(
    h: Harness,
) -> None:
    # The API died after sending the children's messages and before storing their items: each child is
    # stored by the consumer that receives its message, which must keep the workflow's mark.
    from chalicelib.workflows.service import parse
    from chalicelib.workflows.store import workflow_store

    body = {
        "id": "wlost",
        "children": [{"type": "simulate", "payload": SUCCEEDS} for _ in range(3)],
        "then": {"type": "simulate", "payload": SUCCEEDS},
        "onChildFailure": "fail",
    }
    workflow = parse(body, h.rt)
    workflow_store(h.rt).create(workflow)
    for child in workflow.children:
        h.send_raw(child.message_body())

    for _ in range(5):
        h.deliver()

    assert [h.task(f"wlost%2F{n}")["status"] for n in (1, 2, 3)] == ["COMPLETED"] * 3
    view = json.loads(h.client.http.get("/workflows/wlost").body)
    assert view["then"] == {"id": "wlost/then", "status": "COMPLETED"}, view
    again = h.client.http.post("/workflows", body=json.dumps(body), headers={"Content-Type": "application/json"})
    assert again.status_code == 201, again.body


def test_a_workflow_child_dead_lettered_before_it_was_stored_is_counted_so_its_workflow_ends(h: Harness) -> None:
    # Its publish died before the put, and every receive of its message failed before the consumer
    # stored it: the dead-letter handler records it FAILED, and must keep its workflow's mark.
    from chalicelib.workflows.service import parse
    from chalicelib.workflows.store import workflow_store

    body = {
        "id": "wdead",
        "children": [{"type": "simulate", "payload": SUCCEEDS} for _ in range(2)],
        "then": {"type": "simulate", "payload": SUCCEEDS},
        "onChildFailure": "continue",
    }
    workflow = parse(body, h.rt)
    workflow_store(h.rt).create(workflow)
    first, second = workflow.children
    h.send_raw(first.message_body())
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=second.message_body())

    assert h.deliver_dead_letters().records
    for _ in range(5):
        h.deliver()

    assert [h.task(f"wdead%2F{n}")["status"] for n in (1, 2)] == ["COMPLETED", "FAILED"]
    view = json.loads(h.client.http.get("/workflows/wdead").body)
    assert view["then"] == {"id": "wdead/then", "status": "COMPLETED"}, view
    again = h.client.http.post("/workflows", body=json.dumps(body), headers={"Content-Type": "application/json"})
    assert again.status_code == 201, again.body


def test_no_read_sees_an_item_an_update_is_still_creating(aws: Any) -> None:
    """moto stores a new item's key alone, then applies the update's SETs to it one by one; a
    workflow's cancels, racing to publish its callback, read the callback task without a status."""
    import threading

    from moto.dynamodb.models.table import Table

    dynamodb = aws.client("dynamodb")
    table, key = "taskproc-test-tasks", {"id": {"S": "half-made"}}
    seen: list[Any] = []
    reader = threading.Thread(
        target=lambda: seen.append(dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item"))
    )
    put = Table.put_item

    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        stored = put(self, item_attrs, *args, **kwargs)
        if set(item_attrs) == {"id"} and not reader.is_alive():  # the key alone: the SETs come next
            reader.start()
            reader.join(timeout=1.0)  # room for the read to land in between, if nothing stops it
        return stored

    Table.put_item = put_item  # type: ignore[method-assign]
    try:
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #status = :pending, attempts = :zero",
            ConditionExpression="attribute_not_exists(id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":pending": {"S": "PENDING"}, ":zero": {"N": "0"}},
        )
    finally:
        Table.put_item = put  # type: ignore[method-assign]
    reader.join(timeout=10)

    assert len(seen) == 1
    # Before the write or after it, never in the middle: no item, or the whole one.
    assert seen[0] is None or seen[0]["status"] == {"S": "PENDING"}, seen[0]
