"""The offline stack writes the same EMF lines and JSON log lines as Lambda would: read them from its output."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.e2e.stack import Stack, wait_until

SUCCEEDS = {"simulation": {"failureChance": 0}}


def json_lines(output: str, piece: str) -> list[dict[str, Any]]:
    """The JSON objects one piece of `make run` printed; the supervisor puts `[piece ]` in front of each line."""
    found = []
    for line in output.splitlines():
        prefix, _, rest = line.partition("] ")
        if prefix.strip("[ ") == piece and rest.startswith("{"):
            try:
                found.append(json.loads(rest))
            except ValueError:
                continue
        # Anything else is the pieces' own plain-text logging.
    return found


def quiet_offset(stack: Stack, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """The output's length once it has stopped growing for `quiet` seconds (or at `timeout`), so that
    lines of requests made before this point, still on their way through the supervisor, are not counted."""
    deadline = time.monotonic() + timeout
    length = len(stack.process.output())
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = len(stack.process.output())
        if now == length:
            break
        length = now
    return length


def emf(lines: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [line for line in lines if "_aws" in line and metric in line]


def test_the_api_and_the_worker_write_emf_lines_for_a_published_task(stack: Stack) -> None:
    start = quiet_offset(stack)
    task_id = f"emf-{uuid.uuid4().hex[:8]}"

    stack.api.publish(task_id, SUCCEEDS)
    stack.api.publish(task_id, SUCCEEDS)  # a duplicate
    assert stack.api.wait_terminal(task_id, timeout=60)["status"] == "COMPLETED"

    def worker_metrics() -> list[dict[str, Any]] | None:
        lines = json_lines(stack.process.output()[start:], "worker")
        return lines if emf(lines, "TasksCompleted") and emf(lines, "EndToEndLatency") else None

    worker = wait_until(worker_metrics, 60, "the worker's EMF lines")
    api = json_lines(stack.process.output()[start:], "api")

    for line in emf(api, "TasksAccepted") + emf(api, "DuplicatePublishes") + emf(worker, "TasksCompleted"):
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "taskproc"
        assert directive["Dimensions"] == [["stage"], ["stage", "type"]]
        assert (line["stage"], line["type"]) == ("local", "simulate")
    # Each request flushes its own metrics once: one line for the publish, one for the duplicate.
    assert [line["TasksAccepted"] for line in emf(api, "TasksAccepted")] == [[1.0]]
    assert [line["DuplicatePublishes"] for line in emf(api, "DuplicatePublishes")] == [[1.0]]
    completed = emf(worker, "TasksCompleted")
    assert sum(sum(line["TasksCompleted"]) for line in completed) >= 1
    assert all(value >= 0 for line in emf(worker, "AttemptDuration") for value in line["AttemptDuration"])
    units = {
        metric["Name"]: metric["Unit"]
        for line in worker
        if "_aws" in line
        for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert units["TasksCompleted"] == "Count"
    assert units["AttemptDuration"] == units["EndToEndLatency"] == "Milliseconds"

    # The task's own log lines carry the function that ran it, as on Lambda.
    succeeded = [line for line in worker if line.get("message") == "succeeded" and line.get("taskId") == task_id]
    assert [line["function_name"] for line in succeeded] == ["taskproc-local-process_tasks"]
