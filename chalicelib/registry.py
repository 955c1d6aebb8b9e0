"""Task types: a name, the handler that runs it, and its options.

    @task_type("checksum", payload=ChecksumPayload, timeout_seconds=5)
    def checksum(payload: ChecksumPayload, context: TaskContext) -> dict[str, str]:
        ...

A handler receives its validated payload and a `TaskContext`, and returns a JSON
value: the task's result. Any exception fails the attempt and the task is retried
with backoff (`TaskFailed` says why in its own words; any other exception is
recorded with its class name); `PermanentError` fails the task at once, with no
further attempt.

Handlers of one batch run concurrently, in threads: a handler must be thread-safe.
Lambda cannot stop a thread, so a handler must watch its own deadline
(`context.remaining_seconds()`) and keep its I/O timeouts below it; an attempt
that returns after its deadline is failed and its result discarded. The deadline
is the earliest of the type's timeout and the invocation's end less a margin
(chalicelib/consume/deadline.py); `timeout_limits` says what a type's timeout must fit in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from chalicelib.flow.keys import path_problem
from chalicelib.flow.rate import DEFAULT_BURST, parse_rate

if TYPE_CHECKING:
    from chalicelib.schedules.definition import ScheduleDefinition

# A handler's timeout plus this margin must fit in the lease, so that the attempt
# records its outcome while the lease still holds.
LEASE_MARGIN_SECONDS = 1.0
# Lambda runs a function for 15 minutes at most.
MAX_TIMEOUT_SECONDS = 900
# The lease of a heartbeating type, in heartbeats: two may be missed before a takeover.
LEASE_HEARTBEATS = 3
# Heartbeats closer than this would spend a write a second on one task.
MIN_HEARTBEAT_SECONDS = 1.0
# A result is stored in the task item beside the payload and the history.
MAX_RESULT_BYTES = 32 * 1024
DEFAULT_TYPE = "simulate"
# One flow item holds every slot of a cap, about 45 bytes each; DynamoDB's items end at 400 KB
# and each write of the item is billed by its size (1 WCU a KB).
MAX_CONCURRENCY = 1_000
MAX_BURST = 10_000

Handler = Callable[[Any, "TaskContext"], Any]


class TaskFailed(Exception):
    """Raised by a handler for a failure it expected: retried with backoff; the message is the error as is."""


class PermanentError(TaskFailed):
    """Raised by a handler: the task can never succeed, so it fails now without retrying."""


class TaskCancelled(Exception):
    """Raised by `context.heartbeat()`: an operator cancelled the task. Stop; the task ends CANCELLED.

    Its own class, not a PermanentError: nothing failed, and the attempt is recorded `cancelled`.
    """


class AttemptAbandoned(Exception):
    """Raised by `context.heartbeat()`: the attempt lost its lease to another consumer (it missed its
    heartbeats). Stop: another attempt runs the task, and nothing this one returns is kept."""


class Keeper(Protocol):
    """What keeps a heartbeating attempt alive (chalicelib/consume/heartbeat.py)."""

    def beat(self, progress: Any = None) -> None: ...

    def cancel_requested(self) -> bool: ...


class RegistrationError(Exception):
    """A task type's registration breaks a rule; the message names the type and the rule."""


@dataclass(frozen=True)
class Backoff:
    """A task type's own retry schedule, in place of the stage's BACKOFF_* settings."""

    base_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class TimeoutLimit:
    """Something a type's timeout must fit in: the longest timeout it allows, and the rule in words."""

    seconds: float
    rule: str


def timeout_limits(
    lease_seconds: float, invocation_seconds: float | None = None, *, heartbeats: bool = False
) -> list[TimeoutLimit]:
    """Every limit a type's timeout must fit in, on a stage with these settings.

    The lease: the attempt records its outcome while it still holds it (not for a type that
    heartbeats: its heartbeats keep its lease for as long as it runs). The invocation (the
    consumer function's timeout less the margin of chalicelib/consume/deadline.py, when known):
    Lambda does not stop the batch before its outcomes are written.
    """
    limits = []
    if not heartbeats:
        limits.append(
            TimeoutLimit(
                lease_seconds - LEASE_MARGIN_SECONDS,
                f"plus a margin of {LEASE_MARGIN_SECONDS:g} s does not fit in LEASE_SECONDS {lease_seconds:g}",
            )
        )
    if invocation_seconds is not None:
        limits.append(
            TimeoutLimit(
                invocation_seconds,
                f"does not fit in the consumer function's timeout less its margin ({invocation_seconds:g} s:"
                " CONSUMER_TIMEOUT_SECONDS less the time to record the outcome and settle the batch)",
            )
        )
    return limits


@dataclass(frozen=True)
class TaskContext:
    """What a handler knows about the attempt it runs."""

    task_id: str
    task_type: str
    attempt: int
    max_attempts: int
    # Epoch seconds; the attempt fails if the handler returns later. The earliest of the attempt's
    # start plus its type's timeout and the invocation's end less its margin.
    deadline: float
    logger: logging.LoggerAdapter[logging.Logger]
    clock: Callable[[], float] = field(default=time.time, repr=False)
    keeper: Keeper | None = field(default=None, repr=False)  # set for types with heartbeat_seconds

    def remaining_seconds(self) -> float:
        return self.deadline - self.clock()

    def heartbeat(self, progress: Any = None) -> None:
        """Say the attempt is alive, and how far it got: `progress` is any JSON value up to 4 KiB
        (`{"done": n, "total": m}` draws a bar), shown on the task; None keeps the last one.

        Call it at least every `heartbeat_seconds` of the task type; calls closer together than a
        third of that are coalesced into one write. A type without heartbeat_seconds may call it:
        it does nothing.

        Raises:
            ValueError: `progress` is not JSON or too long.
            TaskCancelled: an operator cancelled the task: stop now.
            AttemptAbandoned: the attempt lost its lease: stop now, its result will not be kept.
        """
        if self.keeper is not None:
            self.keeper.beat(progress)

    def cancel_requested(self) -> bool:
        """Whether an operator asked to cancel the task, without extending the lease (a read)."""
        return self.keeper.cancel_requested() if self.keeper is not None else False


@dataclass(frozen=True)
class TaskType:
    name: str
    handler: Handler
    payload: type[BaseModel] | None = None
    max_attempts: int | None = None  # None: the stage's MAX_ATTEMPTS
    timeout_seconds: float | None = None  # None: the tightest of `timeout_limits`
    backoff: Backoff | None = None
    # A long type: its handler heartbeats at least this often, and its lease is a few heartbeats
    # long instead of the stage's (chalicelib/consume/heartbeat.py).
    heartbeat_seconds: float | None = None
    # Flow control (chalicelib/flow/): caps on attempts running at once, per type and per flow
    # key (the publish's `key`, else the payload's value at the dotted path `concurrency_key`),
    # and rates of starts ("<n>/<second|minute|hour>") per type and per key, with `rate_burst`
    # starts beyond n allowed in a window (None: DEFAULT_BURST, 0).
    concurrency: int | None = None
    concurrency_key: str | None = None
    key_concurrency: int | None = None
    rate_limit: str | None = None
    key_rate_limit: str | None = None
    rate_burst: int | None = None
    # Schedules kept in the code (chalicelib/schedules/declared.py reconciles them with the table).
    schedules: tuple[ScheduleDefinition, ...] = ()

    @property
    def burst(self) -> int:
        """The starts a rate limit allows beyond its n in one window."""
        return DEFAULT_BURST if self.rate_burst is None else self.rate_burst

    def options(self) -> dict[str, Any]:
        """Every option the type sets, camelCase and JSON-able, None left out (GET /types shows them)."""
        rated = self.rate_limit is not None or self.key_rate_limit is not None
        options: dict[str, Any] = {
            "maxAttempts": self.max_attempts,
            "timeoutSeconds": self.timeout_seconds,
            "backoff": {"baseSeconds": self.backoff.base_seconds, "maxSeconds": self.backoff.max_seconds}
            if self.backoff
            else None,
            "heartbeatSeconds": self.heartbeat_seconds,
            "concurrency": self.concurrency,
            "concurrencyKey": self.concurrency_key,
            "keyConcurrency": self.key_concurrency,
            "rateLimit": self.rate_limit,
            "keyRateLimit": self.key_rate_limit,
            "rateBurst": self.burst if rated else None,
        }
        return {name: value for name, value in options.items() if value is not None}

    def lease(self, stage_lease_seconds: float) -> float:
        """The lease of one attempt: a few heartbeats for a heartbeating type, else the stage's."""
        if self.heartbeat_seconds is not None:
            return LEASE_HEARTBEATS * self.heartbeat_seconds
        return stage_lease_seconds

    def attempts(self, stage_max_attempts: int) -> int:
        return self.max_attempts or stage_max_attempts

    def timeout(self, lease_seconds: float, invocation_seconds: float | None = None) -> float:
        """The type's timeout: its own, else the tightest limit (half a lease of 2 s or less)."""
        if self.timeout_seconds:
            return self.timeout_seconds
        by_lease = max(lease_seconds - LEASE_MARGIN_SECONDS, lease_seconds / 2)
        return by_lease if invocation_seconds is None else min(by_lease, invocation_seconds)

    def parse(self, payload: dict[str, Any]) -> Any:
        """The payload as the handler takes it.

        Raises:
            pydantic.ValidationError: it breaks the type's payload model.
        """
        return self.payload.model_validate(payload) if self.payload else payload

    def check(self, max_attempts: int, lease_seconds: float, invocation_seconds: float | None = None) -> None:
        """Check the options against the stage's settings (`invocation_seconds`: see `timeout_limits`).

        Raises:
            RegistrationError: they contradict them; the message names the type and the rule.
        """
        if self.max_attempts is not None and self.max_attempts > max_attempts:
            raise RegistrationError(
                f"task type {self.name!r}: max_attempts {self.max_attempts} is more than MAX_ATTEMPTS {max_attempts}, "
                "the task queue's maxReceiveCount"
            )
        limits = timeout_limits(lease_seconds, invocation_seconds, heartbeats=self.heartbeat_seconds is not None)
        timeout = self.timeout(lease_seconds, invocation_seconds)
        if self.timeout_seconds is not None:
            broken = [limit for limit in limits if self.timeout_seconds > limit.seconds]
        else:
            # The default is the tightest limit (or half a short lease): it breaks one only if none is left.
            broken = [limit for limit in limits if limit.seconds <= 0] if timeout <= 0 else []
        if broken:
            given = "timeout_seconds" if self.timeout_seconds is not None else "the default timeout"
            raise RegistrationError(f"task type {self.name!r}: {given} {timeout:g} {broken[0].rule}")


def _whole_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def flow_option_problem(task_type: TaskType) -> str | None:
    """The first flow option of `task_type` that breaks its rule, in words; None when all keep theirs."""
    for option in ("concurrency", "key_concurrency"):
        value = getattr(task_type, option)
        if value is not None and not _whole_in(value, 1, MAX_CONCURRENCY):
            return f"{option} must be a whole number from 1 to {MAX_CONCURRENCY} (one item holds every slot)"
    if task_type.concurrency_key is not None:
        problem = path_problem(task_type.concurrency_key) if isinstance(task_type.concurrency_key, str) else "is text"
        if problem is not None:
            return f"concurrency_key {problem}"
        if task_type.key_concurrency is None and task_type.key_rate_limit is None:
            return "concurrency_key needs key_concurrency or key_rate_limit, the limit it keys"
    for option in ("rate_limit", "key_rate_limit"):
        value = getattr(task_type, option)
        if value is not None:
            try:
                parse_rate(value)
            except ValueError as exc:
                return f"{option} {exc}"
    if task_type.rate_burst is not None:
        if task_type.rate_limit is None and task_type.key_rate_limit is None:
            return "rate_burst needs rate_limit or key_rate_limit, the limit it loosens"
        if not _whole_in(task_type.rate_burst, 0, MAX_BURST):
            return f"rate_burst must be a whole number from 0 to {MAX_BURST}"
    return None


class Registry:
    """The task types this deployment runs, by name."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def register(self, task_type: TaskType) -> None:
        """Add a type.

        Raises:
            RegistrationError: the name is taken, or an option is out of range.
        """
        name = task_type.name
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise RegistrationError(f"task type {name!r}: a name is letters, digits, '-' and '_'")
        if name in self._types:
            raise RegistrationError(f"task type {name!r}: registered twice ({self._types[name].handler.__qualname__})")
        if task_type.max_attempts is not None and task_type.max_attempts < 1:
            raise RegistrationError(f"task type {name!r}: max_attempts must be at least 1")
        if task_type.timeout_seconds is not None and task_type.timeout_seconds <= 0:
            raise RegistrationError(f"task type {name!r}: timeout_seconds must be positive")
        if task_type.timeout_seconds is not None and task_type.timeout_seconds > MAX_TIMEOUT_SECONDS:
            raise RegistrationError(
                f"task type {name!r}: timeout_seconds may be at most {MAX_TIMEOUT_SECONDS} (Lambda's maximum)"
            )
        beat = task_type.heartbeat_seconds
        if beat is not None and not MIN_HEARTBEAT_SECONDS <= beat <= (task_type.timeout_seconds or 0):
            raise RegistrationError(
                f"task type {name!r}: heartbeat_seconds needs timeout_seconds, and must be from"
                f" {MIN_HEARTBEAT_SECONDS:g} s to timeout_seconds"
            )
        backoff = task_type.backoff
        if backoff is not None and not 0 < backoff.base_seconds <= backoff.max_seconds:
            raise RegistrationError(f"task type {name!r}: backoff needs 0 < base_seconds <= max_seconds")
        problem = flow_option_problem(task_type)
        if problem is not None:
            raise RegistrationError(f"task type {name!r}: {problem}")
        declared = {s.id for other in self._types.values() for s in other.schedules}
        for schedule in task_type.schedules:
            if schedule.id in declared:
                raise RegistrationError(f"task type {name!r}: schedule id {schedule.id!r} is declared twice")
            declared.add(schedule.id)
        self._types[name] = task_type

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def check(self, max_attempts: int, lease_seconds: float, invocation_seconds: float | None = None) -> None:
        """Check every type against the stage's settings.

        Raises:
            RegistrationError: the first type whose options contradict them.
        """
        for task_type in self._types.values():
            task_type.check(max_attempts, lease_seconds, invocation_seconds)


REGISTRY = Registry()


def task_type(
    name: str,
    *,
    payload: type[BaseModel] | None = None,
    max_attempts: int | None = None,
    timeout_seconds: float | None = None,
    backoff: Backoff | None = None,
    heartbeat_seconds: float | None = None,
    concurrency: int | None = None,
    concurrency_key: str | None = None,
    key_concurrency: int | None = None,
    rate_limit: str | None = None,
    key_rate_limit: str | None = None,
    rate_burst: int | None = None,
    schedules: Sequence[Mapping[str, Any]] = (),
    registry: Registry = REGISTRY,
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of task type `name`.

    The flow options (docs/task-types.md): `concurrency=N` attempts at once of the type;
    `key_concurrency=N` at once per flow key, the key being the publish's `key` or the payload's
    value at `concurrency_key` (a dotted path, e.g. "customer.id"); `rate_limit="100/minute"`
    and `key_rate_limit=` starts per window, with `rate_burst` more allowed (default 0).
    `schedules=[{"id": "nightly", "cron": "0 2 * * *", "payload": {...}}]`: schedules of the type kept
    in the code, each the fields of `POST /schedules` but `type` (docs/schedules.md).

    Raises:
        RegistrationError: at import, when the registration breaks a rule.
    """

    declared = []
    if schedules:  # few types keep schedules in the code: the rest do not import their model
        from chalicelib.schedules.definition import declared_definition
    for index, entry in enumerate(schedules):
        try:
            declared.append(declared_definition(name, payload, entry))
        except ValueError as exc:
            raise RegistrationError(f"task type {name!r}: schedules[{index}]: {exc}") from exc

    def register(handler: Handler) -> Handler:
        registry.register(
            TaskType(
                name,
                handler,
                payload,
                max_attempts,
                timeout_seconds,
                backoff,
                heartbeat_seconds,
                concurrency=concurrency,
                concurrency_key=concurrency_key,
                key_concurrency=key_concurrency,
                rate_limit=rate_limit,
                key_rate_limit=key_rate_limit,
                rate_burst=rate_burst,
                schedules=tuple(declared),
            )
        )
        return handler

    return register
