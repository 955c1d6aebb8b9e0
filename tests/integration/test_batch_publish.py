"""`POST /publish/batch`: one result per task in order, each task stored and queued or refused on its own."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib.models import MAX_BATCH_BYTES, MAX_BATCH_TASKS, MAX_TASK_BYTES
from chalicelib.tasks.queue import SQS_BATCH_BYTES, Outgoing, batch_chunks
from tests.integration.faults import inject_errors

JSON = {"Content-Type": "application/json"}


def publish_batch(client: Client, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post("/publish/batch", body=raw, headers=headers or JSON)


def results_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.body[:500]
    body = json.loads(response.body)
    assert set(body) == {"results"}, body
    return list(body["results"])


def error_of(response: Any) -> dict[str, Any]:
    body = json.loads(response.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return dict(body["error"])


def accepted(task_id: str, duplicate: bool = False) -> dict[str, Any]:
    return {"id": task_id, "status": "PENDING", "duplicate": duplicate}


def task(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "payload": {}, **fields}


def queued_bodies(runtime: Any) -> list[dict[str, Any]]:
    """Every message on the task queue, parsed, each as often as it is there (no delayed ones may wait)."""
    sqs, url = runtime.tasks_queue._client, runtime.tasks_queue.url
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages"):
        bodies += [json.loads(message["Body"]) for message in messages]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "0", "delayed messages are not counted"
    return bodies


def queued_ids(runtime: Any) -> list[str]:
    return [body["id"] for body in queued_bodies(runtime)]


def assert_stored_and_queued_exactly_the_accepted(runtime: Any, results: list[dict[str, Any]]) -> None:
    """Every accepted task is stored and queued once; a refused one is not stored, and is queued
    only when its refusal says its message went out (its put failed after the send)."""
    queued = Counter(queued_ids(runtime))
    assert all(count == 1 for count in queued.values()), queued
    sent_unstored = set()
    for result in results:
        if "error" in result:
            if result["id"] is not None and result["id"] not in {r["id"] for r in results if "status" in r}:
                assert runtime.store.get(result["id"]) is None, result
                if "will run unless the id was already taken" in result["error"]["message"]:
                    sent_unstored.add(result["id"])
                else:
                    assert result["id"] not in queued, result
        elif not result["duplicate"]:
            assert runtime.store.get(result["id"]) is not None, result
            assert result["id"] in queued, result
    accepted_ids = {r["id"] for r in results if "status" in r and not r["duplicate"]}
    assert set(queued) == accepted_ids | sent_unstored


class RequestCounter:
    """AWS API calls per operation, counted by botocore's before-call event."""

    def __init__(self, *clients: Any) -> None:
        self.calls: Counter[str] = Counter()
        for client in {id(c): c for c in clients}.values():
            client.meta.events.register("before-call", self)

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1


class RefusingSqs:
    """The real SQS client, except SendMessageBatch: entries whose body holds `refuse` come back
    in `Failed` without being sent, and a call holding an entry with `fail_call` fails whole."""

    def __init__(self, real: Any, refuse: str | None = None, fail_call: str | None = None) -> None:
        self._real, self._refuse, self._fail_call = real, refuse, fail_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self._fail_call and any(self._fail_call in entry["MessageBody"] for entry in Entries):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "SendMessageBatch")
        refused = [entry for entry in Entries if self._refuse and self._refuse in entry["MessageBody"]]
        kept = [entry for entry in Entries if entry not in refused]
        response = self._real.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {"Successful": []}
        failed = [
            {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for entry in refused
        ]
        return {**response, "Failed": failed}


class RefusingTable:
    """The real DynamoDB client, except that PutItem fails for the given task ids."""

    def __init__(self, real: Any, *task_ids: str) -> None:
        self._real, self._task_ids = real, set(task_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["Item"]["id"]["S"] in self._task_ids:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")
        return dict(self._real.put_item(**kwargs))


# --- results ----------------------------------------------------------------


def test_results_come_back_one_per_task_in_request_order_and_each_task_is_stored_and_queued(
    client: Client, runtime: Any
) -> None:
    tasks = [
        task(f"order-{n:02}") if n % 3 else task(f"order-{n:02}", type="checksum", payload={"text": f"t{n}"})
        for n in range(25)
    ]
    tasks.reverse()  # request order, not sorted order

    results = results_of(publish_batch(client, {"tasks": tasks}))

    assert results == [accepted(t["id"]) for t in tasks]
    # Each message is the task document POST /publish queues.
    expected = [{"id": t["id"], "type": t.get("type", "simulate"), "payload": t["payload"]} for t in tasks]
    bodies = queued_bodies(runtime)
    assert sorted(bodies, key=lambda b: b["id"]) == sorted(expected, key=lambda b: b["id"])
    assert all(runtime.store.get(t["id"]) is not None for t in tasks)
    stored = json.loads(client.http.get("/tasks/order-03").body)
    assert (stored["type"], stored["payload"], stored["status"]) == ("checksum", {"text": "t3"}, "PENDING")


def test_an_id_twice_in_one_batch_is_stored_and_sent_once_and_the_second_is_a_duplicate(
    client: Client, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = record_metrics(monkeypatch)
    body = {"tasks": [task("twice", payload={"n": 1}), task("once"), task("twice", payload={"n": 2})]}

    results = results_of(publish_batch(client, body))

    assert results == [accepted("twice"), accepted("once"), accepted("twice", duplicate=True)]
    assert json.loads(client.http.get("/tasks/twice").body)["payload"] == {"n": 1}
    assert sorted(queued_ids(runtime)) == ["once", "twice"]
    assert counted == Counter({("TasksAccepted", "simulate"): 2, ("DuplicatePublishes", "simulate"): 1})


def test_an_id_published_before_is_a_duplicate_in_a_later_batch_and_keeps_its_first_payload(
    client: Client, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.http.post("/publish", body=json.dumps(task("single")), headers=JSON).status_code == 201
    results_of(publish_batch(client, {"tasks": [task("first-batch", payload={"n": 1})]}))
    counted = record_metrics(monkeypatch)

    results = results_of(
        publish_batch(client, {"tasks": [task("new"), task("first-batch", payload={"n": 2}), task("single")]})
    )

    assert results == [accepted("new"), accepted("first-batch", duplicate=True), accepted("single", duplicate=True)]
    assert json.loads(client.http.get("/tasks/first-batch").body)["payload"] == {"n": 1}
    # Every entry's message was sent before its id was found taken; the consumer drops those.
    assert sorted(queued_ids(runtime)) == ["first-batch", "first-batch", "new", "single", "single"]
    assert counted == Counter({("TasksAccepted", "simulate"): 1, ("DuplicatePublishes", "simulate"): 2})


def test_a_refused_entry_does_not_sink_the_others_and_gets_the_error_publish_would_give(
    client: Client, runtime: Any
) -> None:
    # A body POST /publish takes (MAX_TASK_BYTES exactly) whose task, with its type added, is too large.
    big = {"blob": "x" * (MAX_TASK_BYTES - len(json.dumps(task("big", payload={"blob": ""}))))}
    tasks: list[Any] = [
        task("good-1"),
        task("late", delaySeconds=-1),
        ["not", "an", "object"],
        {"payload": {}},
        task("x" * 257),
        task("big", payload=big),
        task("typo", type="no-such-type"),
        task("sum", type="checksum", payload={"text": 5}),
        task("good-2"),
    ]

    results = results_of(publish_batch(client, {"tasks": tasks}))

    assert [r.get("id") for r in results] == ["good-1", "late", None, None, None, "big", "typo", "sum", "good-2"]
    assert results[0] == accepted("good-1") and results[-1] == accepted("good-2")
    refused = results[1:-1]
    assert [r["error"]["code"] for r in refused] == ["validation_error"] * 4 + ["payload_too_large"] + [
        "validation_error"
    ] * 2
    assert [[d["field"] for d in r["error"]["details"]] for r in refused] == [
        ["delaySeconds"],
        ["body"],
        ["id"],
        ["id"],
        [],
        ["type"],
        ["payload.text"],
    ]
    # Each is exactly the error POST /publish answers for the same body.
    for entry, result in zip(tasks[1:-1], refused, strict=True):
        single = client.http.post("/publish", body=json.dumps(entry), headers=JSON)
        assert error_of(single) == result["error"], entry
    assert_stored_and_queued_exactly_the_accepted(runtime, results)


# --- failures of the table and the queue ------------------------------------


def test_entries_the_queue_reports_failed_are_answered_503_and_not_kept(client: Client, runtime: Any) -> None:
    runtime.tasks_queue._client = RefusingSqs(runtime.tasks_queue._client, refuse="refuse-me")
    ids = [f"refuse-me-{n}" if n in (2, 7, 13) else f"sent-{n}" for n in range(15)]

    results = results_of(publish_batch(client, {"tasks": [task(i) for i in ids]}))

    assert [r["id"] for r in results] == ids
    assert [n for n, r in enumerate(results) if "error" in r] == [2, 7, 13]
    for n in (2, 7, 13):
        assert results[n]["error"]["code"] == "service_unavailable"
        assert "queue" in results[n]["error"]["message"]
    assert_stored_and_queued_exactly_the_accepted(runtime, results)


def test_a_send_call_that_fails_whole_refuses_exactly_its_entries_and_keeps_none_of_them(
    client: Client, runtime: Any
) -> None:
    runtime.tasks_queue._client = RefusingSqs(runtime.tasks_queue._client, fail_call="doomed")
    ids = [f"doomed-{n}" if n == 14 else f"call-{n}" for n in range(25)]

    results = results_of(publish_batch(client, {"tasks": [task(i) for i in ids]}))

    refused = [r["id"] for r in results if "error" in r]
    # The failing call carries the doomed entry and, at most, nine others; the other calls went through.
    assert "doomed-14" in refused and 1 <= len(refused) <= 10
    assert all(r["error"]["code"] == "service_unavailable" for r in results if "error" in r)
    assert_stored_and_queued_exactly_the_accepted(runtime, results)


def test_when_every_send_call_fails_no_task_is_kept(client: Client, runtime: Any) -> None:
    runtime.tasks_queue._client = RefusingSqs(runtime.tasks_queue._client, fail_call="lost-")

    results = results_of(publish_batch(client, {"tasks": [task(f"lost-{n}") for n in range(12)]}))

    assert [r["id"] for r in results] == [f"lost-{n}" for n in range(12)]
    assert [r["error"]["code"] for r in results] == ["service_unavailable"] * 12
    assert_stored_and_queued_exactly_the_accepted(runtime, results)


def test_a_send_whose_answer_is_lost_refuses_its_tasks_and_discards_their_items(client: Client, runtime: Any) -> None:
    # Under mock_aws the injected answer replaces moto's, which has already queued the messages:
    # SQS took them, and the answer never came back. As for POST /publish, the tasks are refused and
    # their items discarded; their messages still run them (the consumer creates a missing item),
    # and a client that publishes them again is not refused as a duplicate.
    sqs = runtime.tasks_queue._client
    runtime.tasks_queue.url  # noqa: B018 - resolved before the injected failures
    with inject_errors(sqs, "SendMessageBatch", status=400, code="AWS.SimpleQueueService.NonExistentQueue") as calls:
        results = results_of(publish_batch(client, {"tasks": [task(f"unknown-{n}") for n in range(12)]}))

    assert calls.count == 2
    assert [r["error"]["code"] for r in results] == ["service_unavailable"] * 12
    assert all(runtime.store.get(f"unknown-{n}") is None for n in range(12))
    again = results_of(publish_batch(client, {"tasks": [task(f"unknown-{n}") for n in range(12)]}))
    assert again == [accepted(f"unknown-{n}") for n in range(12)]


def test_a_failed_put_refuses_only_its_task(client: Client, runtime: Any) -> None:
    runtime.store._client = RefusingTable(runtime.store._client, "unlucky")
    body = {"tasks": [task("before"), task("unlucky"), task("after")]}

    results = results_of(publish_batch(client, body))

    assert results[0] == accepted("before") and results[2] == accepted("after")
    assert results[1]["id"] == "unlucky"
    assert results[1]["error"]["code"] == "service_unavailable"
    assert "table" in results[1]["error"]["message"]
    assert_stored_and_queued_exactly_the_accepted(runtime, results)


def test_a_repeat_of_an_entry_that_was_not_accepted_is_not_accepted_either(client: Client, runtime: Any) -> None:
    runtime.store._client = RefusingTable(runtime.store._client, "flaky")

    results = results_of(publish_batch(client, {"tasks": [task("flaky"), task("flaky", payload={"n": 2})]}))

    assert [r["error"]["code"] for r in results] == ["service_unavailable"] * 2
    assert results[0] == results[1]
    assert queued_ids(runtime) == ["flaky"]  # the first entry's message, sent before its put failed


# --- the request as a whole -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"),
    [
        (json.dumps([task("a")]), 400, "validation_error", "body"),
        (json.dumps({}), 400, "validation_error", "tasks"),
        (json.dumps({"tasks": None}), 400, "validation_error", "tasks"),
        (json.dumps({"tasks": {"id": "a", "payload": {}}}), 400, "validation_error", "tasks"),
        (json.dumps({"tasks": []}), 400, "validation_error", "tasks"),
        (json.dumps({"tasks": [task(f"t{n}") for n in range(MAX_BATCH_TASKS + 1)]}), 400, "validation_error", "tasks"),
        (json.dumps({"tasks": [task("a")], "extra": 1}), 400, "validation_error", "extra"),
        (json.dumps({"tasks": [task("a")]})[:-2], 400, "malformed_json", None),
        (json.dumps({"tasks": [task("\ud800")]}), 400, "validation_error", "body"),
        (json.dumps({"tasks": [task("a", payload={"pad": "x" * MAX_BATCH_BYTES})]}), 413, "payload_too_large", None),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_whole_naming_the_field(
    client: Client, runtime: Any, raw: str, status: int, code: str, field: str | None
) -> None:
    response = publish_batch(client, raw)

    assert response.status_code == status, response.body[:300]
    error = error_of(response)
    assert error["code"] == code
    if field is not None:
        assert [detail["field"] for detail in error["details"]] == [field]
    assert queued_ids(runtime) == []
    assert runtime.store.get("a") is None and runtime.store.get("t0") is None


def test_a_wrong_content_type_is_a_415(client: Client) -> None:
    response = publish_batch(client, {"tasks": [task("a")]}, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_the_route_has_the_same_authorization_and_content_types_as_publish() -> None:
    import app

    single, batch = app.app.routes["/publish"]["POST"], app.app.routes["/publish/batch"]["POST"]
    assert batch.api_key_required == single.api_key_required
    assert batch.authorizer == single.authorizer
    assert batch.content_types == single.content_types


# --- the cost and the SQS limits --------------------------------------------


def test_a_batch_of_100_costs_one_put_per_task_and_one_send_per_ten(client: Client, runtime: Any) -> None:
    runtime.tasks_queue.url  # noqa: B018 - looked up once per container, not per request
    counter = RequestCounter(runtime.store._client, runtime.tasks_queue._client)

    results = results_of(publish_batch(client, {"tasks": [task(f"cost-{n}") for n in range(100)]}))

    assert results == [accepted(f"cost-{n}") for n in range(100)]
    assert counter.calls == Counter({"PutItem": 100, "SendMessageBatch": 10})
    assert len(queued_ids(runtime)) == 100


def test_large_tasks_are_sent_in_calls_that_stay_under_the_batch_size_limit(client: Client, runtime: Any) -> None:
    runtime.tasks_queue.url  # noqa: B018
    counter = RequestCounter(runtime.tasks_queue._client)
    # About 100 KB each: two fit in a 256 KiB call, three do not. The body (1 MB) is far over
    # what one task may be, and well under the batch's cap.
    tasks = [task(f"large-{n}", payload={"blob": "x" * 100_000}) for n in range(10)]

    results = results_of(publish_batch(client, {"tasks": tasks}))

    assert results == [accepted(f"large-{n}") for n in range(10)]
    assert counter.calls["SendMessageBatch"] == 5
    assert sorted(queued_ids(runtime)) == sorted(t["id"] for t in tasks)


def test_batch_chunks_cut_by_count_and_by_size_in_order() -> None:
    small = [Outgoing("s" * 10)] * 25
    assert [len(chunk) for chunk in batch_chunks(small)] == [10, 10, 5]
    assert [i for chunk in batch_chunks(small) for i in chunk] == list(range(25))

    third = SQS_BATCH_BYTES // 3
    mixed = [Outgoing("a" * third), Outgoing("b" * third), Outgoing("c" * third), Outgoing("d" * (third + 1))]
    assert batch_chunks(mixed) == [[0, 1, 2], [3]]
    # Size counts UTF-8 bytes, not characters.
    wide = [Outgoing("é" * (SQS_BATCH_BYTES // 4 + 1))] * 3
    assert batch_chunks(wide) == [[0], [1], [2]]
    assert batch_chunks([]) == []


def record_metrics(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    """The counts emitted from now on, by (metric, task type)."""
    from chalicelib import metrics

    counted: Counter[tuple[str, str]] = Counter()

    def count(metric: Any, task_type: str | None, value: float = 1) -> None:
        counted[(str(metric), task_type or "none")] += int(value)

    monkeypatch.setattr(metrics, "count", count)
    return counted


def test_the_openapi_document_describes_the_batch_route_and_still_validates(client: Client) -> None:
    from openapi_spec_validator import validate

    document = json.loads(client.http.get("/openapi.json").body)
    validate(document)
    operation = document["paths"]["/publish/batch"]["post"]
    assert {"200", "400", "413", "415"} <= set(operation["responses"])
    assert f"{MAX_BATCH_BYTES:,} bytes" in operation["description"]
    assert "10 MB" in operation["description"] and "6 MB" in operation["description"]
    tasks = document["components"]["schemas"]["PublishBatchIn"]["properties"]["tasks"]
    assert (tasks["minItems"], tasks["maxItems"]) == (1, MAX_BATCH_TASKS)
    assert {"$ref": "#/components/schemas/TaskIn"} in tasks["items"]["anyOf"]
