"""The gate before an attempt: asks the flow policies in order, so the consumer has no branch per feature.

    admission = gate.admit(task, task_type, owner)   # raises Deferred: renew the message, later
    ...store.acquire(..., owner, ...), run, record the outcome...
    gate.release(admission, elapsed_ms)               # slots back; a start that never ran refunded

The order is pause, then caps (the type's, then the key's), then rates (the type's, then the
key's): a paused type takes nothing, and a start is spent only when every cap has a slot. When
a later policy refuses, what the earlier ones took is given back before `Deferred` is raised.
A type that uses no option meets only the pause policy, whose view costs one cached read per
container every 5 s: no request per attempt.

How long a deferred task waits (`delay_seconds`): the refusing policy's estimate of when it
may start (a slot likely free, the rate's next conforming time, the pause view's refresh),
then a draw between that and twice it for every earlier deferral of the same message, up to the
policy's longest wait. Waiters therefore spread instead of waking together, and one that was
deferred often looks less often: a key with a small backlog, whose tasks are fresh, is tried
more often than a key with a large one (docs/architecture.md, "Flow control", measures it).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.errors import StoreError
from chalicelib.flow.concurrency import Durations, KeyConcurrency, Semaphore, TypeConcurrency
from chalicelib.flow.keys import payload_key
from chalicelib.flow.pause import Pauses
from chalicelib.flow.paused import PausePolicy
from chalicelib.flow.policy import Attempt, Deferred, Held, Policy
from chalicelib.flow.rate import Gcra, KeyRate, TypeRate
from chalicelib.flow.table import FlowTable
from chalicelib.models import Task

if TYPE_CHECKING:
    from chalicelib.registry import TaskType

__all__ = ["Admission", "Deferred", "Gate"]

logger = logging.getLogger(__name__)

# SQS delays a message by 15 minutes at most: a longer wait is a renewal that looks again.
MAX_DELAY_SECONDS = 900
# A flow table that does not answer: look again after this, at least this often.
UNAVAILABLE_WAIT_MS = 5_000
UNAVAILABLE_MAX_WAIT_MS = 60_000
# Deferrals of one message double its window at most this many times.
MAX_DOUBLINGS = 3


@dataclass(frozen=True)
class Admission:
    """What the gate took for one attempt, to give back after it, and when it judged it.

    The attempt's `started` line logs both times, so that whoever checks a limit can compare
    it with what the limit promises: a pause is judged at `admitted_ms`, a rate counts the start
    at `counted_ms`, and the handler begins later by the writes in between.
    """

    held: tuple[Held, ...] = ()
    admitted_ms: int | None = None  # the epoch ms the gate began: the pause was judged as of then
    counted_ms: int | None = None  # the latest time a rate counted this start at (None: no rate)


class Gate:
    """The flow policies of this container, in the order they are asked."""

    def __init__(self, policies: Sequence[Policy], table: FlowTable, rng: random.Random | None = None) -> None:
        self._policies = tuple(policies)
        self._table = table
        self._rng = rng or random.Random()

    @classmethod
    def build(cls, table: FlowTable, pauses: Pauses, lease_seconds: float, rng: random.Random | None = None) -> Gate:
        """The stage's gate: pause, caps, rates, over one flow table."""
        semaphore, durations, gcra = Semaphore(table), Durations(), Gcra(table)
        policies: list[Policy] = [
            PausePolicy(pauses),
            TypeConcurrency(semaphore, durations, lease_seconds),
            KeyConcurrency(semaphore, durations, lease_seconds),
            TypeRate(gcra),
            KeyRate(gcra),
        ]
        return cls(policies, table, rng)

    def admit(self, task: Task, task_type: TaskType, holder: str) -> Admission:
        """Take what every policy the type uses needs for an attempt run by `holder`.

        Raises:
            Deferred: a policy refused, or the flow table did not answer (`flow_unavailable`: a
                limit that cannot be checked is not skipped); nothing is held.
        """
        policies = [policy for policy in self._policies if policy.applies(task_type)]
        attempt = Attempt(task, task_type, holder, flow_key(task, task_type), self._table.now_ms())
        held: list[Held] = []
        try:
            for policy in policies:
                taken = policy.before(attempt)
                if taken is not None:
                    held.append(taken)
        except Exception as refused:
            self.release(Admission(tuple(held)), None)
            if isinstance(refused, StoreError):
                raise Deferred("flow_unavailable", UNAVAILABLE_WAIT_MS, UNAVAILABLE_MAX_WAIT_MS) from refused
            raise
        counted = [taken.counted_ms for taken in held if taken.counted_ms is not None]
        return Admission(tuple(held), attempt.now_ms, max(counted, default=None))

    def release(self, admission: Admission, elapsed_ms: float | None) -> None:
        """Give back what `admission` holds, last taken first; `elapsed_ms` None: the attempt never ran.

        A release that fails is left to expire (a slot by its bound); it never fails the attempt.
        """
        for held in reversed(admission.held):
            try:
                held.policy.after(held, elapsed_ms)
            except Exception:  # see the docstring
                logger.warning("release of %s failed; it expires by itself", held.item, exc_info=True)

    def delay_seconds(self, deferred: Deferred, deferrals: int) -> int:
        """The whole seconds a deferred message waits: from the estimate to twice it per earlier
        deferral, jittered, at most the policy's longest wait and SQS's longest delay."""
        estimate = max(1.0, deferred.wait_ms / 1000)
        longest = MAX_DELAY_SECONDS if deferred.max_wait_ms is None else deferred.max_wait_ms / 1000
        ceiling = estimate * 2.0 ** (min(deferrals, MAX_DOUBLINGS) + 1)
        low, high = min(estimate, longest), min(ceiling, longest)
        return max(1, min(MAX_DELAY_SECONDS, math.ceil(self._rng.uniform(low, max(low, high)))))


def flow_key(task: Task, task_type: TaskType) -> str | None:
    """The task's flow key: the publish's `key`, else the value at the type's `concurrency_key`."""
    if task.key is not None:
        return task.key
    if task_type.concurrency_key is None:
        return None
    return payload_key(task.payload, task_type.concurrency_key)
