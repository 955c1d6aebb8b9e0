"""`make run` with a time scale: the worker ticks every scaled minute and a `runAt` task's timer starts it on time.

RUN_AT_TIMER_SECONDS=0 sends every `runAt` ahead of now through a timer, so a task due in
seconds walks the path a task due in days walks on AWS: timer, tick, delayed message, consumer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from chalicelib.record import iso_from_ms, ms_from_iso
from tests.e2e.stack import Api, Stack, free_port, stack_environment, start, wait_until

pytestmark = pytest.mark.e2e

SUCCEEDS = {"simulation": {"failureChance": 0, "executionTime": 0}}
SCALE = 60  # a minute of schedule time per wall second: one tick a second
TASKS = 6


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, SCHEDULE_TIME_SCALE=str(SCALE), RUN_AT_TIMER_SECONDS="0")
    process = start("run", ["run"], env, tmp_path_factory.mktemp("scaled"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


def log_lines(stack: Stack, event: str) -> list[dict[str, object]]:
    """The stack's structured log lines whose message is `event`."""
    lines = []
    for line in stack.process.output().splitlines():
        start_of_json = line.find("{")
        if start_of_json < 0 or f'"{event}"' not in line:
            continue
        try:
            record = json.loads(line[start_of_json:])
        except ValueError:
            continue
        if record.get("message") == event:
            lines.append(record)
    return lines


def test_the_worker_runs_the_tick_every_scaled_minute(scaled: Stack) -> None:
    scaled.process.wait_for_line("taskproc-local-tick every 1 s")
    first = len(log_lines(scaled, "tick"))
    started = time.monotonic()

    wait_until(lambda: len(log_lines(scaled, "tick")) >= first + 3, 20, "three more ticks")

    assert time.monotonic() - started < 10  # three ticks of a second each, on a busy machine


def test_run_at_tasks_start_on_time_through_their_timers_and_not_before(scaled: Stack) -> None:
    due = {f"at-{n}-{uuid.uuid4()}": iso_from_ms(int((time.time() + 4 + n / 2) * 1000)) for n in range(TASKS)}
    for task_id, run_at in due.items():
        status, answer = scaled.api.call("POST", "/publish", {"id": task_id, "payload": SUCCEEDS, "runAt": run_at})
        assert status == 201, answer
        assert scaled.api.task(task_id)["notBefore"] == run_at

    views = {task_id: scaled.api.wait_terminal(task_id, timeout=60) for task_id in due}

    lateness = []
    for task_id, view in views.items():
        assert view["status"] == "COMPLETED", view
        [attempt] = [entry for entry in view["history"] if entry.get("kind") == "attempt"]
        lateness.append((ms_from_iso(attempt["startedAt"]) - ms_from_iso(due[task_id])) / 1000)
    dispatched = {line["taskId"] for line in log_lines(scaled, "timer_dispatched")}
    assert set(due) <= dispatched, "every task went through its timer"
    print(f"runAt lateness offline, s: {sorted(lateness)}")  # the figure docs/architecture.md quotes
    assert all(late >= 0 for late in lateness), lateness
    assert max(lateness) < 3, lateness
