"""No task is stranded: every write-then-send path survives its process dying between the two.

Each publish path sends the task's message before it stores the item, and a retry sends
before it writes; a process that dies in between leaves a message, never an item without
one. The death is a fault hook: botocore's `after-call` of the send raises an exception
nothing in the app catches (a BaseException, as a SIGKILL lets nothing run after it), so
the answer is never given and nothing after the send runs. The consumer then ends every
task. tests/e2e/test_api_kills.py does the same with real processes killed by SIGKILL.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.consume.consumer import ADOPTION_REPAIR_MS, RETRY_LANDING_SECONDS
from chalicelib.models import Status, Task
from tests.integration.harness import SUCCEEDS, Harness
from tests.integration.test_batch_publish import record_metrics

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}


class ProcessKilled(BaseException):
    """The process died here: nothing after this point runs, no handler sees it."""


@contextmanager
def killed_after(client: Any, operation: str, after: int = 1) -> Iterator[Counter[str]]:
    """Kill the process when the `after`-th `operation` call of `client` has been answered."""
    seen: Counter[str] = Counter()

    def kill(**_: Any) -> None:
        seen[operation] += 1
        if seen[operation] == after:
            raise ProcessKilled(operation)

    event = f"after-call.{client.meta.service_model.endpoint_prefix}.{operation}"
    client.meta.events.register(event, kill)
    try:
        yield seen
    finally:
        client.meta.events.unregister(event, kill)


@pytest.fixture
def h(client: Client, runtime: Any, clock: Any) -> Harness:
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any) -> Any:
    return h.client.http.post(path, body=json.dumps(body), headers=JSON)


def drain(h: Harness, rounds: int = 10) -> None:
    """Deliver until the task queue is empty, letting each deferral's visibility run out."""
    for _ in range(rounds):
        if not h.depth(h.rt.tasks_queue.url):
            return
        delivery = h.deliver()
        if delivery.records and h.depth(h.rt.tasks_queue.url):
            h.clock.advance(RETRY_LANDING_SECONDS)
            for record in delivery.records:
                try:
                    h.reveal(type(delivery)([record]))
                except Exception:  # noqa: BLE001 - deleted: nothing to reveal
                    continue
    assert not h.depth(h.rt.tasks_queue.url), "the queue did not drain"


def sqs_of(h: Harness) -> Any:
    return h.rt.tasks_queue._client


def test_a_publish_killed_after_its_send_is_stored_and_run_by_the_consumer(h: Harness, monkeypatch: Any) -> None:
    counted = record_metrics(monkeypatch)
    with killed_after(sqs_of(h), "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "orphan", "payload": SUCCEEDS})
    assert h.rt.store.get("orphan") is None  # the put never happened

    h.clock.advance(ADOPTION_REPAIR_MS / 1000 + 1)
    drain(h)

    task = h.task("orphan")
    assert task["status"] == "COMPLETED"
    assert [entry["outcome"] for entry in task["history"]] == ["succeeded"]
    assert counted[("TasksAdopted", "simulate")] == 1


def test_a_repeat_of_a_publish_killed_after_its_send_is_accepted_and_the_task_runs_once(
    h: Harness, monkeypatch: Any
) -> None:
    counted = record_metrics(monkeypatch)
    with killed_after(sqs_of(h), "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "again", "payload": SUCCEEDS})

    repeat = post(h, "/publish", {"id": "again", "payload": SUCCEEDS})
    assert repeat.status_code == 201
    assert json.loads(repeat.body)["status"] == "PENDING"
    drain(h)

    task = h.task("again")
    assert task["status"] == "COMPLETED"
    assert len([entry for entry in task["history"] if "attempt" in entry]) == 1
    assert counted[("TasksAdopted", "simulate")] == 0  # its put landed: nothing needed repair


def test_a_server_named_task_killed_after_its_send_is_stored_and_run(h: Harness) -> None:
    with killed_after(sqs_of(h), "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/tasks", {"message": "SUCCESS", "simulation": {"failureChance": 0}})
    [message] = sqs_of(h).receive_message(QueueUrl=h.rt.tasks_queue.url, VisibilityTimeout=0)["Messages"]
    task_id = json.loads(message["Body"])["id"]

    drain(h)

    assert h.task(task_id)["status"] == "COMPLETED"


def test_a_batch_killed_after_its_sends_has_every_task_stored_and_run(h: Harness) -> None:
    tasks = [{"id": f"b{n:02d}", "payload": SUCCEEDS} for n in range(25)]
    # The second of three SendMessageBatch calls: its ten messages and the first call's are out.
    with killed_after(sqs_of(h), "SendMessageBatch", after=2), pytest.raises(ProcessKilled):
        post(h, "/publish/batch", {"tasks": tasks})
    assert all(h.rt.store.get(task["id"]) is None for task in tasks)

    drain(h, rounds=20)

    statuses = Counter(h.rt.store.get(task["id"]).status if h.rt.store.get(task["id"]) else None for task in tasks)
    # The sends run side by side: whichever calls went out have their tasks run; none is stored
    # without having run, and the rest were never sent, so never stored.
    assert set(statuses) <= {Status.COMPLETED, None}
    assert statuses[Status.COMPLETED] >= 10


def test_a_batch_whose_puts_all_fail_still_runs_every_task_it_sent(h: Harness, monkeypatch: Any) -> None:
    from chalicelib.errors import StoreError

    def refuse(*_: Any, **__: Any) -> Any:
        raise StoreError("injected")

    tasks = [{"id": f"p{n}", "payload": SUCCEEDS} for n in range(3)]
    with monkeypatch.context() as patch:
        patch.setattr(h.rt.store, "create", refuse)
        results = json.loads(post(h, "/publish/batch", {"tasks": tasks}).body)["results"]
    assert [r["error"]["code"] for r in results] == ["service_unavailable"] * 3

    drain(h)

    assert [h.task(task["id"])["status"] for task in tasks] == ["COMPLETED"] * 3


def failed_task(h: Harness, task_id: str) -> None:
    h.publish(task_id, DOOMED)
    drain(h)
    assert h.task(task_id)["status"] == "FAILED"


def test_a_retry_killed_after_its_send_leaves_the_task_failed_and_its_message_is_dropped(h: Harness) -> None:
    failed_task(h, "r1")
    with killed_after(sqs_of(h), "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/tasks/r1/retry", {})

    # The retry never happened: the message waits for its write, its receives run out, and
    # the dead-letter handler drops it. The task stays as the operator left it, FAILED.
    drain(h)
    assert h.depth(h.rt.dead_letters.url) == 1
    h.deliver_dead_letters()
    task = h.task("r1")
    assert task["status"] == "FAILED"
    assert [e["kind"] for e in task["history"]].count("retry") == 0
    assert h.depth(h.rt.dead_letters.url) == 0


def test_a_retry_message_that_arrives_before_its_write_waits_for_it_and_runs(h: Harness) -> None:
    failed_task(h, "r2")
    early: list[Any] = []

    def deliver_now(**_: Any) -> None:
        early.append(h.deliver())  # the consumer is faster than the retry's write

    event = "after-call.sqs.SendMessage"
    sqs_of(h).meta.events.register(event, deliver_now)
    try:
        assert post(h, "/tasks/r2/retry", {}).status_code == 202
    finally:
        sqs_of(h).meta.events.unregister(event, deliver_now)
    assert len(early[0].records) == 1
    assert h.visibility[early[0].records[0]["receiptHandle"]] == RETRY_LANDING_SECONDS

    h.clock.advance(RETRY_LANDING_SECONDS)
    h.reveal(early[0])
    drain(h)

    task = h.task("r2")
    assert task["status"] == "FAILED"  # DOOMED fails again, after a second run
    assert len([e for e in task["history"] if "attempt" in e]) == 2


def test_a_bulk_retry_killed_midway_strands_nothing(h: Harness) -> None:
    for n in range(6):
        failed_task(h, f"bulk{n}")
    with killed_after(sqs_of(h), "SendMessage", after=4), pytest.raises(ProcessKilled):
        h.client.http.post("/retries", body=json.dumps({"status": "FAILED", "limit": 10}), headers=JSON)

    drain(h)
    h.deliver_dead_letters()

    for n in range(6):
        task = h.rt.store.get(f"bulk{n}")
        assert task is not None and task.is_terminal, (n, task)


def test_a_repeat_publish_heals_a_task_stored_without_its_message(h: Harness, monkeypatch: Any) -> None:
    counted = record_metrics(monkeypatch)
    # What an item left by a put whose send never happened looks like: PENDING, nothing queued.
    h.rt.store.create(Task(id="legacy", payload=SUCCEEDS), max_attempts=3)
    h.clock.advance(120)

    repeat = post(h, "/publish", {"id": "legacy", "payload": SUCCEEDS})
    assert json.loads(repeat.body) == {"id": "legacy", "status": "PENDING", "duplicate": True}
    drain(h)

    assert h.task("legacy")["status"] == "COMPLETED"
    assert counted[("TasksRedispatched", "simulate")] == 1


def test_a_task_the_consumer_stored_is_retried_with_its_attempts_counted_from_one(h: Harness) -> None:
    with killed_after(sqs_of(h), "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "adopted", "payload": DOOMED})
    drain(h)
    assert h.task("adopted")["status"] == "FAILED"

    assert post(h, "/tasks/adopted/retry", {}).status_code == 202
    drain(h)

    task = h.task("adopted")
    assert [e["attempt"] for e in task["history"] if "attempt" in e] == [1, 1]
    assert task["attempts"] == 1


def test_a_repeat_publish_whose_message_starts_the_task_before_its_put_is_still_a_duplicate(h: Harness) -> None:
    """A chaos run found it: the repeat's put, refused, saw its own message as the task's last one."""
    assert json.loads(post(h, "/publish", {"id": "twice", "payload": SUCCEEDS}).body)["duplicate"] is False
    sqs = sqs_of(h)
    first = sqs.receive_message(QueueUrl=h.rt.tasks_queue.url)["Messages"]  # out of the way for now
    delivered: list[Any] = []

    def deliver_now(**_: Any) -> None:
        delivered.append(h.deliver())  # the repeat's message runs the existing task before the put

    sqs.meta.events.register("after-call.sqs.SendMessage", deliver_now)
    try:
        repeat = post(h, "/publish", {"id": "twice", "payload": SUCCEEDS})
    finally:
        sqs.meta.events.unregister("after-call.sqs.SendMessage", deliver_now)

    assert len(delivered[0].records) == 1
    assert json.loads(repeat.body) == {"id": "twice", "status": "COMPLETED", "duplicate": True}
    assert len(first) == 1
