"""When an attempt must end: its type's timeout, or the invocation's end less the time its consumer still needs.

Lambda stops a function at its timeout whatever its threads are doing, and a batch
stopped before it is settled comes back whole: every task in it is later recorded
`expired`, not what happened to it. So an attempt's deadline is the earliest of its
start plus its type's timeout and the invocation's end less a margin, and the
consumer stops waiting for a handler at that same moment: what is left is enough
to record the attempt's outcome and settle the batch, even when AWS is at its
slowest (`aws_call_seconds`, every attempt of a call timing out).

The margin counts the AWS calls that follow a deadline one after another:

    the attempt's outcome        UpdateItem                  1
    the batch's visibility       ChangeMessageVisibilityBatch 1
    the batch's finished records DeleteMessageBatch          1 (none when the event source
                                                             reports item failures: it deletes)

plus a second of the function's own work (logging, metrics, answering). With the
deployed stages' botocore settings a call takes at most 5 s: the margin is 16 s on
`dev` and 11 s on `prod`. Not counted: the second write of a failure whose task an
operator asked to cancel meanwhile (`store.fail` then records CANCELLED); if that
one also takes AWS's worst case, the batch may be cut short, and its messages come
back as they do today.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.settings import Settings, aws_call_seconds

# The function's own work after the last call: the log lines, the metrics' flush, the answer.
OWN_WORK_SECONDS = 1.0


def calls_after_deadline(report_item_failures: bool) -> int:
    """The AWS calls a consumer makes one after another once an attempt's deadline has passed."""
    outcome, visibility, delete = 1, 1, 0 if report_item_failures else 1
    return outcome + visibility + delete


def margin_seconds(settings: Settings) -> float:
    """What an invocation keeps after the last deadline of its attempts, on this stage."""
    calls = calls_after_deadline(settings.REPORT_BATCH_ITEM_FAILURES)
    return calls * aws_call_seconds(settings) + OWN_WORK_SECONDS


def invocation_seconds(settings: Settings, function_timeout_seconds: float | None = None) -> float | None:
    """The longest an attempt can run inside one invocation of the consumer function: its timeout less the margin.

    The function's timeout is `function_timeout_seconds` when given (the deploy-time view),
    else the stage's CONSUMER_TIMEOUT_SECONDS; None when neither is known.
    """
    timeout = function_timeout_seconds if function_timeout_seconds is not None else settings.CONSUMER_TIMEOUT_SECONDS
    return None if timeout is None else timeout - margin_seconds(settings)


@dataclass(frozen=True)
class Invocation:
    """The Lambda invocation a batch runs in: how long it has left, and the margin it keeps.

    `remaining_seconds` is None where no end is known (a handler called without a
    Lambda context): attempts then end by their type's timeout alone, as before.
    """

    remaining_seconds: Callable[[], float] | None = None
    margin_seconds: float = 0.0

    @classmethod
    def of(cls, context: Any, margin: float) -> Invocation:
        """The invocation of a Lambda `context` (anything with `get_remaining_time_in_millis`, or None)."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if not callable(remaining):
            return cls()
        return cls(lambda: float(remaining()) / 1000, margin)

    def attempt_deadline(self, now: float) -> float | None:
        """The latest an attempt starting at `now` may end, on the clock `now` was read from."""
        if self.remaining_seconds is None:
            return None
        return now + self.remaining_seconds() - self.margin_seconds

    def wait_seconds(self) -> float | None:
        """How long from now the consumer may wait for its handlers before it must settle the batch."""
        if self.remaining_seconds is None:
            return None
        return max(0.0, self.remaining_seconds() - self.margin_seconds)


UNBOUNDED = Invocation()
