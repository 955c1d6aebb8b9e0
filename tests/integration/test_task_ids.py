"""Task ids: the longest allowed goes the whole way under AWS's key limits; hostile ones are refused.

The `aws` fixture enforces DynamoDB's key sizes on every write (local/aws_limits.py),
so a task whose index sort key `<updatedAt>#<id>` would pass 1,024 bytes fails here
as it would on AWS.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.errors import StoreError
from chalicelib.models import MAX_TASK_ID_BYTES, MAX_TASK_ID_LENGTH, Task
from tests.conftest import FakeClock
from tests.integration.harness import Harness

JSON = {"Content-Type": "application/json"}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}
LONGEST = {
    "ascii": "x" * MAX_TASK_ID_LENGTH,
    "four-byte": "😀" * (MAX_TASK_ID_BYTES // 4),
    "mixed": "😀" * (MAX_TASK_ID_LENGTH // 2) + "é" * (MAX_TASK_ID_LENGTH // 2),  # 256 characters, 768 bytes
}
HOSTILE = {
    "NUL": "a\x00b",
    "BEL": "bell\x07",
    "ESC": "\x1b[31mred",
    "newline": "two\nlines",
    "DEL": "del\x7f",
    "U+0085": "next\x85line",
    "U+202E": "abc\u202edcba",
    "U+2066": "\u2066isolated",
}


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def post(client: Client, path: str, body: Any = None) -> Any:
    return client.http.post(path, body=json.dumps(body) if body is not None else b"", headers=JSON)


def read(client: Client, task_id: str) -> Any:
    return client.http.get("/tasks/" + quote(task_id, safe=""))


def listed(client: Client, status: str) -> list[str]:
    response = client.http.get(f"/tasks?status={status}")
    assert response.status_code == 200, response.body
    return [summary["id"] for summary in json.loads(response.body)["tasks"]]


def error_fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["error"]["details"]]


@pytest.mark.parametrize("task_id", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_id_is_refused_by_publish_with_400_naming_id(client: Client, task_id: str) -> None:
    response = post(client, "/publish", {"id": task_id, "payload": {}})
    assert response.status_code == 400
    body = json.loads(response.body)
    assert error_fields(body) == ["id"]
    assert "control characters or bidirectional formatting characters" in body["error"]["details"][0]["message"]
    assert task_id not in response.body.decode("utf-8")  # the answer does not carry it back either


@pytest.mark.parametrize("task_id", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_id_is_refused_in_a_batch_and_the_others_go_on(client: Client, task_id: str) -> None:
    response = post(
        client, "/publish/batch", {"tasks": [{"id": task_id, "payload": {}}, {"id": "fine", "payload": {}}]}
    )
    assert response.status_code == 200, response.body
    hostile, fine = json.loads(response.body)["results"]
    assert hostile["id"] is None and hostile["error"]["code"] == "validation_error"
    assert error_fields(hostile) == ["id"]
    assert fine == {"id": "fine", "status": "PENDING", "duplicate": False}


def test_an_id_over_768_bytes_is_refused_naming_id_and_the_rule(client: Client) -> None:
    over = "😀" * (MAX_TASK_ID_BYTES // 4) + "x"
    response = post(client, "/publish", {"id": over, "payload": {}})
    assert response.status_code == 400
    body = json.loads(response.body)
    assert error_fields(body) == ["id"]
    assert f"at most {MAX_TASK_ID_BYTES} bytes" in body["error"]["details"][0]["message"]
    assert read(client, over).status_code == 404


def test_ids_with_non_ascii_that_are_not_controls_stay_valid(client: Client) -> None:
    for task_id in ["día ☃ 🚀", "\u00a0nbsp", "\u200dzwj", "ünïcødé-日本", "\u210c" * MAX_TASK_ID_LENGTH]:
        assert post(client, "/publish", {"id": task_id, "payload": {}}).status_code == 201, task_id


@pytest.mark.parametrize("task_id", LONGEST.values(), ids=LONGEST.keys())
def test_the_longest_id_is_driven_to_failed_and_listed(h: Harness, task_id: str) -> None:
    assert post(h.client, "/publish", {"id": task_id, "payload": DOOMED}).status_code == 201
    h.deliver()

    view = json.loads(read(h.client, task_id).body)
    assert (view["id"], view["status"], view["attempts"]) == (task_id, "FAILED", 1)
    assert listed(h.client, "FAILED") == [task_id]


@pytest.mark.parametrize("task_id", LONGEST.values(), ids=LONGEST.keys())
def test_the_longest_id_is_cancelled_by_an_operator_and_listed(h: Harness, task_id: str) -> None:
    assert post(h.client, "/publish", {"id": task_id, "payload": DOOMED}).status_code == 201
    response = post(h.client, "/tasks/" + quote(task_id, safe="") + "/cancel")
    assert response.status_code == 200, response.body
    h.deliver()  # its message arrives and is dropped

    view = json.loads(read(h.client, task_id).body)
    assert (view["id"], view["status"], view["attempts"]) == (task_id, "CANCELLED", 0)
    assert listed(h.client, "CANCELLED") == [task_id]


def test_the_longest_id_fails_retries_and_fails_again_under_the_limits(h: Harness) -> None:
    task_id = LONGEST["four-byte"]
    assert post(h.client, "/publish", {"id": task_id, "payload": DOOMED}).status_code == 201
    h.deliver()
    response = post(h.client, "/tasks/" + quote(task_id, safe="") + "/retry")
    assert response.status_code == 202, response.body
    h.clock.advance(1)
    h.deliver()
    view = json.loads(read(h.client, task_id).body)
    assert (view["status"], [entry["kind"] for entry in view["history"]]) == ("FAILED", ["attempt", "retry", "attempt"])


def test_the_old_rule_256_four_byte_characters_would_be_refused_where_the_index_is_written(h: Harness) -> None:
    """The finding, reproduced under the limits: such an id's item is stored, its FAILED write is not."""
    old_longest = "😀" * MAX_TASK_ID_LENGTH
    record, created = h.rt.store.create(Task(id=old_longest, payload=DOOMED), max_attempts=3)
    assert created
    acquired = h.rt.store.acquire(record.task, "owner", "message", 3, 60)
    with pytest.raises(StoreError, match="Aggregated size of all range keys"):
        h.rt.store.fail(acquired, "boom", retry_at_ms=None)
