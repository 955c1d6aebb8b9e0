"""`expiresInSeconds`: a task whose first attempt has not started by its `startBy` is never run.

Publish over the app, deliver from the real queues, move the store's clock by hand. The
proofs of the issue: expiry before the first attempt ends the task CANCELLED, and expiry
never stops an attempt that has started, nor that run's retries.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from chalice.test import Client
from pydantic import BaseModel

from chalicelib.consume.expiry import MAX_EXPIRY_SECONDS, START_BY_ATTRIBUTE
from chalicelib.models import Task
from chalicelib.registry import TaskContext, TaskType
from chalicelib.tasks.record import iso_from_ms, ms_from_iso
from tests.conftest import FakeClock
from tests.integration.harness import FAILS, SUCCEEDS, Harness, fail_until_last
from tests.integration.test_batch_publish import record_metrics
from tests.integration.test_never_stranded import ProcessKilled, killed_after
from tests.integration.test_task_types import with_types

JSON = {"Content-Type": "application/json"}
EXPIRED = "expired before it started"


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    payload = json.dumps(body) if body is not None else ""
    return h.client.http.post(path, body=payload, headers=JSON if headers is None else headers)


def publish(h: Harness, task_id: str, expires_in: int | None, payload: dict[str, Any] = SUCCEEDS) -> None:
    body: dict[str, Any] = {"id": task_id, "payload": payload}
    if expires_in is not None:
        body["expiresInSeconds"] = expires_in
    response = post(h, "/publish", body)
    assert response.status_code == 201, response.body


def now_ms(h: Harness) -> int:
    return h.rt.store.now_ms()


def attempts_of(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in task["history"] if entry.get("kind") == "attempt"]


def assert_expired(task: dict[str, Any]) -> None:
    assert task["status"] == "CANCELLED"
    assert task["lastError"] == EXPIRED
    assert task["attempts"] == 0 and attempts_of(task) == []
    assert task["history"][-1]["kind"] == "expired"
    assert ms_from_iso(task["history"][-1]["at"]) >= ms_from_iso(task["startBy"])
    assert task["finishedAt"] is not None


# --- validation --------------------------------------------------------------------------------

BAD_EXPIRIES = [0, -1, MAX_EXPIRY_SECONDS + 1, 1.5, "60", True, None, [60], 10**30]


@pytest.mark.parametrize("expires_in", BAD_EXPIRIES)
def test_publish_refuses_an_expiry_that_is_not_a_whole_number_from_1_to_30_days_naming_the_field(
    h: Harness, expires_in: Any
) -> None:
    response = post(h, "/publish", {"id": "bad", "payload": SUCCEEDS, "expiresInSeconds": expires_in})

    assert response.status_code == 400, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["expiresInSeconds"]
    assert h.client.http.get("/tasks/bad").status_code == 404
    assert h.depth(h.rt.tasks_queue.url) == 0


@pytest.mark.parametrize("expires_in", BAD_EXPIRIES)
def test_a_batch_refuses_only_the_entry_whose_expiry_is_out_of_bounds(h: Harness, expires_in: Any) -> None:
    body = {
        "tasks": [{"id": "bad", "payload": SUCCEEDS, "expiresInSeconds": expires_in}, {"id": "fine", "payload": {}}]
    }

    results = json.loads(post(h, "/publish/batch", body).body)["results"]

    assert results[1] == {"id": "fine", "status": "PENDING", "duplicate": False}
    assert results[0]["id"] == "bad"
    assert [detail["field"] for detail in results[0]["error"]["details"]] == ["expiresInSeconds"]
    assert h.client.http.get("/tasks/bad").status_code == 404


@pytest.mark.parametrize("expires_in", [1, 60.0, MAX_EXPIRY_SECONDS])
def test_a_task_shows_the_moment_it_must_start_by(h: Harness, expires_in: Any) -> None:
    accepted_at = now_ms(h)
    publish(h, "timed", expires_in)

    task = h.task("timed")
    assert task["startBy"] == iso_from_ms(accepted_at + int(expires_in) * 1000)
    assert task["status"] == "PENDING"


def test_a_task_published_without_an_expiry_has_none(h: Harness) -> None:
    publish(h, "forever", None)
    h.clock.advance(MAX_EXPIRY_SECONDS + 1)
    h.deliver()

    task = h.task("forever")
    assert (task["startBy"], task["status"]) == (None, "COMPLETED")


# --- expiry before the first attempt -----------------------------------------------------------


def test_a_task_not_started_by_its_expiry_never_runs_and_ends_cancelled(h: Harness, monkeypatch: Any) -> None:
    counted = record_metrics(monkeypatch)
    publish(h, "stale", 10)
    h.clock.advance(11)

    delivery = h.deliver()

    assert delivery.raised is None and len(delivery.records) == 1
    assert_expired(h.task("stale"))
    assert h.depth(h.rt.tasks_queue.url) == 0  # the message was deleted
    assert h.depth(h.rt.dead_letters.url) == 0
    assert counted[("TasksExpired", "simulate")] == 1
    assert counted[("TasksCancelled", "simulate")] == 1
    assert counted[("AttemptsStarted", "simulate")] == 0


def test_a_second_copy_of_an_expired_task_s_message_is_dropped(h: Harness) -> None:
    publish(h, "twice", 10)
    h.clock.advance(11)
    h.deliver()
    before = h.task("twice")

    h.send_raw(Task(id="twice", payload=SUCCEEDS).message_body())
    h.deliver()

    assert h.task("twice") == before
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_task_delivered_before_its_expiry_runs(h: Harness) -> None:
    publish(h, "prompt", 10)
    h.clock.advance(9)

    h.deliver()

    task = h.task("prompt")
    assert task["status"] == "COMPLETED"
    (attempt,) = attempts_of(task)
    assert ms_from_iso(attempt["startedAt"]) < ms_from_iso(task["startBy"])


def test_a_batch_entry_with_an_expiry_expires_and_its_neighbour_without_one_runs(h: Harness) -> None:
    body = {
        "tasks": [
            {"id": "b-timed", "payload": SUCCEEDS, "expiresInSeconds": 5},
            {"id": "b-forever", "payload": SUCCEEDS},
        ]
    }
    accepted_at = now_ms(h)
    assert post(h, "/publish/batch", body).status_code == 200
    assert h.task("b-timed")["startBy"] == iso_from_ms(accepted_at + 5000)
    h.clock.advance(6)

    h.deliver()

    assert_expired(h.task("b-timed"))
    assert h.task("b-forever")["status"] == "COMPLETED"


def test_a_delayed_task_whose_expiry_passes_during_its_delay_never_runs(h: Harness) -> None:
    publish_body = {"id": "too-late", "payload": SUCCEEDS, "delaySeconds": 1, "expiresInSeconds": 1}
    assert post(h, "/publish", publish_body).status_code == 201
    h.clock.advance(2)
    # SQS's own delay runs on the real clock: wait for the message, up to a deadline.
    deadline = time.monotonic() + 10
    while not (delivery := h.deliver()).records and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivery.records, "the delayed message never became visible"

    assert_expired(h.task("too-late"))


# --- expiry does not stop a running attempt ----------------------------------------------------


class Pause(BaseModel):
    seconds: float


def test_an_attempt_running_past_its_task_s_expiry_completes(h: Harness) -> None:
    def long_running(payload: Pause, context: TaskContext) -> str:
        h.clock.advance(payload.seconds)  # the expiry passes while the attempt runs
        return "done"

    with_types(h, TaskType("pause", long_running, payload=Pause, timeout_seconds=50))
    response = post(h, "/publish", {"id": "long", "type": "pause", "payload": {"seconds": 30}, "expiresInSeconds": 10})
    assert response.status_code == 201

    h.deliver()

    task = h.task("long")
    assert (task["status"], task["result"], task["lastError"]) == ("COMPLETED", "done", None)
    (attempt,) = attempts_of(task)
    assert ms_from_iso(attempt["finishedAt"]) > ms_from_iso(task["startBy"])


def test_a_task_that_started_before_its_expiry_keeps_retrying_after_it(h: Harness) -> None:
    publish(h, "flaky", 10, FAILS)

    delivery = fail_until_last(h, "flaky")  # every backoff is a minute or more: all but the first are late

    task = h.task("flaky")
    assert task["status"] == "FAILED", delivery
    assert [entry["outcome"] for entry in attempts_of(task)] == ["failed"] * h.rt.settings.MAX_ATTEMPTS
    assert ms_from_iso(attempts_of(task)[-1]["startedAt"]) > ms_from_iso(task["startBy"])
    assert all(entry["kind"] != "expired" for entry in task["history"])


def test_a_task_taken_over_after_its_expiry_runs_its_next_attempt(h: Harness) -> None:
    publish(h, "orphan", 10)
    h.rt.store.acquire(Task(id="orphan", payload=SUCCEEDS), "dead-consumer", "m-0", 3, lease_seconds=60)
    h.clock.advance(61)

    h.deliver()

    task = h.task("orphan")
    assert task["status"] == "COMPLETED"
    assert [entry["outcome"] for entry in attempts_of(task)] == ["expired", "succeeded"]


# --- a task stored by the consumer keeps its expiry --------------------------------------------


def test_the_message_carries_the_expiry(h: Harness) -> None:
    accepted_at = now_ms(h)
    publish(h, "carried", 60)

    message = h.sqs.receive_message(QueueUrl=h.rt.tasks_queue.url, MessageAttributeNames=["All"])["Messages"][0]

    assert message["MessageAttributes"][START_BY_ATTRIBUTE]["StringValue"] == str(accepted_at + 60_000)
    assert "expiresInSeconds" not in json.loads(message["Body"])


def test_a_publish_killed_after_its_send_leaves_a_task_that_still_expires(h: Harness, monkeypatch: Any) -> None:
    counted = record_metrics(monkeypatch)
    accepted_at = now_ms(h)
    with killed_after(h.sqs, "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "adopted-late", "payload": SUCCEEDS, "expiresInSeconds": 60})
    assert h.rt.store.get("adopted-late") is None  # the put never happened
    h.clock.advance(61)

    h.deliver()

    task = h.task("adopted-late")
    assert_expired(task)
    assert task["startBy"] == iso_from_ms(accepted_at + 60_000)
    assert h.depth(h.rt.tasks_queue.url) == 0
    assert counted[("TasksExpired", "simulate")] == 1


def test_a_publish_killed_after_its_send_leaves_a_task_that_runs_before_its_expiry_and_keeps_it(
    h: Harness, monkeypatch: Any
) -> None:
    counted = record_metrics(monkeypatch)
    accepted_at = now_ms(h)
    with killed_after(h.sqs, "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "adopted", "payload": SUCCEEDS, "expiresInSeconds": 60})
    h.clock.advance(45)  # past the adoption's repair age, before the expiry

    h.deliver()

    task = h.task("adopted")
    assert task["status"] == "COMPLETED"
    assert task["startBy"] == iso_from_ms(accepted_at + 60_000)
    assert counted[("TasksAdopted", "simulate")] == 1


def test_a_publish_put_that_lands_after_the_consumer_stored_the_task_reads_as_its_own(h: Harness) -> None:
    with killed_after(h.sqs, "SendMessage"), pytest.raises(ProcessKilled):
        post(h, "/publish", {"id": "raced", "payload": SUCCEEDS, "expiresInSeconds": 60})
    (record,) = h.deliver().records
    start_by = int(record["messageAttributes"][START_BY_ATTRIBUTE]["stringValue"])

    stored, created = h.rt.store.create(Task(id="raced", payload=SUCCEEDS), 3, 0, record["messageId"], start_by)

    assert created  # the publish's put, late, answers accepted rather than duplicate
    assert stored.status.value == "COMPLETED" and stored.start_by_ms == start_by


def test_a_batch_killed_after_its_send_leaves_tasks_that_keep_their_expiries(h: Harness) -> None:
    body = {
        "tasks": [
            {"id": "k-timed", "payload": SUCCEEDS, "expiresInSeconds": 5},
            {"id": "k-forever", "payload": SUCCEEDS},
        ]
    }
    with killed_after(h.sqs, "SendMessageBatch"), pytest.raises(ProcessKilled):
        post(h, "/publish/batch", body)
    h.clock.advance(6)

    h.deliver()

    assert_expired(h.task("k-timed"))
    assert h.task("k-forever")["status"] == "COMPLETED"


# --- retry -------------------------------------------------------------------------------------


def expired_task(h: Harness, task_id: str) -> None:
    publish(h, task_id, 10)
    h.clock.advance(11)
    h.deliver()
    assert h.task(task_id)["status"] == "CANCELLED"


def test_a_retry_without_a_body_runs_the_expired_task_with_no_expiry(h: Harness) -> None:
    expired_task(h, "again")

    response = post(h, "/tasks/again/retry", headers={})

    assert response.status_code == 202, response.body
    assert json.loads(response.body)["startBy"] is None
    h.clock.advance(3600)
    h.deliver()
    task = h.task("again")
    assert task["status"] == "COMPLETED"
    assert [entry["kind"] for entry in task["history"]] == ["expired", "retry", "attempt"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (None, {}),  # taskctl: no body, no content type
        (None, JSON),  # the console: a JSON content type and no body
        ({}, JSON),
    ],
    ids=["no-body", "json-content-type-no-body", "empty-object"],
)
def test_the_cli_and_console_retry_requests_still_retry_a_task(h: Harness, body: Any, headers: Any) -> None:
    publish(h, "doomed", None, {"simulation": {"failureChance": 1, "permanentFailure": True}})
    h.deliver()

    response = post(h, "/tasks/doomed/retry", body, headers)

    assert response.status_code == 202, response.body
    assert json.loads(response.body)["status"] == "PENDING"


def test_a_retry_asking_for_a_fresh_expiry_gives_the_task_one_counted_from_the_retry(h: Harness) -> None:
    expired_task(h, "fresh")
    retried_at = now_ms(h)

    response = post(h, "/tasks/fresh/retry", {"expiresInSeconds": 30})

    assert response.status_code == 202, response.body
    assert json.loads(response.body)["startBy"] == iso_from_ms(retried_at + 30_000)
    h.clock.advance(31)
    h.deliver()
    task = h.task("fresh")
    assert_expired(task)
    assert [entry["kind"] for entry in task["history"]] == ["expired", "retry", "expired"]


def test_a_retry_with_a_fresh_expiry_runs_when_delivered_in_time(h: Harness) -> None:
    expired_task(h, "in-time")

    assert post(h, "/tasks/in-time/retry", {"expiresInSeconds": 30}).status_code == 202
    h.clock.advance(5)
    h.deliver()

    assert h.task("in-time")["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expiresInSeconds": 0}, "expiresInSeconds"),
        ({"expiresInSeconds": None}, "expiresInSeconds"),
        ({"expiresInSeconds": "30"}, "expiresInSeconds"),
        ({"expiresInSeconds": MAX_EXPIRY_SECONDS + 1}, "expiresInSeconds"),
        ({"expires": 30}, "expires"),
        ([30], "body"),
    ],
)
def test_a_retry_with_a_bad_body_is_refused_naming_the_field_and_changes_nothing(
    h: Harness, body: Any, field: str
) -> None:
    expired_task(h, "unchanged")
    before = h.task("unchanged")

    response = post(h, "/tasks/unchanged/retry", body)

    assert response.status_code == 400, response.body
    assert [detail["field"] for detail in json.loads(response.body)["error"]["details"]] == [field]
    assert h.task("unchanged") == before
    assert h.depth(h.rt.tasks_queue.url) == 0


def test_a_bulk_retry_gives_no_expiry(h: Harness) -> None:
    expired_task(h, "bulk")

    answer = json.loads(post(h, "/retries", {"status": "CANCELLED"}).body)

    assert answer["retried"] == ["bulk"]
    assert h.task("bulk")["startBy"] is None


# --- the document ------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_expiry_the_view_field_and_the_history_kind(h: Harness) -> None:
    document = json.loads(h.client.http.get("/openapi.json").body)
    schemas = document["components"]["schemas"]

    publish_body = schemas["PublishSimulate"]["properties"]["expiresInSeconds"]
    assert (publish_body["type"], publish_body["minimum"], publish_body["maximum"]) == (
        "integer",
        1,
        MAX_EXPIRY_SECONDS,
    )
    assert schemas["TaskView"]["properties"]["startBy"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    history_kinds = {
        json.dumps(schemas[ref["$ref"].rsplit("/", 1)[-1]]["properties"]["kind"])
        for ref in schemas["TaskView"]["properties"]["history"]["items"]["anyOf"]
    }
    assert any('"expired"' in kind for kind in history_kinds)
    retry = document["paths"]["/tasks/{task_id}/retry"]["post"]
    assert retry["requestBody"]["required"] is False
    retry_schema = schemas[retry["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert retry_schema["properties"]["expiresInSeconds"]["maximum"] == MAX_EXPIRY_SECONDS
