"""`delaySeconds`: bounds, `notBefore` on the task, and SQS's own DelaySeconds on its message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.tasks.record import iso_from_ms
from tests.conftest import FakeClock

JSON = {"Content-Type": "application/json"}


class SentParams:
    """The parameters of every SendMessage and SendMessageBatch call, as the app built them."""

    def __init__(self, sqs: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for operation in ("SendMessage", "SendMessageBatch"):
            sqs.meta.events.register(f"before-parameter-build.sqs.{operation}", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def delays(self) -> dict[str, int | None]:
        """Each sent task's DelaySeconds (None where the parameter was left out), by task id."""
        delays: dict[str, int | None] = {}
        for operation, params in self.calls:
            entries = params["Entries"] if operation == "SendMessageBatch" else [params]
            for entry in entries:
                delays[json.loads(entry["MessageBody"])["id"]] = entry.get("DelaySeconds")
        return delays


def post(client: Client, path: str, body: Any) -> Any:
    return client.http.post(path, body=json.dumps(body), headers=JSON)


def queue_counts(runtime: Any) -> tuple[int, int]:
    """(visible, delayed) messages on the task queue, as SQS counts them."""
    sqs, url = runtime.tasks_queue._client, runtime.tasks_queue.url
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def not_before(clock: FakeClock, delay_seconds: int) -> str:
    return iso_from_ms(int(clock.now * 1000) + delay_seconds * 1000)


BAD_DELAYS = [-1, 901, 1.5, "5", True, None, 900.5, 10**30, 1e30]


@pytest.mark.parametrize("delay", BAD_DELAYS)
def test_publish_refuses_a_delay_that_is_not_an_integer_from_0_to_900_naming_the_field(
    client: Client, runtime: Any, delay: Any
) -> None:
    response = post(client, "/publish", {"id": "bad-delay", "payload": {}, "delaySeconds": delay})

    assert response.status_code == 400, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["delaySeconds"]
    assert client.http.get("/tasks/bad-delay").status_code == 404
    assert queue_counts(runtime) == (0, 0)


@pytest.mark.parametrize("delay", BAD_DELAYS)
def test_a_batch_refuses_only_the_entry_whose_delay_is_out_of_bounds(client: Client, runtime: Any, delay: Any) -> None:
    body = {"tasks": [{"id": "bad", "payload": {}, "delaySeconds": delay}, {"id": "fine", "payload": {}}]}

    results = json.loads(post(client, "/publish/batch", body).body)["results"]

    assert results[1] == {"id": "fine", "status": "PENDING", "duplicate": False}
    assert results[0]["id"] == "bad"
    assert [detail["field"] for detail in results[0]["error"]["details"]] == ["delaySeconds"]
    assert client.http.get("/tasks/bad").status_code == 404
    assert queue_counts(runtime) == (1, 0)


# 900.0 is an integer as JSON Schema (and so the OpenAPI document) counts them.
@pytest.mark.parametrize(("sent_as", "delay"), [(0, 0), (900, 900), (900.0, 900)])
def test_publish_takes_the_bounds_and_the_task_shows_when_it_may_start(
    client: Client, runtime: Any, clock: FakeClock, sent_as: float, delay: int
) -> None:
    sent = SentParams(runtime.tasks_queue._client)

    response = post(client, "/publish", {"id": f"delayed-{delay}", "payload": {}, "delaySeconds": sent_as})

    assert response.status_code == 201, response.body
    task = json.loads(client.http.get(f"/tasks/delayed-{delay}").body)
    assert task["status"] == "PENDING"
    assert task["notBefore"] == (not_before(clock, delay) if delay else None)
    assert sent.delays() == {f"delayed-{delay}": delay or None}
    assert queue_counts(runtime) == ((0, 1) if delay else (1, 0))


def test_a_publish_without_a_delay_has_no_not_before_and_no_sqs_delay(client: Client, runtime: Any) -> None:
    sent = SentParams(runtime.tasks_queue._client)

    assert post(client, "/publish", {"id": "now", "payload": {}}).status_code == 201

    assert json.loads(client.http.get("/tasks/now").body)["notBefore"] is None
    assert sent.delays() == {"now": None}
    assert queue_counts(runtime) == (1, 0)


def test_each_batch_entry_keeps_its_own_delay_in_one_send_message_batch(
    client: Client, runtime: Any, clock: FakeClock
) -> None:
    sent = SentParams(runtime.tasks_queue._client)
    delays: dict[str, float | None] = {"b-none": None, "b-0": 0, "b-60": 60, "b-30.0": 30.0, "b-900": 900}
    tasks = [
        {"id": task_id, "payload": {}, **({} if delay is None else {"delaySeconds": delay})}
        for task_id, delay in delays.items()
    ]

    results = json.loads(post(client, "/publish/batch", {"tasks": tasks}).body)["results"]

    assert [r["id"] for r in results if r["status"] == "PENDING" and not r["duplicate"]] == list(delays)
    for task_id, delay in delays.items():
        shown = json.loads(client.http.get(f"/tasks/{task_id}").body)["notBefore"]
        assert shown == (not_before(clock, int(delay)) if delay else None), task_id
    assert [operation for operation, _ in sent.calls] == ["SendMessageBatch"]
    assert sent.delays() == {"b-none": None, "b-0": None, "b-60": 60, "b-30.0": 30, "b-900": 900}
    assert queue_counts(runtime) == (2, 3)
