"""The metric names and the one place they are emitted.

Namespace `taskproc`; dimensions are fixed: `stage`, and `type` for the metrics
of one task type. A task id is never a dimension (each would be a new metric).
Metrics accumulate as the work happens and are flushed once per invocation.
"""

from __future__ import annotations

import threading
from enum import StrEnum

NAMESPACE = "taskproc"
# A metric that belongs to no known task type (a poison message, an unreadable dead letter).
NO_TYPE = "none"


class Metric(StrEnum):
    ACCEPTED = "TasksAccepted"
    DUPLICATES = "DuplicatePublishes"
    ATTEMPTS_STARTED = "AttemptsStarted"
    COMPLETED = "TasksCompleted"
    ATTEMPTS_FAILED = "AttemptsFailed"
    RETRIES_SCHEDULED = "RetriesScheduled"
    TASKS_FAILED = "TasksFailed"
    PERMANENT_FAILURES = "PermanentFailures"
    TASKS_CANCELLED = "TasksCancelled"
    DEAD_LETTERS = "DeadLettersRecorded"
    POISON = "PoisonMessages"
    EXPIRED_ATTEMPTS = "ExpiredAttempts"
    OPERATOR_RETRIES = "OperatorRetries"
    OPERATOR_CANCELS = "OperatorCancels"
    ATTEMPT_DURATION = "AttemptDuration"  # milliseconds
    END_TO_END_LATENCY = "EndToEndLatency"  # milliseconds, created to terminal


_lock = threading.Lock()
_pending: list[tuple[Metric, str, float]] = []


def count(metric: Metric, task_type: str | None, value: float = 1) -> None:
    """Add `value` to a count metric of one task type (None: no known type)."""
    with _lock:
        _pending.append((metric, task_type or NO_TYPE, value))


def milliseconds(metric: Metric, task_type: str | None, value: float) -> None:
    """Record one duration in milliseconds."""
    with _lock:
        _pending.append((metric, task_type or NO_TYPE, value))


def flush() -> None:
    """Emit what accumulated since the last flush: once per invocation."""
    with _lock:
        _pending.clear()
