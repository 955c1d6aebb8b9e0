"""The throughput's queries and its assembly from GetMetricData's answers, through a stubbed CloudWatch client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chalicelib.operate.throughput import (
    HOUR,
    MAX_DATAPOINTS,
    MAX_QUERIES,
    MINUTE,
    MINUTE_POINTS,
    SCOPE_POINTS,
    TOTAL,
    ThroughputPlan,
    Window,
)
from chalicelib.tasks.queue import QueueAges

NOW = 1_796_000_000.0 + 30.5  # 30.5 s into a minute
WINDOW = Window.at(NOW)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def client() -> Any:
    return boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def plan(*types: str) -> ThroughputPlan:
    return ThroughputPlan("taskproc", "dev", types)


def query_id(p: ThroughputPlan, scope: str, metric: str, stat: str) -> str:
    return next(
        q["Id"]
        for q in p.queries()
        if q["MetricStat"]["Metric"]["MetricName"] == metric
        and q["MetricStat"]["Stat"] == stat
        and {d["Name"]: d["Value"] for d in q["MetricStat"]["Metric"]["Dimensions"]}.get("type", TOTAL) == scope
    )


def test_the_window_ends_with_the_current_minute_and_the_current_hour() -> None:
    assert WINDOW.end % MINUTE == 0 and WINDOW.end - MINUTE <= NOW < WINDOW.end
    assert WINDOW.first_minute == WINDOW.end - 60 * MINUTE
    assert WINDOW.first_hour % HOUR == 0 and WINDOW.first_hour + 23 * HOUR <= NOW < WINDOW.first_hour + 24 * HOUR
    assert WINDOW.start == WINDOW.end - 24 * HOUR <= WINDOW.first_hour


def test_each_scope_asks_four_sums_per_minute_and_six_percentiles_per_hour_under_its_dimensions() -> None:
    queries = plan("simulate", "checksum").queries()

    assert len(queries) == 3 * 10 and len({q["Id"] for q in queries}) == 30
    dimensions = {tuple(d["Value"] for d in q["MetricStat"]["Metric"]["Dimensions"]) for q in queries}
    assert dimensions == {("dev",), ("dev", "checksum"), ("dev", "simulate")}
    sums = [q for q in queries if q["MetricStat"]["Stat"] == "Sum"]
    assert {q["MetricStat"]["Period"] for q in sums} == {60} and len(sums) == 12
    percentiles = {q["MetricStat"]["Stat"] for q in queries if q["MetricStat"]["Period"] == HOUR}
    assert percentiles == {"p50", "p95", "p99"}


def test_a_stage_with_more_types_than_one_response_holds_keeps_the_total_and_names_the_types_left_out() -> None:
    many = plan(*(f"type{n:02d}" for n in range(40)))
    queries = many.queries()

    assert many.scopes[0] == TOTAL and many.left_out
    assert len(many.scopes) + len(many.left_out) == 41
    assert len(queries) <= MAX_QUERIES
    assert len(many.scopes) * SCOPE_POINTS <= MAX_DATAPOINTS < (len(many.scopes) + 1) * SCOPE_POINTS


def test_series_and_latency_are_assembled_from_one_stubbed_get_metric_data_answer() -> None:
    p = plan("simulate")
    completed = query_id(p, TOTAL, "TasksCompleted", "Sum")
    failed = query_id(p, "simulate", "TasksFailed", "Sum")
    p95 = query_id(p, TOTAL, "EndToEndLatency", "p95")
    end = WINDOW.end
    answer = {
        "MetricDataResults": [
            {"Id": "q0", "Values": [12.0], "Timestamps": [at(end - MINUTE)], "StatusCode": "Complete"},
            {
                "Id": completed,
                # newest first, as ScanBy=TimestampDescending answers
                "Values": [3.0, 2.0, 5.0, 7.0, 100.0],
                "Timestamps": [
                    at(end - MINUTE),  # the current minute: the last bucket
                    at(end - 60 * MINUTE),  # the oldest minute of the hour: the first bucket
                    at(end - 61 * MINUTE),  # older than the hour: per hour only
                    at(WINDOW.first_hour),  # the first hour's first minute
                    at(WINDOW.first_hour - MINUTE),  # before the day's first hour: nowhere
                ],
                "StatusCode": "Complete",
            },
            {"Id": failed, "Values": [4.0], "Timestamps": [at(end - 2 * MINUTE)], "StatusCode": "Complete"},
            {
                "Id": p95,
                "Values": [850.25, 999.0],
                "Timestamps": [at(end - HOUR), at(end - 2 * HOUR)],
                "StatusCode": "Complete",
            },
        ],
    }
    cloudwatch = client()
    stubber = Stubber(cloudwatch)
    stubber.add_response(
        "get_metric_data",
        answer,
        {
            "MetricDataQueries": ANY,
            "StartTime": at(WINDOW.start),
            "EndTime": at(WINDOW.end),
            "ScanBy": "TimestampDescending",
        },
    )
    ages = QueueAges(lambda: cloudwatch, lambda: NOW)

    with stubber:
        figures = ages.read(["tasks"], [], "taskproc", "dev", p)
    stubber.assert_no_pending_responses()

    throughput = figures.throughput
    assert throughput is not None and figures.ages == {"tasks": 12.0}
    minute, hour = throughput.perMinute, throughput.perHour
    assert minute.start == at(WINDOW.first_minute).isoformat().replace("+00:00", "Z") and minute.stepSeconds == 60
    total = minute.series[TOTAL].completed
    assert len(total) == 60 and (total[0], total[-1], sum(total)) == (2, 3, 5)
    assert minute.series["simulate"].failed[-2] == 4 and sum(minute.series["simulate"].failed) == 4
    assert minute.series["simulate"].completed == [0] * 60  # no answer for that query: zeros
    per_hour = hour.series[TOTAL].completed
    assert (len(per_hour), hour.stepSeconds, per_hour[0]) == (24, 3600, 7)
    assert sum(per_hour) == 3 + 2 + 5 + 7  # the point before the first hour is left out
    assert throughput.latency[TOTAL].endToEndMs.p95 == 850.25  # the last hour's, not the hour before
    assert throughput.latency[TOTAL].endToEndMs.p50 is None
    assert throughput.latency["simulate"].attemptMs.p99 is None


def test_one_request_per_refresh_then_the_answer_is_kept_for_a_minute() -> None:
    cloudwatch = client()
    calls: list[str] = []
    cloudwatch.meta.events.register("before-parameter-build.cloudwatch", lambda model, **_: calls.append(model.name))
    now = [NOW]
    ages = QueueAges(lambda: cloudwatch, lambda: now[0])
    stubber = Stubber(cloudwatch)
    for _ in range(2):
        stubber.add_response("get_metric_data", {"MetricDataResults": []}, None)

    with stubber:
        first = ages.read(["tasks"], ["TasksAdopted"], "taskproc", "dev", plan("simulate"))
        now[0] += 59
        again = ages.read(["tasks"], ["TasksAdopted"], "taskproc", "dev", plan("simulate"))
        now[0] += 2
        ages.read(["tasks"], ["TasksAdopted"], "taskproc", "dev", plan("simulate"))

    assert calls == ["GetMetricData", "GetMetricData"]
    assert again is first
    assert first.throughput is not None and sum(first.throughput.perHour.series[TOTAL].accepted) == 0


def test_a_refused_request_leaves_the_throughput_out_and_is_not_kept() -> None:
    cloudwatch = client()
    stubber = Stubber(cloudwatch)
    stubber.add_client_error("get_metric_data", "Throttling", "Rate exceeded")
    ages = QueueAges(lambda: cloudwatch, lambda: NOW)

    with stubber:
        figures = ages.read(["tasks"], [], "taskproc", "dev", plan("simulate"))

    assert figures.throughput is None and figures.ages == {}


@pytest.mark.parametrize("types", [(), ("simulate",), tuple(f"t{n}" for n in range(15))])
def test_the_whole_request_stays_inside_one_response(types: tuple[str, ...]) -> None:
    reserved_queries, reserved_points = 4 + 3, 4 * QueueAges.AGE_POINTS + 3 * QueueAges.SUM_POINTS
    p = ThroughputPlan("taskproc", "dev", types, reserved_queries, reserved_points)
    assert len(p.queries()) + reserved_queries <= MAX_QUERIES
    assert len(p.scopes) * SCOPE_POINTS + reserved_points <= MAX_DATAPOINTS
    assert MINUTE_POINTS == 1441
