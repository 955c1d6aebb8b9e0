"""Priority classes against moto: each class's tasks travel on its own queue, through its own consumer,
and every message a task gets later (a retry, a redrive, a heartbeat's visibility) stays in its class."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.registry import TaskType
from chalicelib.tasks.priority import Priority
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness
from tests.integration.lambda_sqs import Delivery, deliver, lambda_records

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}
CONSUMER_OF = {
    Priority.HIGH: "process_high_priority_tasks",
    Priority.DEFAULT: "process_tasks",
    Priority.LOW: "process_low_priority_tasks",
}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


@pytest.fixture
def changed(h: Harness) -> dict[str, str]:
    """Receipt handle -> the queue URL each visibility change was sent to."""
    queues: dict[str, str] = {}

    def record(params: dict[str, Any], **_: Any) -> None:
        queues.update({entry["ReceiptHandle"]: params["QueueUrl"] for entry in params["Entries"]})

    h.sqs.meta.events.register("before-parameter-build.sqs.ChangeMessageVisibilityBatch", record)
    return queues


def post(h: Harness, path: str, body: Any) -> tuple[int, Any]:
    response = h.client.http.post(path, body=json.dumps(body), headers=JSON)
    return response.status_code, json.loads(response.body)


def url(h: Harness, priority: Priority) -> str:
    return h.rt.queue_for(priority).url


def bodies(h: Harness, priority: Priority) -> list[dict[str, Any]]:
    """What the class's queue holds now (received and made visible again at once)."""
    records = lambda_records(h.sqs, url(h, priority))
    for record in records:
        h.sqs.change_message_visibility(
            QueueUrl=url(h, priority), ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )
    return [json.loads(record["body"]) for record in records]


def ids_on(h: Harness, priority: Priority) -> set[str]:
    return {body["id"] for body in bodies(h, priority)}


def run(h: Harness, priority: Priority) -> Delivery:
    return deliver(h.client, CONSUMER_OF[priority], h.sqs, url(h, priority))


def test_a_task_is_queued_in_its_class_s_queue_and_shows_its_class(h: Harness) -> None:
    for task_id, priority in (("h", "high"), ("d", "default"), ("l", "low")):
        assert post(h, "/publish", {"id": task_id, "payload": SUCCEEDS, "priority": priority})[0] == 201
    assert post(h, "/publish", {"id": "unsaid", "payload": SUCCEEDS})[0] == 201

    assert ids_on(h, Priority.HIGH) == {"h"}
    assert ids_on(h, Priority.DEFAULT) == {"d", "unsaid"}
    assert ids_on(h, Priority.LOW) == {"l"}
    assert [h.task(task_id)["priority"] for task_id in ("h", "d", "l", "unsaid")] == [
        "high",
        "default",
        "low",
        "default",
    ]


@pytest.mark.parametrize("value", ["urgent", "HIGH", "", 1, None, ["high"]])
def test_a_priority_that_is_not_a_class_is_refused_naming_the_field_and_the_classes(h: Harness, value: Any) -> None:
    status, body = post(h, "/publish", {"id": "bad", "payload": SUCCEEDS, "priority": value})
    assert status == 400, body
    (detail,) = body["error"]["details"]
    assert detail["field"] == "priority"
    assert all(name in detail["message"] for name in ("high", "default", "low")), detail

    status, body = post(h, f"/tasks?priority={value}", {"simulation": {"failureChance": 0}})
    assert status == 400, body
    assert body["error"]["details"] == [{"field": "priority", "message": "must be one of high, default, low"}]

    status, body = post(h, "/publish/batch", {"tasks": [{"id": "bad", "payload": SUCCEEDS, "priority": value}]})
    assert status == 200
    (refused,) = body["results"]
    assert [d["field"] for d in refused["error"]["details"]] == ["priority"]
    assert not any(ids_on(h, priority) for priority in Priority)
    assert h.client.http.get("/tasks/bad").status_code == 404


def test_a_batch_sends_each_entry_to_its_class_s_queue_and_answers_in_request_order(h: Harness) -> None:
    classes = ["low", "high", "default", "high", "low", "default", "high"]
    entries = [{"id": f"b{n}", "payload": SUCCEEDS, "priority": p} for n, p in enumerate(classes)]
    status, body = post(h, "/publish/batch", {"tasks": entries})

    assert status == 200
    assert [r["id"] for r in body["results"]] == [e["id"] for e in entries]
    assert all(r["duplicate"] is False for r in body["results"])
    for priority in Priority:
        assert ids_on(h, priority) == {e["id"] for e in entries if e["priority"] == priority.value}
    assert [h.task(e["id"])["priority"] for e in entries] == classes


def test_post_tasks_takes_its_priority_from_the_query_and_keeps_the_whole_body_as_the_payload(h: Harness) -> None:
    status, created = post(h, "/tasks?priority=high", {"simulation": {"failureChance": 0}, "message": "hi"})

    assert status == 201
    (body,) = bodies(h, Priority.HIGH)
    assert body["id"] == created["id"] and body["payload"] == {"simulation": {"failureChance": 0}, "message": "hi"}
    assert h.task(created["id"])["priority"] == "high"
    # A payload field named `priority` is the seed's payload data, as every other field is.
    status, created = post(h, "/tasks", {"message": "hi", "priority": "urgent"})
    assert status == 201
    assert h.task(created["id"])["payload"]["priority"] == "urgent"
    assert h.task(created["id"])["priority"] == "default"


def test_each_class_s_consumer_runs_its_own_queue_and_backs_off_a_failure_in_it(
    h: Harness, changed: dict[str, str]
) -> None:
    post(h, "/publish", {"id": "flaky", "payload": FAILS, "priority": "low"})
    post(h, "/publish", {"id": "quick", "payload": SUCCEEDS, "priority": "high"})

    assert not run(h, Priority.DEFAULT).records
    (high,) = run(h, Priority.HIGH).records
    assert json.loads(high["body"])["id"] == "quick" and h.task("quick")["status"] == "COMPLETED"
    (low,) = run(h, Priority.LOW).records
    assert h.task("flaky")["status"] == "RETRYING"
    # The backoff is the low message's visibility, changed on the low queue with its own receipt handle.
    assert h.visibility[low["receiptHandle"]] >= 30 and changed[low["receiptHandle"]] == url(h, Priority.LOW)
    assert h.depth(url(h, Priority.LOW)) == 1 and h.depth(url(h, Priority.DEFAULT)) == 0


def test_a_message_whose_publish_died_is_stored_in_the_class_of_the_queue_it_sits_in(h: Harness) -> None:
    h.sqs.send_message(QueueUrl=url(h, Priority.HIGH), MessageBody=json.dumps({"id": "orphan", "payload": SUCCEEDS}))

    run(h, Priority.HIGH)

    view = h.task("orphan")
    assert (view["status"], view["priority"]) == ("COMPLETED", "high")


def test_a_retried_task_is_queued_again_in_its_class(h: Harness) -> None:
    post(h, "/publish", {"id": "doomed", "payload": DOOMED, "priority": "high"})
    run(h, Priority.HIGH)
    assert h.task("doomed")["status"] == "FAILED"

    status, view = post(h, "/tasks/doomed/retry", {})

    assert status == 202 and view["priority"] == "high"
    assert ids_on(h, Priority.HIGH) == {"doomed"}
    assert not ids_on(h, Priority.DEFAULT) | ids_on(h, Priority.LOW)


def test_a_bulk_retry_queues_each_task_in_its_own_class(h: Harness) -> None:
    for task_id, priority in (("bh", "high"), ("bl", "low"), ("bd", "default")):
        post(h, "/publish", {"id": task_id, "payload": DOOMED, "priority": priority})
    for priority in Priority:
        run(h, priority)

    status, result = post(h, "/retries", {"status": "FAILED"})

    assert status == 200 and sorted(result["retried"]) == ["bd", "bh", "bl"]
    assert (ids_on(h, Priority.HIGH), ids_on(h, Priority.DEFAULT), ids_on(h, Priority.LOW)) == ({"bh"}, {"bd"}, {"bl"})


def test_the_dead_letter_handler_redrives_a_task_into_its_class_s_queue(h: Harness) -> None:
    post(h, "/publish", {"id": "early", "payload": FAILS, "priority": "low"})
    (record,) = lambda_records(h.sqs, url(h, Priority.LOW))
    # SQS moved the task's own message to the dead-letter queue with attempts left (it keeps its id).
    h.sqs.delete_message(QueueUrl=url(h, Priority.LOW), ReceiptHandle=record["receiptHandle"])
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=record["body"])
    (dead,) = lambda_records(h.sqs, h.rt.dead_letters.url)
    h.client.lambda_.invoke("handle_dead_letters", {"Records": [{**dead, "messageId": record["messageId"]}]})

    assert ids_on(h, Priority.LOW) == {"early"}
    assert not ids_on(h, Priority.DEFAULT) | ids_on(h, Priority.HIGH)


def test_a_heartbeat_hides_the_message_in_its_class_s_queue(h: Harness, changed: dict[str, str]) -> None:
    from chalicelib.registry import Registry

    def beats(payload: Any, context: Any) -> str:
        h.clock.advance(2)
        context.heartbeat({"done": 1})
        return "done"

    registry = Registry()
    for name in h.rt.registry.names():
        registry.register(h.rt.registry.get(name))
    registry.register(TaskType("beats", beats, timeout_seconds=20, heartbeat_seconds=2))
    h.rt.registry = registry
    post(h, "/publish", {"id": "long", "type": "beats", "payload": {}, "priority": "high"})

    (record,) = run(h, Priority.HIGH).records

    assert h.task("long")["status"] == "COMPLETED"
    # The heartbeat's visibility change went to the high queue: a receipt handle is only valid in its own queue.
    assert changed[record["receiptHandle"]] == url(h, Priority.HIGH)


def test_summaries_show_the_class_the_listing_index_projects(h: Harness) -> None:
    post(h, "/publish", {"id": "sh", "payload": DOOMED, "priority": "high"})
    run(h, Priority.HIGH)

    response = h.client.http.get("/tasks?status=FAILED")

    (summary,) = json.loads(response.body)["tasks"]
    assert (summary["id"], summary["priority"]) == ("sh", "high")
    assert h.task("sh")["priority"] == "high"


def test_a_high_task_runs_while_a_low_backlog_waits_untouched(h: Harness) -> None:
    entries = [{"id": f"low{n}", "payload": SUCCEEDS, "priority": "low"} for n in range(60)]
    assert post(h, "/publish/batch", {"tasks": entries})[0] == 200
    post(h, "/publish", {"id": "vip", "payload": SUCCEEDS, "priority": "high"})

    (record,) = run(h, Priority.HIGH).records

    assert json.loads(record["body"])["id"] == "vip" and h.task("vip")["status"] == "COMPLETED"
    assert h.depth(url(h, Priority.LOW)) == 60
    assert {h.task(f"low{n}")["status"] for n in range(60)} == {"PENDING"}


def test_the_stats_give_every_class_s_queue_depth(h: Harness) -> None:
    post(h, "/publish", {"id": "s1", "payload": SUCCEEDS, "priority": "high"})
    post(h, "/publish", {"id": "s2", "payload": SUCCEEDS, "priority": "high"})
    post(h, "/publish", {"id": "s3", "payload": SUCCEEDS, "priority": "low"})

    body = json.loads(h.client.http.get("/stats").body)

    depths = {label: body["queues"][label]["visible"] for label in ("tasks", "highPriority", "lowPriority")}
    assert depths == {"tasks": 0, "highPriority": 2, "lowPriority": 1}
    assert body["queues"]["deadLetters"]["visible"] == 0
