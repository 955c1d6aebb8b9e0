"""The offline metrics sink: real EMF lines from chalicelib.metrics, answered as GetMetricData offline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import chalicelib.handlers  # noqa: F401 - registers the built-in types, which the `type` dimension names
from chalicelib import metrics
from chalicelib.metrics import Metric
from chalicelib.operate.throughput import TOTAL, ThroughputPlan
from chalicelib.tasks.queue import QueueAges
from local.launcher import clean_environment, free_port, launch
from local.metrics_sink import METRICS_FILE_VARIABLE, MetricsSink, datapoints, is_emf


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What chalicelib.metrics writes for three completed tasks of `simulate` and one failed, with timings."""
    capsys.readouterr()
    metrics.count(Metric.ACCEPTED, "simulate", 4)
    metrics.count(Metric.COMPLETED, "simulate", 3)
    metrics.count(Metric.TASKS_FAILED, "simulate")
    for value in range(1, 101):  # 1..100 ms: p50 is 50, p95 95, p99 99
        metrics.milliseconds(Metric.ATTEMPT_DURATION, "simulate", value)
    metrics.flush()
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines and all(is_emf(line) for line in lines)
    return lines


def test_an_emf_blob_stands_for_each_metric_under_each_dimension_set(capsys: pytest.CaptureFixture[str]) -> None:
    points = [point for line in emf_lines(capsys) for point in datapoints(json.loads(line))]

    completed = [p for p in points if p.name == "TasksCompleted"]
    assert {p.dimensions for p in completed} == {
        frozenset({("stage", metrics.current_stage())}),
        frozenset({("stage", metrics.current_stage()), ("type", "simulate")}),
    }
    assert [p.value for p in completed] == [3.0, 3.0]
    assert len([p for p in points if p.name == "AttemptDuration"]) == 2 * 100
    assert not is_emf('{"level":"INFO","message":"accepted"}')


def test_the_sink_reads_what_was_appended_since_its_last_read_and_skips_a_torn_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = emf_lines(capsys)
    path.write_text(lines[0] + "\n" + "not json\n" + '{"_aws": {"Timest', encoding="utf-8")
    sink = MetricsSink(path)
    plan = ThroughputPlan("taskproc", metrics.current_stage(), ["simulate"])
    window = plan.window(time.time())

    def completed() -> int:
        results = sink.get_metric_data(plan.queries(), window.start, window.end)
        points = {r["id"]: list(zip(r["timestamps"], r["values"], strict=True)) for r in results}
        return sum(plan.assemble(points, window).perMinute.series[TOTAL].completed)

    assert completed() == 3
    with path.open("a", encoding="utf-8") as file:
        file.write('amp": 1}}\n' + lines[0] + "\n")  # the torn line ends; another blob follows
    assert completed() == 6


@pytest.fixture
def endpoint_with_sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`python -m local aws` as `make run` starts it: METRICS_FILE names the file the sink reads."""
    path = tmp_path / "metrics.jsonl"
    path.touch()
    port = free_port()
    env = clean_environment({"AWS_PORT": str(port), METRICS_FILE_VARIABLE: str(path)})
    process = launch("aws", env, tmp_path / "aws.log")
    try:
        yield f"http://127.0.0.1:{port}", path
    finally:
        process.stop()


def test_the_embedded_endpoint_answers_get_metric_data_from_real_emf_lines(
    endpoint_with_sink: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, path = endpoint_with_sink
    path.write_text("".join(line + "\n" for line in emf_lines(capsys)), encoding="utf-8")
    cloudwatch: Any = boto3.client(
        "cloudwatch",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stage = metrics.current_stage()
    ages = QueueAges(lambda: cloudwatch)
    figures = ages.read(
        ["taskproc-local-tasks"], ["TasksAdopted"], "taskproc", stage, ThroughputPlan("taskproc", stage, ["simulate"])
    )

    throughput = figures.throughput
    assert throughput is not None
    for scope in (TOTAL, "simulate"):
        minute = throughput.perMinute.series[scope]
        # summed: the minute may have turned between the lines and the request
        assert (sum(minute.completed), sum(minute.failed), sum(minute.accepted)) == (3, 1, 4)
        assert max(minute.completed[-2:]) == 3  # in the current minute or the one before
        assert sum(throughput.perHour.series[scope].completed) == 3
        attempt = throughput.latency[scope].attemptMs
        assert (attempt.p50, attempt.p95, attempt.p99) == (50.0, 95.0, 99.0)
        assert throughput.latency[scope].endToEndMs.p50 is None  # none was written
    assert figures.ages == {} and figures.sums == {}  # no queue age offline; no repair happened
