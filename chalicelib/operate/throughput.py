"""`GET /stats`' throughput: taskproc's own metrics per minute and per hour, and latency percentiles.

The figures come from the EMF metrics the functions already write (chalicelib/metrics.py),
read back with the same GetMetricData request that reads the queues' ages
(chalicelib/tasks/queue.py's QueueAges): one request per refresh, whatever the number of task
types. Offline, the embedded endpoint answers that request from the EMF lines the
stack's pieces printed (local/metrics_sink.py).

One request has one time range, so every query spans the last 24 hours, ending at the end
of the current minute:

- counts are asked per minute (Period 60) and summed here into hours: 1,441 datapoints per
  series, the price of one request instead of two;
- latency percentiles are asked per hour (Period 3600); CloudWatch aligns the periods on the
  request's start, so the newest period is exactly the last 60 minutes.

GetMetricData answers at most 500 queries and 100,800 datapoints in one response (more would
need a second page, a second request). A task type costs 4 count series and 6 percentile
series, about 5,900 datapoints, so a stage with more registered types than fit gets its total
and the first types' series; `ThroughputPlan.left_out` names the others and `GET /stats`'
sources say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.metrics import Metric
from chalicelib.operate.views import Latency, Percentiles, Series, SeriesWindow, Throughput

TOTAL = "total"
# The contract's names for the count series, and the metric each sums.
COUNTED = {
    "completed": Metric.COMPLETED,
    "failed": Metric.TASKS_FAILED,
    "retried": Metric.RETRIES_SCHEDULED,
    "accepted": Metric.ACCEPTED,
}
TIMED = {"attemptMs": Metric.ATTEMPT_DURATION, "endToEndMs": Metric.END_TO_END_LATENCY}
PERCENTILES = ("p50", "p95", "p99")
MINUTE = 60
HOUR = 3600
MINUTES = 60  # per-minute buckets: the last hour
HOURS = 24  # per-hour buckets: the last day
WINDOW_SECONDS = HOURS * HOUR
# GetMetricData's limits for one response (CloudWatch API reference, GetMetricData).
MAX_QUERIES = 500
MAX_DATAPOINTS = 100_800
MINUTE_POINTS = WINDOW_SECONDS // MINUTE + 1  # a range that is not on the minute touches one more
HOUR_POINTS = HOURS + 1
SCOPE_QUERIES = len(COUNTED) + len(TIMED) * len(PERCENTILES)
SCOPE_POINTS = len(COUNTED) * MINUTE_POINTS + len(TIMED) * len(PERCENTILES) * HOUR_POINTS

Points = list[tuple[datetime, float]]


def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """The times of one refresh, in epoch seconds: the request ends at the end of the current minute."""

    end: int

    @classmethod
    def at(cls, now: float) -> Window:
        return cls(int(now // MINUTE) * MINUTE + MINUTE)

    @property
    def start(self) -> int:
        return self.end - WINDOW_SECONDS

    @property
    def first_minute(self) -> int:
        return self.end - MINUTES * MINUTE

    @property
    def first_hour(self) -> int:
        # The current hour is the last bucket, partial; it ends at or after the request's end.
        hour_end = -(-self.end // HOUR) * HOUR
        return hour_end - HOURS * HOUR


@dataclass(frozen=True)
class ThroughputPlan:
    """The throughput queries of one GetMetricData request, and the assembly of their answers.

    `reserved_queries` and `reserved_points` are what the rest of the request (the queues'
    ages, the repairs' sums) takes of the response's limits.
    """

    namespace: str
    stage: str
    types: Sequence[str]
    reserved_queries: int = 0
    reserved_points: int = 0
    scopes: list[str] = field(init=False)
    left_out: list[str] = field(init=False)

    def __post_init__(self) -> None:
        fits = min(
            (MAX_QUERIES - self.reserved_queries) // SCOPE_QUERIES,
            (MAX_DATAPOINTS - self.reserved_points) // SCOPE_POINTS,
        )
        wanted = [TOTAL, *sorted(set(self.types) - {TOTAL})]
        object.__setattr__(self, "scopes", wanted[: max(fits, 0)])
        object.__setattr__(self, "left_out", wanted[max(fits, 0) :])

    def window(self, now: float) -> Window:
        """The times of the request made at `now`."""
        return Window.at(now)

    def _metric(self, scope: int, metric: Metric) -> dict[str, Any]:
        dimensions = [{"Name": "stage", "Value": self.stage}]
        if self.scopes[scope] != TOTAL:
            dimensions.append({"Name": "type", "Value": self.scopes[scope]})
        return {"Namespace": self.namespace, "MetricName": metric.value, "Dimensions": dimensions}

    def queries(self) -> list[dict[str, Any]]:
        """The MetricDataQueries: `m<scope>_<series>` per-minute sums, `p<scope>_<timing>_<percentile>` hourly."""
        found: list[dict[str, Any]] = []
        for s in range(len(self.scopes)):
            for c, metric in enumerate(COUNTED.values()):
                stat = {"Metric": self._metric(s, metric), "Period": MINUTE, "Stat": "Sum"}
                found.append({"Id": f"m{s}_{c}", "MetricStat": stat})
            for t, metric in enumerate(TIMED.values()):
                for p, percentile in enumerate(PERCENTILES):
                    stat = {"Metric": self._metric(s, metric), "Period": HOUR, "Stat": percentile}
                    found.append({"Id": f"p{s}_{t}_{p}", "MetricStat": stat})
        return found

    def assemble(self, results: Mapping[str, Points], window: Window) -> Throughput:
        """The throughput from GetMetricData's results by query id; a query without an answer reads as none."""
        per_minute: dict[str, Series] = {}
        per_hour: dict[str, Series] = {}
        latency: dict[str, Latency] = {}
        for s, scope in enumerate(self.scopes):
            minutes: dict[str, list[int]] = {}
            hours: dict[str, list[int]] = {}
            for c, name in enumerate(COUNTED):
                points = results.get(f"m{s}_{c}", [])
                minutes[name] = _buckets(points, window.first_minute, MINUTE, MINUTES)
                hours[name] = _buckets(points, window.first_hour, HOUR, HOURS)
            per_minute[scope] = Series(**minutes)
            per_hour[scope] = Series(**hours)
            timings = {}
            for t, name in enumerate(TIMED):
                values = {
                    percentile: _last_hour(results.get(f"p{s}_{t}_{p}", []), window)
                    for p, percentile in enumerate(PERCENTILES)
                }
                timings[name] = Percentiles(**values)
            latency[scope] = Latency(**timings)
        return Throughput(
            perMinute=SeriesWindow(start=_stamp(window.first_minute), stepSeconds=MINUTE, series=per_minute),
            perHour=SeriesWindow(start=_stamp(window.first_hour), stepSeconds=HOUR, series=per_hour),
            latency=latency,
        )


def _buckets(points: Points, first: int, step: int, count: int) -> list[int]:
    """The datapoints summed into `count` buckets of `step` seconds from `first`, oldest first."""
    buckets = [0.0] * count
    for stamp, value in points:
        n = (int(stamp.timestamp()) - first) // step
        if 0 <= n < count:
            buckets[n] += value
    return [round(value) for value in buckets]


def _last_hour(points: Points, window: Window) -> float | None:
    """The value of the newest period, which is the last 60 minutes; None when it has no datapoint.

    A period that starts more than an hour before the end is an older hour, never taken.
    """
    recent = [(stamp, value) for stamp, value in points if int(stamp.timestamp()) > window.end - 2 * HOUR]
    if not recent:
        return None
    return round(float(max(recent)[1]), 3)
