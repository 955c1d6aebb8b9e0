"""Helpers of the end-to-end tests: the offline stack in subprocesses on free loopback ports, over real HTTP.

Every wait polls with a deadline. Every process is started by local.launcher, in its
own session, and its whole process group is killed on teardown, so a failing test
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from local.launcher import Launched, LaunchError, free_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["ROOT", "Api", "Process", "Stack", "free_port", "stack_environment", "start", "wait_until"]
T = TypeVar("T")

# Short timings, so failing tasks walk to FAILED in seconds; the lease stays below
# the visibility timeout, as the template asks. The visibility timeout leaves a loaded
# machine room: a batch still running when it ends is received again, and every such
# receive spends one of the message's MAX_ATTEMPTS receives.
E2E_SETTINGS = {
    "MAX_ATTEMPTS": "3",
    "BACKOFF_BASE_SECONDS": "1",
    "BACKOFF_MAX_SECONDS": "2",
    "LEASE_SECONDS": "4",
    "QUEUE_VISIBILITY_TIMEOUT": "6",
    "DEFAULT_FAILURE_CHANCE": "0.3",
    "POLL_WAIT_SECONDS": "1",
}
# Names the surrounding test process may have set for other suites; the stack must not inherit them.
INHERITED_NOISE = (
    "TASKS_TABLE",
    "FLOW_TABLE",
    "SCHEDULES_TABLE",
    "TASKS_QUEUE",
    "DEAD_LETTER_QUEUE",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "STAGE",
)
START_TIMEOUT = 90.0
TERMINAL = {"COMPLETED", "FAILED"}


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Process(Launched):
    """A piece of the stack (or the whole of it), started by local.launcher; waits fail the test."""

    def wait_for_line(self, text: str, timeout: float = START_TIMEOUT) -> str:
        try:
            return self.wait_for(text, timeout)
        except LaunchError as exc:
            pytest.fail(str(exc))

    def stop(self, timeout: float = 45.0) -> int | None:
        """SIGTERM, then SIGKILL for the whole process group; returns the exit code of a clean stop."""
        return super().stop(timeout)

    def kill_group(self) -> None:
        self.kill()


def stack_environment(port: int, aws_port: int, **overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in INHERITED_NOISE}
    env.update(E2E_SETTINGS)
    env.update(PORT=str(port), AWS_PORT=str(aws_port), PYTHONUNBUFFERED="1")
    # Stacks of several tests run side by side: each console on a port of its own.
    env.setdefault("CONSOLE_PORT", str(free_port()))
    env.update(overrides)
    return env


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    return Process(args[0], env, log_dir / f"{name}.log", tuple(args[1:]))


class Api:
    """A small HTTP client of the stack's API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def publish(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, body = self.call("POST", "/publish", {"id": task_id, "payload": payload})
        assert status == 201, body
        return dict(body)

    def create(self, payload: dict[str, Any]) -> str:
        status, body = self.call("POST", "/tasks", payload)
        assert status == 201, body
        return str(body["taskId"])

    def task(self, task_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/tasks/{urllib.request.quote(task_id, safe='')}")
        assert status == 200, body
        return dict(body)

    def wait_terminal(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        def terminal() -> dict[str, Any] | None:
            view = self.task(task_id)
            return view if view["status"] in TERMINAL else None

        return wait_until(terminal, timeout, f"task {task_id} to finish")


@dataclass
class Stack:
    api: Api
    aws_port: int
    process: Process
    env: dict[str, str]
