"""The offline stack writes the same EMF lines and JSON log lines as Lambda would: the log lines in its
output, the EMF lines in its metrics file (local/metrics_sink.py), where the embedded endpoint reads them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
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


def metrics_lines(stack: Stack) -> list[dict[str, Any]]:
    """The EMF blobs `make run`'s supervisor took out of the pieces' output, one JSON object a line."""
    path = Path(stack.env["METRICS_FILE"])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def quiet_offset(stack: Stack, quiet: float = 1.0, timeout: float = 30.0) -> int:
    """The metrics file's line count once it has stopped growing for `quiet` seconds (or at `timeout`), so
    that lines of requests made before this point, still on their way through the supervisor, are not counted."""
    deadline = time.monotonic() + timeout
    length = len(metrics_lines(stack))
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = len(metrics_lines(stack))
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
        lines = metrics_lines(stack)[start:]
        return lines if emf(lines, "TasksCompleted") and emf(lines, "EndToEndLatency") else None

    # The API's lines (TasksAccepted, DuplicatePublishes) and the worker's share the file, as they
    # would share CloudWatch.
    worker = api = wait_until(worker_metrics, 60, "the worker's EMF lines")

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

    # The terminal keeps the log lines, readable, and no EMF blob; the task's own log lines carry the
    # function that ran it, as on Lambda.
    terminal = stack.process.output()
    assert not [line for line in terminal.splitlines() if '{"_aws"' in line]
    logs = json_lines(terminal, "worker")
    succeeded = [line for line in logs if line.get("message") == "succeeded" and line.get("taskId") == task_id]
    assert [line["function_name"] for line in succeeded] == ["taskproc-local-process_tasks"]
