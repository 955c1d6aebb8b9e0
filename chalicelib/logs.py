"""One structured JSON line per task event, written by Powertools' Logger, so logs can be queried by task id.

Every line carries the invocation's Lambda context (function name and request id,
cold start) and, inside `task_scope`, the task id as `correlation_id` and the attempt.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from aws_lambda_powertools.logging.logger import Logger

SERVICE = "taskproc"
# The standard-library logger that Powertools writes through is named after the service,
# which makes it Chalice's app logger too (see _StdoutHandler). Raising its level quiets
# the task events (tools/bench.py does).
EVENTS_LOGGER = SERVICE
# Bound per record by task_scope; the keys every line of one record carries.
TASK_KEYS = ("correlation_id", "attempt")
# Keys a LogRecord owns: passing one as `extra` makes logging raise, so such a field is renamed.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to whatever `sys.stdout` is when a line is written.

    Chalice configures its app logger (named after the app, as this one is) only when that
    logger has no handler writing to `sys.stdout`; if it did, it would add a second handler
    in its own format and set the level to ERROR, dropping every task event. This handler
    always passes Chalice's check, whenever the app is created, and follows a replaced
    `sys.stdout` (test capture) instead of keeping the one it was created with.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


logger = Logger(service=SERVICE, logger_handler=_StdoutHandler(), utc=True, use_rfc3339=True)
# Present from the start (None values are left out of a line), so that binding the context of
# the first invocation never resizes the key map while another thread formats a line.
logger.append_keys(
    cold_start=None, function_name=None, function_memory_size=None, function_arn=None, function_request_id=None
)


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` as the line's message, with its fields (task id, attempt, message id, ...) as keys.

    Fields that are None are left out. A field named like a LogRecord attribute (`name`,
    `module`, ...) is written as `field_<name>`, since logging refuses to overwrite one.
    """
    extra = {
        (f"field_{key}" if key in _RECORD_ATTRIBUTES else key): value
        for key, value in fields.items()
        if value is not None
    }
    # stacklevel=2: the line's `location` is the caller, not this function.
    logger.log(level, event, extra=extra, stacklevel=2)


@contextmanager
def task_scope(task_id: str, attempt: int | None = None) -> Iterator[None]:
    """Bind the task id (as `correlation_id`) and attempt to every line this thread logs inside the block.

    The keys are the thread's own (Powertools' thread-safe keys, a context variable), so the
    records of one batch, run at once in a pool's threads, never see each other's. On the way
    out the keys are put back as they were: removed after a record, so the pool's next record
    in the same thread does not inherit them, and restored after a nested scope (a record's
    scope opened with its task id, an inner one once the attempt is known).
    """
    before = {key: value for key, value in logger.thread_safe_get_current_keys().items() if key in TASK_KEYS}
    keys = {"correlation_id": task_id, "attempt": attempt}
    logger.thread_safe_append_keys(**{key: value for key, value in keys.items() if value is not None})
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(TASK_KEYS)
        if before:
            logger.thread_safe_append_keys(**before)


def with_lambda_context(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a Lambda handler `(event, context)` so its lines carry the Lambda context and cold start.

    Powertools' `inject_lambda_context`, except that a call without a context (a handler
    invoked directly, as tools/bench.py does) runs the handler as it is.
    """

    def lean(event: Any, context: Any) -> Any:
        # The function's ARN and memory size are the same on every line of a log group that
        # already names the function: about 110 bytes a line, a third of a task's log bill.
        logger.append_keys(function_arn=None, function_memory_size=None)
        return handler(event, context)

    with_context = logger.inject_lambda_context(lean)

    def logged(event: Any, context: Any) -> Any:
        if context is None:
            return handler(event, context)
        return with_context(event, context)

    return logged
