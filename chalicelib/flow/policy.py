"""What every flow policy shares: the attempt it judges, what it holds, and the signal that defers.

A policy is one small class in a module of its own (paused.py, concurrency.py, rate.py). It
declares the `@task_type` options it reads (`options`), says whether a type uses it at all
(`applies`, free: a plain type pays nothing for a policy it does not use), takes what it needs
before an attempt (`before`, raising `Deferred` when the attempt must wait) and gives it back
after (`after`). The gate (gate.py) asks them in order and knows nothing of what they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from chalicelib.models import Task
    from chalicelib.registry import TaskType


@dataclass(frozen=True)
class Attempt:
    """An attempt about to start: its task, its type, the lease owner it will run as, its flow key."""

    task: Task
    task_type: TaskType
    holder: str  # the attempt's lease owner (store.acquire's `owner`): a semaphore slot's holder id
    key: str | None  # the explicit `key`, else the value at the type's `concurrency_key`, else None
    now_ms: int


@dataclass(frozen=True)
class Held:
    """What one policy took for an attempt (a slot, a token), to give back after it."""

    policy: Policy
    item: str  # the flow item's key
    value: Any = None
    counted_ms: int | None = None  # a rate's: the epoch ms the start was counted at


class Deferred(Exception):
    """Raised by a policy: the attempt may not start now; look again in about `wait_ms`."""

    def __init__(self, by: str, wait_ms: int, max_wait_ms: int | None = None) -> None:
        super().__init__(f"deferred by {by} for {wait_ms} ms")
        self.by = by
        self.wait_ms = max(0, wait_ms)
        self.max_wait_ms = max_wait_ms  # the longest a deferral may grow to (None: SQS's longest delay)


class Policy(Protocol):
    name: ClassVar[str]
    options: ClassVar[frozenset[str]]

    def applies(self, task_type: TaskType) -> bool:
        """Whether the type uses this policy; no request is made to say so."""
        ...

    def before(self, attempt: Attempt) -> Held | None:
        """Take what the attempt needs (None: nothing to give back).

        Raises:
            Deferred: the attempt must wait.
            StoreError: the flow table did not answer.
        """
        ...

    def after(self, held: Held, elapsed_ms: float | None) -> None:
        """Give back what `before` took; `elapsed_ms` is how long the attempt ran (None: it never started)."""
        ...
