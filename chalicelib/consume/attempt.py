"""One attempt of a task: its type's handler run on its validated payload, under a deadline.

The outcome is a value, never an exception: success with the result as JSON
text, or failure with the error and whether it is permanent. Everything a
handler can do wrong (raise, overrun, return something that is not JSON or is
too large) becomes one of those.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from chalicelib.models import Task
from chalicelib.registry import (
    MAX_RESULT_BYTES,
    AttemptAbandoned,
    Keeper,
    PermanentError,
    Registry,
    TaskCancelled,
    TaskContext,
    TaskFailed,
    TaskType,
)

HANDLERS_LOGGER = "taskproc.tasks.handlers"


class TaskLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A handler's logger: every line carries the task's id and attempt, and keeps the handler's own
    `extra` fields beside them (logging's LoggerAdapter replaces a call's `extra` with its own)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs


@dataclass(frozen=True)
class AttemptOutcome:
    result_json: str | None = None
    error: str | None = None
    permanent: bool = False
    duration_ms: float = 0.0
    cancelled: bool = False  # an operator's cancel stopped it through its heartbeat
    abandoned: bool = False  # it lost its lease: another attempt runs the task, nothing of this one is kept

    @property
    def succeeded(self) -> bool:
        return self.error is None


def permanent(error: str, duration_ms: float = 0.0) -> AttemptOutcome:
    return AttemptOutcome(error=f"permanent failure: {error}", permanent=True, duration_ms=duration_ms)


def unknown_type(task: Task, registry: Registry) -> AttemptOutcome:
    return permanent(f"unknown task type {task.type!r}; known types: {', '.join(registry.names())}")


def describe(exc: BaseException) -> str:
    """The error a failed attempt records: a TaskFailed's own words, else the class name and message."""
    if isinstance(exc, TaskFailed):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run_attempt(
    task: Task,
    task_type: TaskType,
    attempt: int,
    max_attempts: int,
    lease_seconds: float,
    clock: Callable[[], float] = time.time,
    invocation_deadline: float | None = None,
    keeper: Keeper | None = None,
) -> AttemptOutcome:
    """Run `task` once with its type's handler, its heartbeats kept by `keeper`; never raises.

    `invocation_deadline` (on `clock`) is the invocation's end less its margin: the
    deadline is that when it comes before the type's timeout.
    """
    try:
        payload = task_type.parse(task.payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(["payload", *(str(part) for part in first["loc"])])
        return permanent(f"the payload does not fit task type {task_type.name!r}: {field}: {first['msg']}")

    timeout = task_type.timeout(lease_seconds)
    started = clock()
    context = TaskContext(
        task_id=task.id,
        task_type=task_type.name,
        attempt=attempt,
        max_attempts=max_attempts,
        deadline=started + timeout if invocation_deadline is None else min(started + timeout, invocation_deadline),
        logger=TaskLogger(logging.getLogger(HANDLERS_LOGGER), {"taskId": task.id, "attempt": attempt}),
        clock=clock,
        keeper=keeper,
    )
    try:
        value = task_type.handler(payload, context)
    except TaskCancelled as exc:
        return AttemptOutcome(error=describe(exc), cancelled=True, duration_ms=_ms_since(started, clock))
    except AttemptAbandoned as exc:
        return AttemptOutcome(error=describe(exc), abandoned=True, duration_ms=_ms_since(started, clock))
    except PermanentError as exc:
        return permanent(describe(exc), _ms_since(started, clock))
    except Exception as exc:  # noqa: BLE001 - any other exception is a retryable failure, by contract
        return AttemptOutcome(error=describe(exc), duration_ms=_ms_since(started, clock))
    elapsed_ms = _ms_since(started, clock)
    # A handler that caught what its heartbeat raised and returned anyway: the heartbeat decided.
    if getattr(keeper, "lost", False):
        return AttemptOutcome(error="the attempt lost its lease; its result was discarded", abandoned=True)
    if getattr(keeper, "cancelled", False):
        return AttemptOutcome(error="cancelled by an operator", cancelled=True, duration_ms=elapsed_ms)
    allowed_ms = (context.deadline - started) * 1000
    if elapsed_ms > allowed_ms:
        if allowed_ms < timeout * 1000:
            limit = f"the invocation's end less its margin left it {max(0.0, allowed_ms):.0f} ms"
        else:
            limit = f"task type {task_type.name!r} has {timeout * 1000:.0f} ms"
        return AttemptOutcome(
            error=f"timed out after {elapsed_ms:.0f} ms ({limit}); its result was discarded", duration_ms=elapsed_ms
        )
    return _result(task_type, value, elapsed_ms)


def abandoned(elapsed_ms: float) -> AttemptOutcome:
    """The outcome of an attempt whose handler still runs when its invocation must settle the batch."""
    return AttemptOutcome(
        error=f"timed out after {elapsed_ms:.0f} ms (still running at the invocation's end less its margin);"
        " its result will be discarded",
        duration_ms=elapsed_ms,
    )


def _result(task_type: TaskType, value: object, elapsed_ms: float) -> AttemptOutcome:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        return permanent(f"handler {task_type.name!r} returned a value that is not JSON: {exc}", elapsed_ms)
    if size > MAX_RESULT_BYTES:
        return permanent(
            f"handler {task_type.name!r} returned a result of {size} bytes; a result may be at most {MAX_RESULT_BYTES}",
            elapsed_ms,
        )
    return AttemptOutcome(result_json=text, duration_ms=elapsed_ms)


def _ms_since(started: float, clock: Callable[[], float]) -> float:
    return (clock() - started) * 1000
