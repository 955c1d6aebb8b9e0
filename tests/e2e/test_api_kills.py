"""The API process SIGKILLed between the two halves of each write path, and every task still ends.

The API reaches the embedded AWS through a fault proxy whose tripwire kills the API
process at an exact request: the PutItem after a publish's (or a batch's) send, or the
restart write after a retry's send. Nothing of the request runs after that point; the
client's connection drops. A new API is started on the same port, and each test waits,
with a deadline, for the tasks it touched to be terminal, reading the table itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from boto3.dynamodb.types import TypeDeserializer

from tools.chaos.stack import TASKS_TABLE, ApiKill, ChaosStack
from tools.processes import DUMMY_CREDENTIALS

pytestmark = pytest.mark.e2e

SUCCEEDS = {"simulation": {"failureChance": 0}}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
DEADLINE_SECONDS = 60.0


class KillableStack:
    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        session = boto3.session.Session(
            region_name="us-east-1",
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
        )
        self.dynamodb = session.client("dynamodb", endpoint_url=stack.aws_url)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.stack.api_url}{path}", json=body, timeout=30)

    def killed_at(self, kill: ApiKill, path: str, body: Any) -> None:
        """Send a request that the API dies in the middle of, then start a new API."""
        self.stack.arm_api_kill(kill)
        with pytest.raises(requests.ConnectionError):
            self.post(path, body)
        assert self.stack.api_died.wait(10), "the tripwire did not fire"
        self.stack.restart_api()

    def item(self, task_id: str) -> dict[str, Any] | None:
        raw = self.dynamodb.get_item(TableName=TASKS_TABLE, Key={"id": {"S": task_id}}, ConsistentRead=True)
        item = raw.get("Item")
        return {k: TypeDeserializer().deserialize(v) for k, v in item.items()} if item else None

    def wait_terminal(self, task_ids: list[str], must_exist: bool = True) -> dict[str, dict[str, Any] | None]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            items = {task_id: self.item(task_id) for task_id in task_ids}
            done = all(
                (item is not None and item["status"] in TERMINAL) or (item is None and not must_exist)
                for item in items.values()
            )
            if done:
                return items
            if time.monotonic() > deadline:
                raise AssertionError(f"not terminal within {DEADLINE_SECONDS} s: {items}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillableStack]:
    log_dir: Path = tmp_path_factory.mktemp("api-kills")
    stack = ChaosStack(log_dir, workers=1, fault_rate=0.0, max_attempts=3, seed=1)
    try:
        stack.start()
        yield KillableStack(stack)
    finally:
        stack.stop()


def attempts(item: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [entry for entry in (item or {}).get("history", []) if "attempt" in entry]


def test_a_publish_killed_between_its_send_and_its_put_runs_its_task(s: KillableStack) -> None:
    s.killed_at(ApiKill.AFTER_SEND, "/publish", {"id": "kill-publish", "payload": SUCCEEDS})

    item = s.wait_terminal(["kill-publish"])["kill-publish"]

    assert item is not None and item["status"] == "COMPLETED"
    assert len(attempts(item)) == 1


def test_a_batch_killed_between_its_sends_and_its_puts_runs_every_task(s: KillableStack) -> None:
    ids = [f"kill-batch-{n}" for n in range(12)]
    s.killed_at(ApiKill.AFTER_SEND, "/publish/batch", {"tasks": [{"id": i, "payload": SUCCEEDS} for i in ids]})

    items = s.wait_terminal(ids)

    assert {item["status"] for item in items.values() if item} == {"COMPLETED"}
    assert all(len(attempts(item)) == 1 for item in items.values())


def test_a_server_named_task_killed_between_its_send_and_its_put_runs(s: KillableStack) -> None:
    before = {item["id"]["S"] for item in s.dynamodb.scan(TableName=TASKS_TABLE)["Items"]}
    s.killed_at(ApiKill.AFTER_SEND, "/tasks", {"message": "SUCCESS", "simulation": {"failureChance": 0}})

    deadline = time.monotonic() + DEADLINE_SECONDS
    new: set[str] = set()
    while not new and time.monotonic() < deadline:
        new = {item["id"]["S"] for item in s.dynamodb.scan(TableName=TASKS_TABLE)["Items"]} - before
        time.sleep(0.2)
    assert len(new) == 1, "the consumer did not store the task"
    items = s.wait_terminal(sorted(new))
    assert [item["status"] for item in items.values() if item] == ["COMPLETED"]


def failed(s: KillableStack, task_id: str) -> None:
    assert s.post("/publish", {"id": task_id, "payload": DOOMED}).status_code == 201
    assert s.wait_terminal([task_id])[task_id]["status"] == "FAILED"  # type: ignore[index]


def test_a_retry_killed_between_its_send_and_its_write_leaves_the_task_as_it_was_and_a_new_retry_runs(
    s: KillableStack,
) -> None:
    failed(s, "kill-retry")
    s.killed_at(ApiKill.BEFORE_RETRY_WRITE, "/tasks/kill-retry/retry", {})

    item = s.item("kill-retry")
    assert item is not None and item["status"] == "FAILED"  # the write never happened
    assert s.post("/tasks/kill-retry/retry", {}).status_code == 202
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(attempts(s.item("kill-retry"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    item = s.wait_terminal(["kill-retry"])["kill-retry"]
    assert item is not None and item["status"] == "FAILED"
    assert len(attempts(item)) == 2  # the first run's attempt and the new retry's
    assert [entry.get("kind") for entry in item["history"]].count("retry") == 1


def test_a_bulk_retry_killed_at_a_restart_write_strands_nothing(s: KillableStack) -> None:
    ids = [f"kill-bulk-{n}" for n in range(4)]
    for task_id in ids:
        failed(s, task_id)
    s.killed_at(ApiKill.BEFORE_RETRY_WRITE, "/retries", {"status": "FAILED", "limit": 100})

    items = s.wait_terminal(ids)

    assert all(item is not None and item["status"] == "FAILED" for item in items.values())
    # Those whose write landed before the kill ran again; none is left PENDING without a message.
    assert all(len(attempts(item)) in (1, 2) for item in items.values())
