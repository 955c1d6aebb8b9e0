"""The HTTP contract: what clients send, what they get back."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from tests.integration.harness import Harness
from tests.integration.lambda_sqs import Delivery

JSON = {"Content-Type": "application/json"}


def post(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(path, body=raw, headers=headers or JSON)


def error_of(response: Any) -> dict[str, Any]:
    body = json.loads(response.body)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def fields_of(response: Any) -> list[str]:
    return [detail["field"] for detail in error_of(response)["details"]]


def test_publish_answers_201_with_location_and_the_task_reads_back(client: Client) -> None:
    response = post(client, "/publish", {"id": "task-001", "payload": {"prop-key": "prop-val"}})

    assert response.status_code == 201
    assert json.loads(response.body) == {"id": "task-001", "status": "PENDING", "duplicate": False}
    assert response.headers["Location"] == "/tasks/task-001"
    task = json.loads(client.http.get("/tasks/task-001").body)
    assert task["status"] == "PENDING"
    assert task["payload"] == {"prop-key": "prop-val"}
    assert task["attempts"] == 0
    assert task["maxAttempts"] == 3
    assert task["history"] == []
    assert task["finishedAt"] is None and task["lastError"] is None


def test_publish_queues_exactly_the_task_document(client: Client, runtime: Any) -> None:
    post(client, "/publish", {"id": "q-1", "payload": {"simulation": {"executionTime": 400, "failureChance": 0.3}}})

    sqs = runtime.tasks_queue._client
    messages = sqs.receive_message(QueueUrl=runtime.tasks_queue.url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [
        {"id": "q-1", "type": "simulate", "payload": {"simulation": {"executionTime": 400, "failureChance": 0.3}}}
    ]


def test_duplicate_publish_answers_201_keeps_the_first_payload_and_never_runs_twice(
    client: Client, runtime: Any, clock: Any
) -> None:
    post(client, "/publish", {"id": "dup", "payload": {"simulation": {"failureChance": 0}, "n": 1}})
    again = post(client, "/publish", {"id": "dup", "payload": {"simulation": {"failureChance": 0}, "n": 2}})

    assert again.status_code == 201
    assert json.loads(again.body) == {"id": "dup", "status": "PENDING", "duplicate": True}
    assert json.loads(client.http.get("/tasks/dup").body)["payload"]["n"] == 1
    # Both messages were sent (each publish sends before it stores); the consumer runs the
    # task once, with its first payload, and drops the other message.
    h = Harness(client, runtime, clock)
    first = h.deliver()
    assert len(first.records) == 2
    clock.advance(runtime.settings.LEASE_SECONDS)
    for record in first.records:  # the one that found the task leased is still on the queue
        with contextlib.suppress(ClientError):
            h.reveal(Delivery([record]))
    h.deliver()  # whichever message found the task leased finds it COMPLETED now
    task = h.task("dup")
    assert task["status"] == "COMPLETED"
    assert [entry["attempt"] for entry in task["history"]] == [1]
    assert task["payload"]["n"] == 1
    assert h.depth(runtime.tasks_queue.url) == 0


def test_post_tasks_takes_the_whole_body_as_payload_under_a_new_id(client: Client) -> None:
    response = post(client, "/tasks", {"message": "SUCCESS"})

    assert response.status_code == 201
    body = json.loads(response.body)
    assert body["taskId"] == body["id"] and len(body["id"]) == 36
    assert body["status"] == "PENDING"
    assert response.headers["Location"] == f"/tasks/{body['id']}"
    assert json.loads(client.http.get(f"/tasks/{body['id']}").body)["payload"] == {"message": "SUCCESS"}


@pytest.mark.parametrize("task_id", ["a/b", "100%", "%41", "día ☃ 🚀", "a b?c#d&e=f", "x" * 256, " "])
def test_any_publishable_id_reads_back_by_its_percent_encoded_form(client: Client, task_id: str) -> None:
    response = post(client, "/publish", {"id": task_id, "payload": {}})
    assert response.status_code == 201
    assert response.headers["Location"] == "/tasks/" + quote(task_id, safe="")

    got = client.http.get(response.headers["Location"])
    assert got.status_code == 200
    assert json.loads(got.body)["id"] == task_id


def test_unknown_task_is_a_json_404(client: Client) -> None:
    response = client.http.get("/tasks/nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_overlong_id_in_the_path_is_a_404_not_a_table_error(client: Client) -> None:
    response = client.http.get("/tasks/" + "x" * 3000)
    assert response.status_code == 404


def test_path_id_that_is_not_utf8_is_a_400(client: Client) -> None:
    response = client.http.get("/tasks/%ff%fe")
    assert response.status_code == 400
    assert fields_of(response) == ["task_id"]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"payload": {}}, "id", "Field required"),
        ({"id": "", "payload": {}}, "id", "at least 1 character"),
        ({"id": "x" * 257, "payload": {}}, "id", "at most 256 characters"),
        ({"id": 7, "payload": {}}, "id", "valid string"),
        ({"id": "\ud800", "payload": {}}, "body", "valid Unicode"),
        ({"id": "t"}, "payload", "Field required"),
        ({"id": "t", "payload": []}, "payload", "dictionary"),
        ({"id": "t", "payload": "text"}, "payload", "dictionary"),
        ({"id": "t", "payload": {}, "extra": 1}, "extra", "Extra inputs are not permitted"),
        ({"id": "t", "payload": {"simulation": 5}}, "payload.simulation", "dictionary"),
        ({"id": "t", "payload": {"simulation": {"executionTime": 1001}}}, "payload.simulation.executionTime", "1000"),
        ({"id": "t", "payload": {"simulation": {"executionTime": -1}}}, "payload.simulation.executionTime", "0"),
        (
            {"id": "t", "payload": {"simulation": {"executionTime": "400"}}},
            "payload.simulation.executionTime",
            "number",
        ),
        ({"id": "t", "payload": {"simulation": {"executionTime": True}}}, "payload.simulation.executionTime", "number"),
        ({"id": "t", "payload": {"simulation": {"failureChance": 1.5}}}, "payload.simulation.failureChance", "1"),
        ({"id": "t", "payload": {"simulation": {"failureChance": -0.1}}}, "payload.simulation.failureChance", "0"),
        ({"id": "t", "payload": {"simulation": {"failurechance": 0.1}}}, "payload.simulation.failurechance", "Extra"),
    ],
)
def test_each_rule_answers_400_naming_the_field(client: Client, body: dict[str, Any], field: str, rule: str) -> None:
    response = post(client, "/publish", json.dumps(body))

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in fields_of(response)
    assert any(rule in detail["message"] for detail in error["details"]), error


def test_post_tasks_validates_the_simulation_in_its_body(client: Client) -> None:
    response = post(client, "/tasks", {"simulation": {"failureChance": 2}})
    assert response.status_code == 400
    assert fields_of(response) == ["simulation.failureChance"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b'{"id": "t", "payload": {"x": NaN}}', 400, "malformed_json"),
        (b'{"id": "t", "payload": {"x": Infinity}}', 400, "malformed_json"),
        (b'{"id": "t", "payload": {"x": 1e999}}', 400, "malformed_json"),
        (b'{"id": "t", "payload": {"x": ' + b"9" * 5000 + b"}}", 400, "malformed_json"),
        (b'{"id": "t", "payload": {"x": "\xff"}}', 400, "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "payload_too_large"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "malformed_json"),
        (b"[1, 2]", 400, "validation_error"),
        (b"null", 400, "validation_error"),
        (b'"text"', 400, "validation_error"),
    ],
)
def test_bodies_that_are_not_a_json_object_get_a_json_4xx(client: Client, raw: bytes, status: int, code: str) -> None:
    for path in ("/publish", "/tasks"):
        response = client.http.post(path, body=raw, headers=JSON)
        assert response.status_code == status, (path, response.body[:200])
        assert error_of(response)["code"] == code


def test_a_body_too_large_to_store_is_a_413(client: Client) -> None:
    response = post(client, "/publish", {"id": "big", "payload": {"blob": "x" * 200_000}})
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert client.http.get("/tasks/big").status_code == 404


def test_a_wrong_content_type_is_a_json_415(client: Client) -> None:
    response = post(client, "/publish", {"id": "t", "payload": {}}, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_json_with_a_charset_is_accepted(client: Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert post(client, "/publish", {"id": "cs", "payload": {}}, headers=headers).status_code == 201


def test_publish_when_the_table_is_missing_is_a_json_503_saying_the_queued_task_may_run(
    client: Client, runtime: Any
) -> None:
    runtime.store._client.delete_table(TableName="taskproc-test-tasks")
    response = post(client, "/publish", {"id": "t", "payload": {}})
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "service_unavailable"
    assert "will run unless the id was already taken" in error["message"]
    sqs = runtime.tasks_queue._client
    messages = sqs.receive_message(QueueUrl=runtime.tasks_queue.url)["Messages"]
    assert [json.loads(m["Body"])["id"] for m in messages] == ["t"]


def test_publish_when_the_queue_fails_is_a_503_and_the_task_is_not_kept(client: Client, runtime: Any) -> None:
    runtime.tasks_queue._url = runtime.tasks_queue.url + "-missing"
    response = post(client, "/publish", {"id": "unqueued", "payload": {}})
    assert response.status_code == 503
    assert runtime.store.get("unqueued") is None


def test_openapi_document_is_valid_openapi_3_1(client: Client) -> None:
    from openapi_spec_validator import validate

    document = json.loads(client.http.get("/openapi.json").body)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/publish", "/tasks", "/tasks/{task_id}", "/health", "/openapi.json"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert schemas["TaskType"]["enum"] == [
        "callback",
        "capped",
        "checksum",
        "per-customer",
        "simulate",
        "steps",
        "throttled",
    ]
    assert {variant["$ref"].rsplit("/", 1)[1] for variant in schemas["TaskIn"]["oneOf"]} == {
        "PublishCapped",
        "PublishChecksum",
        "PublishPerCustomer",
        "PublishSimulate",
        "PublishSteps",
        "PublishThrottled",
    }
    # A body without `type` is a simulate task: only that variant may leave it out.
    assert schemas["PublishSimulate"]["required"] == ["id", "payload"]
    assert schemas["PublishChecksum"]["required"] == ["id", "type", "payload"]
    assert schemas["PublishSimulate"]["properties"]["id"]["maxLength"] == 256
    assert schemas["PublishChecksum"]["properties"]["payload"] == {"$ref": "#/components/schemas/ChecksumPayload"}


def test_a_payload_nested_too_deep_is_refused_naming_the_rule(client: Client) -> None:
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    for path, body, field in (
        ("/publish", {"id": "deep", "payload": {"x": nested}}, "payload"),
        ("/tasks", {"x": nested}, "body"),
    ):
        response = post(client, path, body)
        assert response.status_code == 400
        assert fields_of(response) == [field]
        assert "128 levels" in error_of(response)["details"][0]["message"]


def test_a_get_with_a_foreign_content_type_is_served(client: Client) -> None:
    assert client.http.get("/health", headers={"Content-Type": "text/plain"}).status_code == 200
