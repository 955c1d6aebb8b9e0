"""Rate limits: at most n attempts of a type (or of one key) start in any window, everywhere.

    @task_type("partner", rate_limit="100/minute")                 # 100 starts a minute in all
    @task_type("mail", concurrency_key="to", key_rate_limit="1/second", rate_burst=4)

The Generic Cell Rate Algorithm (GCRA) on one flow item per limit: attribute `tat`, the
theoretical arrival time (epoch ms). With emission interval T = window / n (whole ms, rounded
up) and burst tolerance b x T, a start at `now` conforms when tat - b x T <= now, and moves
tat to max(tat, now) + T. Every write is conditional on the value read (TAT_AS_READ, or
RATE_IS_NEW for a limit never used): each container caches the last value it saw, a refusal's
ALL_OLD gives the fresh one, and the start is tried once more; a start refused twice looks
again after one interval. A start that the cached value already shows early is deferred with
no request at all, since tat never moves back (except by a refund, below).

The bound: at most n + b starts in any window of the limit's length (b+1 at once, then one
every T), across every consumer and container. The burst b is `rate_burst` (default 0: no two
starts closer than T). A start is counted at the `now` its write conformed at (the attempt's
`started` line logs it as `countedMs`); its handler begins once that write and the task's
acquire have returned, so two handlers may begin closer than T by the difference of those
writes' times, botocore's retries included, while their counted starts never are. What it
cannot promise: the hosts' clocks are trusted, so clocks that
differ by d ms can let one more start through per d ms of difference; a start refunded because
its task could not be acquired (a duplicate message) gives its turn back only if nobody has
started since.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from chalicelib.flow.keys import rate_item
from chalicelib.flow.policy import Attempt, Deferred, Held
from chalicelib.flow.table import ConditionFailed, FlowTable

if TYPE_CHECKING:
    from chalicelib.registry import TaskType

RATE_IS_NEW = "attribute_not_exists(#tat)"
TAT_AS_READ = "#tat = :seen"
WINDOWS_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000}
DEFAULT_BURST = 0
_RATE = re.compile(r"^([1-9][0-9]{0,8})/(second|minute|hour)$")
RATE_RULE = "must be '<n>/<second|minute|hour>' with n from 1 to 1,000 a second, e.g. '100/minute'"
# The item outlives its state by this much, then DynamoDB's TTL deletes it.
ITEM_RETENTION_SECONDS = 3_600
# Values seen, per container: a key's limit adds one; past this many the cache starts over.
MAX_CACHED = 4_096


@dataclass(frozen=True)
class Rate:
    """n starts per window."""

    count: int
    window: str

    @property
    def window_ms(self) -> int:
        return WINDOWS_MS[self.window]

    @property
    def interval_ms(self) -> int:
        """T, rounded up to whole milliseconds: never more than n starts a window."""
        return math.ceil(self.window_ms / self.count)

    def __str__(self) -> str:
        return f"{self.count}/{self.window}"


def parse_rate(text: str) -> Rate:
    """The rate `text` spells.

    Raises:
        ValueError: it breaks RATE_RULE (one item takes about 1,000 writes a second: no more).
    """
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(RATE_RULE)
    rate = Rate(int(match.group(1)), match.group(2))
    if rate.count > rate.window_ms:
        raise ValueError(RATE_RULE)
    return rate


class RateExceeded(Exception):
    """The start does not conform; the next one may in `wait_ms`."""

    def __init__(self, wait_ms: int) -> None:
        super().__init__(f"next start in {wait_ms} ms")
        self.wait_ms = wait_ms


@dataclass(frozen=True)
class Taken:
    """A start that conformed: the tat written (for a refund) and the time it was counted at."""

    tat: int
    at_ms: int


class Gcra:
    """The GCRA state of rate limits, one flow item each, with this container's last view of it."""

    def __init__(self, table: FlowTable) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._seen: dict[str, int | None] = {}

    def take(self, item: str, rate: Rate, burst: int) -> Taken:
        """One start now: the tat written (for a refund) and the `now` it conformed at.

        Raises:
            RateExceeded: it does not conform, or two writes in a row met another start.
            StoreError: the flow table did not answer.
        """
        interval, tolerance = rate.interval_ms, burst * rate.interval_ms
        with self._lock:
            seen = self._seen.get(item)
        for _ in range(2):
            now = self._table.now_ms()
            tat = max(seen or 0, now)
            if tat - tolerance > now:
                raise RateExceeded(tat - tolerance - now)
            written = tat + interval
            try:
                self._table.update(
                    item,
                    "SET #tat = :tat, #expiresAt = :ttl",
                    {":tat": written, ":ttl": self._ttl(written, rate), **({} if seen is None else {":seen": seen})},
                    condition=RATE_IS_NEW if seen is None else TAT_AS_READ,
                )
            except ConditionFailed as refused:
                fresh = (refused.old or {}).get("tat")
                seen = None if fresh is None else int(fresh)
                self._remember(item, seen)
                continue
            self._remember(item, written)
            return Taken(written, now)
        raise RateExceeded(interval)

    def refund(self, item: str, rate: Rate, written: int) -> None:
        """Give back a start whose attempt never began, if no start came after it."""
        back = written - rate.interval_ms
        try:
            self._table.update(item, "SET #tat = :tat", {":tat": back, ":seen": written}, condition=TAT_AS_READ)
        except ConditionFailed:
            return  # another start came since: this one stays spent
        self._remember(item, back)

    def _remember(self, item: str, tat: int | None) -> None:
        with self._lock:
            if len(self._seen) >= MAX_CACHED:
                self._seen.clear()
            self._seen[item] = tat

    @staticmethod
    def _ttl(tat_ms: int, rate: Rate) -> int:
        return (tat_ms + rate.window_ms) // 1000 + ITEM_RETENTION_SECONDS


class _Limit:
    """A rate over one item per type (`per_key` False) or per key; the two policies below."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]]
    per_key: ClassVar[bool]

    def __init__(self, gcra: Gcra) -> None:
        self._gcra = gcra

    def rate(self, task_type: TaskType) -> Rate | None:
        raise NotImplementedError

    def applies(self, task_type: TaskType) -> bool:
        return self.rate(task_type) is not None

    def before(self, attempt: Attempt) -> Held | None:
        rate = self.rate(attempt.task_type)
        assert rate is not None
        if self.per_key and attempt.key is None:
            return None
        item = rate_item(attempt.task_type.name, attempt.key if self.per_key else None)
        try:
            taken = self._gcra.take(item, rate, attempt.task_type.burst)
        except RateExceeded as early:
            raise Deferred(self.name, early.wait_ms) from None
        return Held(self, item, (rate, taken.tat), counted_ms=taken.at_ms)

    def after(self, held: Held, elapsed_ms: float | None) -> None:
        """A start is spent once the attempt began; one that never began is refunded."""
        if elapsed_ms is None:
            rate, written = held.value
            self._gcra.refund(held.item, rate, written)


class TypeRate(_Limit):
    """`rate_limit="n/window"`: at most n (+ `rate_burst`) starts of the type in any window."""

    name: ClassVar[str] = "rate"
    options: ClassVar[frozenset[str]] = frozenset({"rate_limit", "rate_burst"})
    per_key: ClassVar[bool] = False

    def rate(self, task_type: TaskType) -> Rate | None:
        return parse_rate(task_type.rate_limit) if task_type.rate_limit else None


class KeyRate(_Limit):
    """`key_rate_limit="n/window"`: at most n (+ `rate_burst`) starts per flow key in any window."""

    name: ClassVar[str] = "key_rate"
    options: ClassVar[frozenset[str]] = frozenset({"key_rate_limit", "concurrency_key", "rate_burst"})
    per_key: ClassVar[bool] = True

    def rate(self, task_type: TaskType) -> Rate | None:
        return parse_rate(task_type.key_rate_limit) if task_type.key_rate_limit else None
