"""A chain on `make run`'s stack: three steps run in order through the real worker, each given the
result before it as `previous`, and the first task's view reads every step published."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.stack import Stack, wait_until

pytestmark = pytest.mark.e2e

SUCCEEDS = {"simulation": {"failureChance": 0}}


def test_a_chain_of_three_runs_in_order_on_the_offline_stack_each_step_given_previous(stack: Stack) -> None:
    root = f"chained-{uuid.uuid4()}"
    steps = [{"type": "simulate", "payload": {**SUCCEEDS, "step": n}} for n in (1, 2, 3)]
    status, answer = stack.api.call("POST", "/publish", {"id": root, "payload": SUCCEEDS, "then": steps})
    assert status == 201, answer

    def view(task_id: str) -> dict[str, Any] | None:
        status, task = stack.api.call("GET", f"/tasks/{task_id.replace('/', '%2F')}")
        return task if status == 200 else None

    def completed(task_id: str) -> dict[str, Any] | None:
        task = view(task_id)
        return task if task and task["status"] == "COMPLETED" else None

    last = wait_until(lambda: completed(f"{root}/then/3"), 90, f"the last step of {root}")
    before = [completed(root), completed(f"{root}/then/1"), completed(f"{root}/then/2")]
    assert all(before), before
    for n, step in enumerate([*before[1:], last], start=1):
        assert step is not None and step["payload"] == {**SUCCEEDS, "step": n, "previous": before[n - 1]["result"]}
        assert step["attempts"] == 1
    assert before[0] is not None
    assert [(s["id"], s["state"]) for s in before[0]["then"]] == [(f"{root}/then/{n}", "published") for n in (1, 2, 3)]
