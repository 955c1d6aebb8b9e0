"""Expiry on `make run`'s stack, over HTTP: the message attribute survives the offline event source."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.stack import Stack, wait_until

pytestmark = pytest.mark.e2e

SUCCEEDS = {"simulation": {"failureChance": 0}}


def cancelled(stack: Stack, task_id: str) -> dict[str, Any] | None:
    view = stack.api.task(task_id)
    return view if view["status"] == "CANCELLED" else None


def test_a_task_whose_delay_outlasts_its_expiry_ends_cancelled_unrun(stack: Stack) -> None:
    task_id = f"stale-{uuid.uuid4()}"
    body = {"id": task_id, "payload": SUCCEEDS, "delaySeconds": 2, "expiresInSeconds": 1}
    status, answer = stack.api.call("POST", "/publish", body)
    assert status == 201, answer

    view = wait_until(lambda: cancelled(stack, task_id), 30, f"task {task_id} to be cancelled")

    assert (view["status"], view["lastError"], view["attempts"]) == ("CANCELLED", "expired before it started", 0)
    assert [entry["kind"] for entry in view["history"]] == ["expired"]


def test_a_task_delivered_before_its_expiry_runs(stack: Stack) -> None:
    task_id = f"timely-{uuid.uuid4()}"
    status, answer = stack.api.call("POST", "/publish", {"id": task_id, "payload": SUCCEEDS, "expiresInSeconds": 60})
    assert status == 201, answer

    view = stack.api.wait_terminal(task_id)

    assert view["status"] == "COMPLETED" and view["startBy"] is not None


def test_a_retry_asking_for_an_expiry_gets_one(stack: Stack) -> None:
    doomed = f"doomed-{uuid.uuid4()}"
    stack.api.publish(doomed, {"simulation": {"failureChance": 1, "permanentFailure": True}})
    assert stack.api.wait_terminal(doomed)["status"] == "FAILED"

    status, retried = stack.api.call("POST", f"/tasks/{doomed}/retry", {"expiresInSeconds": 120})

    assert status == 202, retried
    assert retried["startBy"] is not None and retried["status"] == "PENDING"
