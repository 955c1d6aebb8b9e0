"""The offline stack's metrics sink: the functions' EMF lines, answered as CloudWatch answers GetMetricData.

On AWS, CloudWatch Logs turns the EMF lines each function prints (chalicelib/metrics.py)
into metrics, and `GET /stats` reads them back with one GetMetricData request. Offline,
`make run`'s supervisor takes those lines out of the pieces' output (local/runner.py)
and appends them to a file; this sink reads that file and answers the embedded
endpoint's GetMetricData from it, so the API's request is the one it makes on AWS, down
to the client call. moto's own CloudWatch keeps only what PutMetricData sent and has no
percentiles; no library reads EMF back, so the few rules used here are written out:
each `CloudWatchMetrics` directive's dimension sets name one metric each, and a value
that is a list is that many datapoints at the blob's timestamp.

What it cannot promise: percentiles are exact (nearest rank over the raw values), where
CloudWatch's are estimates; a line that is not whole JSON (a log line cut into it) is
skipped.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Lines older than this are dropped: `GET /stats` asks for the last day.
KEPT_SECONDS = 25 * 3600
EMF_PREFIX = '{"_aws"'
# Set by `make run`'s supervisor for its pieces: the file it appends the EMF lines to.
METRICS_FILE_VARIABLE = "METRICS_FILE"


def is_emf(line: str) -> bool:
    """Whether an output line is an EMF blob (chalicelib/metrics.py writes each as one JSON line)."""
    return line.lstrip().startswith(EMF_PREFIX)


@dataclass(frozen=True)
class Datapoint:
    at: float  # epoch seconds
    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    value: float


def datapoints(blob: Mapping[str, Any]) -> Iterator[Datapoint]:
    """The datapoints one EMF blob stands for: each metric under each of its dimension sets."""
    meta = blob.get("_aws")
    if not isinstance(meta, dict):
        return
    at = float(meta.get("Timestamp", 0)) / 1000
    for directive in meta.get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace", "")
        for dimension_set in directive.get("Dimensions") or [[]]:
            dimensions = frozenset((name, str(blob.get(name, ""))) for name in dimension_set)
            for metric in directive.get("Metrics") or []:
                raw = blob.get(metric.get("Name"))
                for value in raw if isinstance(raw, list) else [raw]:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        yield Datapoint(at, namespace, metric["Name"], dimensions, float(value))


def _statistic(stat: str, values: list[float]) -> float:
    if stat == "Sum":
        return sum(values)
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "Average":
        return sum(values) / len(values)
    if stat == "SampleCount":
        return float(len(values))
    if stat.startswith("p"):
        ordered = sorted(values)
        rank = math.ceil(float(stat[1:]) / 100 * len(ordered))
        return ordered[min(max(rank, 1), len(ordered)) - 1]
    raise ValueError(f"statistic {stat!r} is not answered offline")


def _seconds(moment: datetime | str | float) -> float:
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if isinstance(moment, str):
        try:
            return float(moment)
        except ValueError:
            return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
    return float(moment)


class MetricsSink:
    """The datapoints of the EMF lines appended to `path`, read on each query from where the last stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._offset = 0
        # By (namespace, name, dimensions), in the order they were written: a query reads its own metric only.
        self._series: dict[tuple[str, str, frozenset[tuple[str, str]]], list[Datapoint]] = {}
        self._newest = 0.0

    def refresh(self) -> None:
        """Read the lines appended since the last read (all of them if the file was started again)."""
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return
            if size < self._offset:  # a new run truncated it
                self._offset, self._series, self._newest = 0, {}, 0.0
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read(size - self._offset)
            whole = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
            self._offset += whole
            for line in chunk[:whole].decode("utf-8", errors="replace").splitlines():
                try:
                    blob = json.loads(line)
                except ValueError:
                    continue
                if isinstance(blob, dict):
                    for point in datapoints(blob):
                        self._series.setdefault((point.namespace, point.name, point.dimensions), []).append(point)
                        self._newest = max(self._newest, point.at)
            oldest = self._newest - KEPT_SECONDS
            for key, points in self._series.items():
                if points and points[0].at < oldest:
                    self._series[key] = [point for point in points if point.at >= oldest]

    def get_metric_data(
        self, queries: list[dict[str, Any]], start: datetime | str | float, end: datetime | str | float
    ) -> list[dict[str, Any]]:
        """Each MetricStat query's periods from `start` (CloudWatch aligns them on the start), newest first,
        in moto's result form; a period without a datapoint is left out, as CloudWatch leaves it."""
        self.refresh()
        first, last = _seconds(start), _seconds(end)
        results = []
        for query in queries:
            stat = query.get("MetricStat")
            if stat is None:
                continue
            metric = stat["Metric"]
            dimensions = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            period = int(stat["Period"])
            with self._lock:
                points = list(self._series.get((metric["Namespace"], metric["MetricName"], dimensions), []))
            buckets: dict[int, list[float]] = {}
            for point in points:
                if first <= point.at < last:
                    buckets.setdefault(int((point.at - first) // period), []).append(point.value)
            newest_first = sorted(buckets, reverse=True)
            results.append(
                {
                    "id": query["Id"],
                    "label": query.get("Label") or f"{metric['MetricName']} {stat['Stat']}",
                    "values": [_statistic(stat["Stat"], buckets[n]) for n in newest_first],
                    "timestamps": [datetime.fromtimestamp(first + n * period, UTC) for n in newest_first],
                    "status_code": "Complete",
                }
            )
        return results


def install(path: Path) -> MetricsSink:
    """Answer the embedded endpoint's GetMetricData from the EMF lines in `path` (call before it serves).

    Raises:
        RuntimeError: moto's CloudWatch backend no longer has the method this replaces.
    """
    from moto.cloudwatch.models import CloudWatchBackend

    original = getattr(CloudWatchBackend, "get_metric_data", None)
    if original is None:
        raise RuntimeError("moto's CloudWatchBackend has no get_metric_data: local/metrics_sink.py needs updating")
    sink = MetricsSink(path)

    @functools.wraps(original)
    def answered(
        backend: Any, queries: list[dict[str, Any]], start_time: Any, end_time: Any, scan_by: str = ""
    ) -> list[dict[str, Any]]:
        return sink.get_metric_data(queries, start_time, end_time)

    CloudWatchBackend.get_metric_data = answered  # type: ignore[method-assign]
    logger.info("GetMetricData is answered from the EMF lines in %s", path)
    return sink
