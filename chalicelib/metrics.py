"""The metric names and the one place they are emitted: CloudWatch embedded metric format (EMF) lines.

Namespace `taskproc`; every metric is published under two fixed dimension sets,
`[stage]` and `[stage, type]`. A task id is never a dimension (each would be a new
metric). Metrics accumulate as the work happens, from any thread, and `flush` writes
them to stdout once per invocation: one line per task type seen, never one per task.
CloudWatch Logs turns the lines into metrics; no request is made to CloudWatch.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.metrics import EphemeralMetrics
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.metric_properties import MetricUnit

from chalicelib.logs import logger
from chalicelib.registry import REGISTRY

NAMESPACE = "taskproc"
# A metric that belongs to no known task type (a poison message, an unreadable dead letter).
NO_TYPE = "none"
# Each stage's environment in .chalice/config.json names the stage; Chalice sets no such variable itself.
STAGE_VARIABLE = "STAGE"
UNKNOWN_STAGE = "unknown"
# Once per container, dimensions [stage, function_name], as Powertools' own cold-start metric.
COLD_START = "ColdStart"
# Powertools prints a blob by itself when one metric reaches MAX_METRICS values; a blob holds fewer.
_VALUES_PER_BLOB = MAX_METRICS - 1


class Metric(StrEnum):
    ACCEPTED = "TasksAccepted"
    DUPLICATES = "DuplicatePublishes"
    UNIQUE_DUPLICATES = "UniqueKeyDuplicates"  # publishes held back because another task holds their uniqueKey
    ATTEMPTS_STARTED = "AttemptsStarted"
    COMPLETED = "TasksCompleted"
    ATTEMPTS_FAILED = "AttemptsFailed"
    RETRIES_SCHEDULED = "RetriesScheduled"
    TASKS_FAILED = "TasksFailed"
    PERMANENT_FAILURES = "PermanentFailures"
    TASKS_CANCELLED = "TasksCancelled"
    TASKS_EXPIRED = "TasksExpired"  # cancelled because their expiry passed before they started; also counted above
    DEAD_LETTERS = "DeadLettersRecorded"
    POISON = "PoisonMessages"
    EXPIRED_ATTEMPTS = "ExpiredAttempts"
    OPERATOR_RETRIES = "OperatorRetries"
    OPERATOR_CANCELS = "OperatorCancels"
    ATTEMPT_DURATION = "AttemptDuration"  # milliseconds
    END_TO_END_LATENCY = "EndToEndLatency"  # milliseconds, created to terminal
    # Repairs of the send-then-put publish: a consumer stored a task whose publish died after
    # its send (TasksAdopted), a repeat publish re-sent a task left without its message
    # (TasksRedispatched), a retry's message arrived before its write and waited (RetriesAwaited).
    TASKS_ADOPTED = "TasksAdopted"
    TASKS_REDISPATCHED = "TasksRedispatched"
    RETRIES_AWAITED = "RetriesAwaited"
    # Deliveries that flow control held back (a pause, a cap, a rate): renewed, no attempt spent.
    FLOW_DEFERRED = "FlowDeferred"
    # Messages of tasks that run at a time, sent by the ticker when their timers came due.
    TIMERS_DISPATCHED = "TimersDispatched"


DURATIONS = frozenset({Metric.ATTEMPT_DURATION, Metric.END_TO_END_LATENCY})

_lock = threading.Lock()
# Per task type: counts are summed (one value per metric per line); durations keep every value,
# so that CloudWatch can compute percentiles.
_counts: defaultdict[str, defaultdict[Metric, float]] = defaultdict(lambda: defaultdict(float))
_durations: defaultdict[str, defaultdict[Metric, list[float]]] = defaultdict(lambda: defaultdict(list))
_cold_start: str | None = None  # the function whose first invocation is running, until flushed
_started = False


def _dimension(task_type: str | None) -> str:
    """The `type` dimension: a registered type's name, else NO_TYPE. A message sent to the queue
    directly can name any type; each distinct value would be a new metric, and a bill."""
    return task_type if task_type is not None and REGISTRY.get(task_type) is not None else NO_TYPE


def count(metric: Metric, task_type: str | None, value: float = 1) -> None:
    """Add `value` to a count metric of one task type (None: no known type).

    Raises:
        ValueError: `metric` is a duration (use `milliseconds`).
    """
    if metric in DURATIONS:
        raise ValueError(f"{metric} is a duration in milliseconds, not a count")
    with _lock:
        _counts[_dimension(task_type)][metric] += value


def milliseconds(metric: Metric, task_type: str | None, value: float) -> None:
    """Record one duration in milliseconds.

    Raises:
        ValueError: `metric` is a count (use `count`).
    """
    if metric not in DURATIONS:
        raise ValueError(f"{metric} is a count, not a duration")
    with _lock:
        _durations[_dimension(task_type)][metric].append(float(value))


def current_stage() -> str:
    """The stage the metrics are published under: the STAGE variable of the stage's environment."""
    return os.environ.get(STAGE_VARIABLE) or UNKNOWN_STAGE


def flush() -> None:
    """Write what accumulated since the last flush as EMF lines on stdout: once per invocation.

    Nothing accumulated writes nothing (Powertools would warn). POWERTOOLS_METRICS_DISABLED
    (or POWERTOOLS_DEV) drops the metrics, as Powertools' own flush does.
    """
    global _cold_start
    with _lock:
        counts, durations, cold_start = dict(_counts), dict(_durations), _cold_start
        _counts.clear()
        _durations.clear()
        _cold_start = None
    stage = current_stage()
    blobs = [
        blob
        for task_type in sorted({*counts, *durations})
        for blob in _blobs(stage, task_type, counts.get(task_type, {}), durations.get(task_type, {}))
    ]
    if cold_start is not None:
        blobs.append(_cold_start_blob(stage, cold_start))
    if blobs and not is_metrics_disabled():
        # One write for all lines: a log line written by another thread cannot land inside one.
        sys.stdout.write("".join(json.dumps(blob, separators=(",", ":")) + "\n" for blob in blobs))
        sys.stdout.flush()


def flushed(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a Lambda handler `(event, context)` so that its metrics are flushed when it returns or raises.

    The first invocation in this process (with a Lambda context, and not provisioned
    ahead of time) also publishes `ColdStart`. A flush that fails is logged, never raised:
    it must not turn a finished batch into a failed one, whose messages would all run again.
    """

    def invoked(event: Any, context: Any) -> Any:
        _note_cold_start(context)
        try:
            return handler(event, context)
        finally:
            try:
                flush()
            except Exception:  # noqa: BLE001 - see the docstring
                logger.exception("metrics_not_flushed")

    return invoked


def _note_cold_start(context: Any) -> None:
    global _cold_start, _started
    name = getattr(context, "function_name", None)
    with _lock:
        if _started or not name:
            return
        _started = True
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency":
            _cold_start = name


def _emitter(stage: str) -> EphemeralMetrics:
    """A blob builder whose first dimension set is [stage]."""
    # service="": a POWERTOOLS_SERVICE_NAME in the environment would add a `service` dimension.
    emitter = EphemeralMetrics(namespace=NAMESPACE, service="")
    emitter.add_dimension("stage", stage)
    return emitter


def _blobs(
    stage: str, task_type: str, counts: dict[Metric, float], durations: dict[Metric, list[float]]
) -> Iterator[dict[str, Any]]:
    """One blob with dimension sets [stage] and [stage, type]; more only past Powertools' values per metric."""
    longest = max((len(values) for values in durations.values()), default=0)
    for start in range(0, max(longest, 1), _VALUES_PER_BLOB):
        emitter = _emitter(stage)
        emitter.add_dimensions(stage=stage, type=task_type)  # the second set, [stage, type]
        if start == 0:
            for metric, total in counts.items():
                emitter.add_metric(name=metric.value, unit=MetricUnit.Count, value=total)
        for metric, values in durations.items():
            for value in values[start : start + _VALUES_PER_BLOB]:
                emitter.add_metric(name=metric.value, unit=MetricUnit.Milliseconds, value=value)
        if emitter.metric_set:
            yield dict(emitter.serialize_metric_set())


def _cold_start_blob(stage: str, function_name: str) -> dict[str, Any]:
    emitter = _emitter(stage)
    emitter.add_dimension("function_name", function_name)  # one set, [stage, function_name]
    emitter.add_metric(name=COLD_START, unit=MetricUnit.Count, value=1)
    return dict(emitter.serialize_metric_set())
