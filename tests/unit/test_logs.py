"""The task event lines: Powertools JSON with structured keys, the task's keys bound per record and per thread."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from chalice.local import LambdaContext

from chalicelib.logs import log_event, task_scope, with_lambda_context


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The JSON lines written to stdout since the last call."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_an_event_is_one_json_line_with_its_fields_as_keys_and_the_caller_as_location(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_event("started", taskId="t-1", attempt=2, lastError=None)

    [line] = lines(capsys)
    assert line["message"] == "started"
    assert line["level"] == "INFO"
    assert line["service"] == "taskproc"
    assert (line["taskId"], line["attempt"]) == ("t-1", 2)
    assert "lastError" not in line  # None is left out
    assert line["location"].startswith("test_an_event_is_one_json_line")


def test_a_field_named_like_a_log_record_attribute_is_renamed_rather_than_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log_event("dead_lettered", logging.WARNING, name="x", message="y")

    [line] = lines(capsys)
    assert (line["level"], line["message"]) == ("WARNING", "dead_lettered")
    assert (line["field_name"], line["field_message"]) == ("x", "y")


def test_task_events_at_info_are_written_once_after_chalice_creates_its_app_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import app  # noqa: F401 - creating the Chalice app would set its logger to ERROR and add its own handler

    log_event("succeeded", taskId="t")

    assert [line["message"] for line in lines(capsys)] == ["succeeded"]


def test_task_scope_binds_the_task_id_as_correlation_id_and_the_attempt_until_it_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with task_scope("t-7", attempt=3):
        log_event("started")
    log_event("batch_done")

    inside, after = lines(capsys)
    assert (inside["correlation_id"], inside["attempt"]) == ("t-7", 3)
    assert "correlation_id" not in after and "attempt" not in after


def test_a_nested_scope_adds_the_attempt_and_gives_the_outer_scope_its_keys_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with task_scope("t-8"):
        log_event("received")
        with task_scope("t-8", attempt=1):
            log_event("started")
        log_event("settled")

    received, started, settled = lines(capsys)
    assert (received["correlation_id"], "attempt" in received) == ("t-8", False)
    assert (started["correlation_id"], started["attempt"]) == ("t-8", 1)
    assert (settled["correlation_id"], "attempt" in settled) == ("t-8", False)


def test_records_run_at_once_in_a_pool_never_carry_each_others_keys(capsys: pytest.CaptureFixture[str]) -> None:
    # Fewer threads than records: each thread runs several records in turn, as a batch's pool does,
    # and the barrier makes the records of one round log while the others are inside their scopes.
    workers, records = 4, 16
    barrier = threading.Barrier(workers)

    def record(n: int) -> None:
        with task_scope(f"task-{n}", attempt=n):
            log_event("started", taskId=f"task-{n}")
            barrier.wait(timeout=30)
            log_event("succeeded", taskId=f"task-{n}")
        log_event("between_records", record=n)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(record, range(records)))

    written = lines(capsys)
    scoped = [line for line in written if line["message"] != "between_records"]
    assert len(scoped) == 2 * records
    assert all(line["correlation_id"] == line["taskId"] == f"task-{line['attempt']}" for line in scoped)
    unscoped = [line for line in written if line["message"] == "between_records"]
    assert len(unscoped) == records
    assert not [line for line in unscoped if "correlation_id" in line or "attempt" in line]


def test_a_handler_with_a_lambda_context_logs_the_function_and_request(capsys: pytest.CaptureFixture[str]) -> None:
    context = LambdaContext("taskproc-dev-process_tasks", memory_size=256)

    def handler(_event: Any, _context: Any) -> str:
        log_event("started")
        return "done"

    assert with_lambda_context(handler)({}, context) == "done"

    [line] = lines(capsys)
    assert line["function_name"] == "taskproc-dev-process_tasks"
    assert line["function_request_id"] == context.aws_request_id
    assert line["function_memory_size"] == 256
    assert isinstance(line["cold_start"], bool)


def test_a_handler_called_without_a_context_still_runs(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(event: Any, _context: Any) -> Any:
        log_event("started")
        return event

    assert with_lambda_context(handler)({"n": 1}, None) == {"n": 1}
    assert [line["message"] for line in lines(capsys)] == ["started"]
