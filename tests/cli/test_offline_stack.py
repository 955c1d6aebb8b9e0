"""`python -m taskctl` against the real offline stack (`python -m local run`), as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskctl.cli import EXIT_OK, EXIT_REFUSED
from tests.e2e.stack import ROOT, Api, Stack, free_port, stack_environment, start, wait_until

pytestmark = pytest.mark.e2e

ALWAYS_FAILS = '{"simulation": {"failureChance": 1, "executionTime": 20}}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port, aws_port = free_port(), free_port()
    # Two attempts and a 3 to 6 s backoff: a retried task stays RETRYING long enough to be seen and cancelled.
    settings = {"MAX_ATTEMPTS": "2", "BACKOFF_BASE_SECONDS": "6", "BACKOFF_MAX_SECONDS": "6"}
    env = stack_environment(port, aws_port, CONSOLE_PORT=str(free_port()), **settings)
    process = start("run", ["run"], env, tmp_path_factory.mktemp("cli-stack"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


def taskctl(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskctl", "--url", stack.api.base_url, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "client")},  # this checkout's client, as pytest imports it
    )


def as_json(stack: Stack, *args: str) -> Any:
    done = taskctl(stack, "--json", *args)
    assert done.returncode == EXIT_OK, done.stderr
    return json.loads(done.stdout)


def wait_for(stack: Stack, task_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        view = stack.api.task(task_id)
        return view if view["status"] == status else None

    return dict(wait_until(reached, 60, f"task {task_id} to be {status}"))


def test_publish_show_list_stats_retry_and_cancel_a_failing_task(stack: Stack) -> None:
    task_id = f"cli-{uuid.uuid4().hex[:8]}"

    published = as_json(stack, "publish", task_id, "--payload", ALWAYS_FAILS)
    # The message is sent before the item is put: a consumer that receives it first stores and starts
    # the task, and the answer then says where it already stands (chalicelib/tasks/store.py, `create`).
    assert {k: v for k, v in published.items() if k != "status"} == {"id": task_id, "duplicate": False}
    assert published["status"] in ("PENDING", "PROCESSING", "RETRYING")
    failed = wait_for(stack, task_id, "FAILED")
    assert [entry["outcome"] for entry in failed["history"]] == ["failed"] * failed["maxAttempts"]

    listed = as_json(stack, "list", "--status", "FAILED", "--all")
    assert failed["lastError"] in [t["lastError"] for t in listed["tasks"] if t["id"] == task_id]
    stats = as_json(stack, "stats")
    assert stats["counts"]["FAILED"] >= 1
    assert set(stats["queues"]) >= {"tasks", "deadLetters"}

    preview = as_json(stack, "retry", "--all-failed", "--dry-run")
    assert task_id in preview["matched"] and preview["retried"] == []

    retried = taskctl(stack, "retry", task_id)
    assert retried.returncode == EXIT_OK, retried.stderr
    assert retried.stdout.startswith(f"{task_id}: retried (202), now PENDING")
    waiting = wait_for(stack, task_id, "RETRYING")
    assert [e["kind"] for e in waiting["history"]].count("retry") == 1

    cancelled = taskctl(stack, "cancel", task_id)
    assert cancelled.returncode == EXIT_OK, cancelled.stderr
    # Cancelled at once while RETRYING; if the next attempt had just begun (202), when that attempt fails.
    kinds = [entry["kind"] for entry in wait_for(stack, task_id, "CANCELLED")["history"]]
    if "cancelled (200)" in cancelled.stdout:
        assert kinds[-1] == "cancel"
    else:
        assert "cancel requested (202)" in cancelled.stdout
        assert "cancel_requested" in kinds


def test_refusals_exit_1_and_name_the_id(stack: Stack) -> None:
    task_id = f"cli-ok-{uuid.uuid4().hex[:8]}"
    as_json(stack, "publish", task_id, "--payload", '{"simulation": {"failureChance": 0}}')
    wait_for(stack, task_id, "COMPLETED")

    done = taskctl(stack, "retry", task_id, "no-such-task")

    assert done.returncode == EXIT_REFUSED
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"taskctl: error: retry {task_id}: 409")
    assert lines[1].startswith("taskctl: error: retry no-such-task: 404")
