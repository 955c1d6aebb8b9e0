"""The EMF lines: namespace, names, units, dimension sets and values, one line per task type per flush."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.local import LambdaContext

from chalicelib import metrics
from chalicelib.metrics import COLD_START, NAMESPACE, NO_TYPE, Metric, count, flush, flushed, milliseconds

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_metrics(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Each test starts with nothing accumulated, on stage `test`, before its process's first invocation."""
    flush()
    capsys.readouterr()
    monkeypatch.setenv("STAGE", "test")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    monkeypatch.setattr(metrics, "_started", False)
    yield
    flush()


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def definition(line: dict[str, Any]) -> dict[str, Any]:
    [directive] = line["_aws"]["CloudWatchMetrics"]
    return dict(directive)


def test_one_flush_writes_one_line_per_task_type_with_both_dimension_sets(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        count(Metric.ATTEMPTS_STARTED, "simulate")
    count(Metric.COMPLETED, "simulate", 2)
    milliseconds(Metric.ATTEMPT_DURATION, "simulate", 12.5)
    milliseconds(Metric.ATTEMPT_DURATION, "simulate", 40)
    count(Metric.POISON, None)

    flush()

    lines = {line["type"]: line for line in emf_lines(capsys)}
    assert set(lines) == {"simulate", NO_TYPE}
    simulate = lines["simulate"]
    assert definition(simulate)["Namespace"] == NAMESPACE == "taskproc"
    assert definition(simulate)["Dimensions"] == [["stage"], ["stage", "type"]]
    assert simulate["stage"] == "test"
    assert {m["Name"]: m["Unit"] for m in definition(simulate)["Metrics"]} == {
        "AttemptsStarted": "Count",
        "TasksCompleted": "Count",
        "AttemptDuration": "Milliseconds",
    }
    assert simulate["AttemptsStarted"] == [3.0]  # counts are summed: one value per line
    assert simulate["TasksCompleted"] == [2.0]
    assert simulate["AttemptDuration"] == [12.5, 40.0]  # durations keep every value, for percentiles
    assert lines[NO_TYPE]["PoisonMessages"] == [1.0]
    assert isinstance(simulate["_aws"]["Timestamp"], int)


def test_a_second_flush_writes_only_what_came_after_the_first(capsys: pytest.CaptureFixture[str]) -> None:
    count(Metric.ACCEPTED, "simulate")
    flush()
    count(Metric.DUPLICATES, "simulate")
    flush()

    first, second = emf_lines(capsys)
    assert "TasksAccepted" in first and "DuplicatePublishes" not in first
    assert "DuplicatePublishes" in second and "TasksAccepted" not in second


def test_a_flush_with_nothing_to_write_writes_nothing_and_does_not_warn(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flush()

    assert capsys.readouterr().out == ""


def test_counts_from_many_threads_are_all_kept(capsys: pytest.CaptureFixture[str]) -> None:
    threads, each = 8, 500
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait(timeout=30)
        for _ in range(each):
            count(Metric.ATTEMPTS_STARTED, "checksum")
            milliseconds(Metric.END_TO_END_LATENCY, "checksum", 1)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    flush()

    lines = emf_lines(capsys)
    assert sum(sum(line.get("AttemptsStarted", [])) for line in lines) == threads * each
    assert sum(len(line.get("EndToEndLatency", [])) for line in lines) == threads * each


def test_more_durations_than_one_line_holds_are_split_over_lines_all_with_both_dimension_sets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_print(*_args: Any, **_kwargs: Any) -> None:
        # Powertools prints a full blob by itself, in two writes another thread's line can split.
        raise AssertionError("Powertools printed a line by itself")

    monkeypatch.setattr("builtins.print", no_print)
    for n in range(250):
        milliseconds(Metric.ATTEMPT_DURATION, "simulate", n)
    count(Metric.COMPLETED, "simulate", 250)

    flush()

    lines = emf_lines(capsys)
    assert len(lines) == 3
    assert all(definition(line)["Dimensions"] == [["stage"], ["stage", "type"]] for line in lines)
    assert sorted(v for line in lines for v in line["AttemptDuration"]) == [float(n) for n in range(250)]
    assert sum(sum(line.get("TasksCompleted", [])) for line in lines) == 250


def test_a_count_of_a_duration_and_a_duration_of_a_count_are_refused() -> None:
    with pytest.raises(ValueError, match="AttemptDuration"):
        count(Metric.ATTEMPT_DURATION, "simulate")
    with pytest.raises(ValueError, match="TasksCompleted"):
        milliseconds(Metric.COMPLETED, "simulate", 5)


def test_without_a_stage_variable_the_stage_is_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STAGE")
    count(Metric.OPERATOR_RETRIES, "simulate")
    flush()

    [line] = emf_lines(capsys)
    assert line["stage"] == "unknown"


def test_every_stage_names_itself_in_its_environment() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert {name: stage["environment_variables"].get("STAGE") for name, stage in config["stages"].items()} == {
        name: name for name in config["stages"]
    }


def test_disabling_powertools_metrics_drops_the_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    count(Metric.ACCEPTED, "simulate")
    flush()

    assert capsys.readouterr().out == ""


def test_a_handler_flushes_once_when_it_returns_and_when_it_raises(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(event: Any, _context: Any) -> None:
        for _ in range(event["tasks"]):
            count(Metric.TASKS_FAILED, "simulate")
        if event.get("fail"):
            raise RuntimeError("batch failed")

    flushed(handler)({"tasks": 10}, None)
    with pytest.raises(RuntimeError):
        flushed(handler)({"tasks": 2, "fail": True}, None)

    assert [line["TasksFailed"] for line in emf_lines(capsys)] == [[10.0], [2.0]]


def test_a_flush_that_fails_is_logged_and_the_handlers_answer_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_blobs(*_args: Any) -> Any:
        raise RuntimeError("cannot serialize")

    monkeypatch.setattr(metrics, "_blobs", broken_blobs)

    def handler(_event: Any, _context: Any) -> str:
        count(Metric.COMPLETED, "simulate")
        return "batch done"

    assert flushed(handler)({}, None) == "batch done"

    [line] = emf_lines(capsys)
    assert (line["level"], line["message"], line["exception_name"]) == ("ERROR", "metrics_not_flushed", "RuntimeError")


def test_the_first_invocation_with_a_context_also_publishes_a_cold_start(capsys: pytest.CaptureFixture[str]) -> None:
    context = LambdaContext("taskproc-test-process_tasks", memory_size=128)

    def handler(_event: Any, _context: Any) -> None:
        count(Metric.ATTEMPTS_STARTED, "simulate")

    flushed(handler)({}, context)
    flushed(handler)({}, context)

    lines = emf_lines(capsys)
    cold = [line for line in lines if COLD_START in line]
    assert len(cold) == 1
    assert definition(cold[0])["Dimensions"] == [["stage", "function_name"]]
    assert (cold[0]["stage"], cold[0]["function_name"], cold[0][COLD_START]) == (
        "test",
        "taskproc-test-process_tasks",
        [1.0],
    )
    assert len(lines) == 3  # two invocations' metrics and the one cold start


def test_provisioned_concurrency_is_not_a_cold_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    flushed(lambda _event, _context: None)({}, LambdaContext("f", memory_size=128))

    assert capsys.readouterr().out == ""
