"""Concurrency caps: at most N attempts of a type (or of one key of it) run at once, everywhere.

    @task_type("export", concurrency=5)                                  # 5 at once in all
    @task_type("sync", concurrency_key="customer.id", key_concurrency=1)  # 1 at once per customer

A cap is one flow item, a semaphore whose slots are leases: attribute `slots`, a map from
holder id (the attempt's lease owner) to the slot's expiry (epoch ms). Timeline of one slot:

    acquire   SET slots.<holder> = now + slot length    (CAP_NOT_REACHED: fewer than N slots)
    refused   the refusal's ALL_OLD lists the slots; expired ones (expiry <= now) are removed
              (STILL_EXPIRED, exactly those) and the acquire is tried once more
    release   REMOVE slots.<holder> after the attempt's outcome is written     (HOLDS_SLOT)
    dies      the slot stays until its expiry, then the next refused acquire reclaims it

A slot lasts the attempt's lease (the stage's LEASE_SECONDS, which a live attempt's timeout
and outcome write fit in), or for a heartbeating type its timeout plus SLOT_MARGIN_SECONDS.
So a slot whose consumer died is free at most one slot length after it was taken: the
dead-slot bound. What a cap cannot promise: a runaway handler that Lambda could not stop
(chalicelib/consume/deadline.py) runs on past its attempt, and its slot holds only to the bound.
The item's size grows by about 45 bytes a slot, and every acquire or release writes it all:
1 WCU up to about 20 slots, N x 45 / 1024 WCU beyond.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from typing import TYPE_CHECKING, ClassVar

from chalicelib.flow.keys import concurrency_item
from chalicelib.flow.policy import Attempt, Deferred, Held
from chalicelib.flow.table import ConditionFailed, FlowTable

if TYPE_CHECKING:
    from chalicelib.registry import TaskType

logger = logging.getLogger(__name__)

CAP_NOT_REACHED = "attribute_exists(#slots) AND size(#slots) < :cap"
SEMAPHORE_IS_NEW = "attribute_not_exists(#slots)"
HOLDS_SLOT = "attribute_exists(#slots.#holder)"
STILL_EXPIRED = "#slots.{slot} <= :now"  # one per slot being reclaimed
# A heartbeating type's slot outlasts its timeout by this: the acquire before, the outcome after.
SLOT_MARGIN_SECONDS = 10.0
# The item outlives its last slot by this much, then DynamoDB's TTL deletes it (a key's item
# would otherwise stay for every key ever seen).
ITEM_RETENTION_SECONDS = 3_600
# A deferred attempt looks again no sooner than this (SQS delays are whole seconds).
MIN_WAIT_MS = 1_000
# Observed durations: each new one moves the mean by this share.
DURATION_WEIGHT = 0.2


class CapReached(Exception):
    """Every slot is held; `slots` maps holder id to expiry (epoch ms), as the refusal saw them."""

    def __init__(self, slots: dict[str, int]) -> None:
        super().__init__(f"{len(slots)} slots held")
        self.slots = slots


class Semaphore:
    """The slots of caps, each cap one flow item; every write is one conditional UpdateItem."""

    def __init__(self, table: FlowTable) -> None:
        self._table = table

    def acquire(self, item: str, holder: str, cap: int, expires_at_ms: int) -> None:
        """Take a slot for `holder` until `expires_at_ms`.

        Raises:
            CapReached: `cap` live slots are held (after expired ones were reclaimed, once).
            StoreError: the flow table did not answer.
        """
        slots: dict[str, int] = {}
        for last_try in (False, True):
            try:
                self._table.update(
                    item,
                    "SET #slots.#holder = :expiry, #expiresAt = :ttl",
                    {":expiry": expires_at_ms, ":ttl": self._ttl(expires_at_ms), ":cap": cap},
                    condition=CAP_NOT_REACHED,
                    names_extra={"#holder": holder},
                )
                return
            except ConditionFailed as refused:
                old = refused.old or {}
                if "slots" not in old:
                    if self._create(item, holder, expires_at_ms):
                        return
                    continue  # another consumer made it first: try it once more
                slots = {name: int(expiry) for name, expiry in old["slots"].items()}
            if holder in slots:
                return  # our own write, whose answer was lost, met by botocore's retry
            now = self._table.now_ms()
            expired = sorted(name for name, expiry in slots.items() if expiry <= now)
            if last_try or not expired:
                break
            self._reclaim(item, expired, now)
            slots = {name: expiry for name, expiry in slots.items() if name not in expired}
        raise CapReached(slots)

    def release(self, item: str, holder: str) -> bool:
        """Give `holder`'s slot back; False when it was no longer held (reclaimed past its expiry).

        Raises:
            StoreError: the flow table did not answer; the slot frees itself at its expiry.
        """
        try:
            self._table.update(item, "REMOVE #slots.#holder", condition=HOLDS_SLOT, names_extra={"#holder": holder})
        except ConditionFailed:
            return False
        return True

    def _create(self, item: str, holder: str, expires_at_ms: int) -> bool:
        """The cap's first slot ever (or since its item expired): the item gets its map."""
        try:
            self._table.update(
                item,
                "SET #slots = :slots, #expiresAt = :ttl",
                {":slots": {holder: expires_at_ms}, ":ttl": self._ttl(expires_at_ms)},
                condition=SEMAPHORE_IS_NEW,
            )
        except ConditionFailed:
            return False
        return True

    def _reclaim(self, item: str, expired: list[str], now_ms: int) -> None:
        """Remove exactly the `expired` slots, each only if it is still expired."""
        placeholders = {f"#h{n}": name for n, name in enumerate(expired)}
        still_expired = " AND ".join(STILL_EXPIRED.format(slot=p) for p in placeholders)
        # Refused: another consumer reclaimed some first; the acquire's retry sees what is left.
        with contextlib.suppress(ConditionFailed):
            self._table.update(
                item,
                "REMOVE " + ", ".join(f"#slots.{p}" for p in placeholders),
                {":now": now_ms},
                condition=still_expired,
                names_extra=placeholders,
            )

    @staticmethod
    def _ttl(expires_at_ms: int) -> int:
        return expires_at_ms // 1000 + ITEM_RETENTION_SECONDS


def running(table: FlowTable, type_name: str) -> int:
    """The live slots of a type's cap now (expiry after now): its attempts running, for GET /types.

    One strongly consistent GetItem; 0 when the cap was never used or its item expired.
    """
    item = table.get(concurrency_item(type_name)) or {}
    now = table.now_ms()
    return sum(1 for expiry in (item.get("slots") or {}).values() if int(expiry) > now)


class Durations:
    """How long a type's attempts take, as this container saw them: when a held slot is likely free."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mean: dict[str, float] = {}

    def add(self, type_name: str, elapsed_ms: float) -> None:
        with self._lock:
            mean = self._mean.get(type_name)
            self._mean[type_name] = elapsed_ms if mean is None else mean + DURATION_WEIGHT * (elapsed_ms - mean)

    def mean(self, type_name: str) -> float | None:
        with self._lock:
            return self._mean.get(type_name)


def slot_seconds(task_type: TaskType, lease_seconds: float) -> float:
    """How long a slot of the type lasts: the attempt's lease, or a heartbeating type's timeout and margin."""
    if task_type.heartbeat_seconds is not None and task_type.timeout_seconds is not None:
        return task_type.timeout_seconds + SLOT_MARGIN_SECONDS
    return lease_seconds


class _Cap:
    """A cap over one item per type (`per_key` False) or per key; the two policies below."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]]
    per_key: ClassVar[bool]

    def __init__(self, semaphore: Semaphore, durations: Durations, lease_seconds: float) -> None:
        self._semaphore = semaphore
        self._durations = durations
        self._lease_seconds = lease_seconds

    def cap(self, task_type: TaskType) -> int | None:
        raise NotImplementedError

    def applies(self, task_type: TaskType) -> bool:
        return self.cap(task_type) is not None

    def before(self, attempt: Attempt) -> Held | None:
        cap = self.cap(attempt.task_type)
        assert cap is not None
        if self.per_key and attempt.key is None:
            return None  # no key: only the type's own limits count it
        item = concurrency_item(attempt.task_type.name, attempt.key if self.per_key else None)
        length_ms = int(slot_seconds(attempt.task_type, self._lease_seconds) * 1000)
        try:
            self._semaphore.acquire(item, attempt.holder, cap, attempt.now_ms + length_ms)
        except CapReached as full:
            raise Deferred(self.name, self._wait_ms(attempt, full.slots, length_ms)) from None
        return Held(self, item, (attempt.task_type.name, attempt.holder))

    def after(self, held: Held, elapsed_ms: float | None) -> None:
        type_name, holder = held.value
        if elapsed_ms is not None:
            self._durations.add(type_name, elapsed_ms)
        if not self._semaphore.release(held.item, holder):
            logger.warning("slot of %s in %s was reclaimed before its release", holder, held.item)

    def _wait_ms(self, attempt: Attempt, slots: dict[str, int], length_ms: int) -> int:
        """When the first held slot is likely free: its start plus the type's observed duration,
        no later than its expiry; a second at least."""
        mean = self._durations.mean(attempt.task_type.name)
        if not slots or mean is None:
            # Reclaimed while we looked, or nothing observed yet: look again soon (less often each time).
            return MIN_WAIT_MS
        soonest_expiry = min(slots.values())
        likely_free = min(expiry - length_ms for expiry in slots.values()) + math.ceil(mean)
        return max(MIN_WAIT_MS, min(likely_free, soonest_expiry) - attempt.now_ms)


class TypeConcurrency(_Cap):
    """`concurrency=N`: at most N attempts of the type at once."""

    name: ClassVar[str] = "concurrency"
    options: ClassVar[frozenset[str]] = frozenset({"concurrency"})
    per_key: ClassVar[bool] = False

    def cap(self, task_type: TaskType) -> int | None:
        return task_type.concurrency


class KeyConcurrency(_Cap):
    """`key_concurrency=N`: at most N attempts at once per flow key (`key` at publish or `concurrency_key`)."""

    name: ClassVar[str] = "key_concurrency"
    options: ClassVar[frozenset[str]] = frozenset({"concurrency_key", "key_concurrency"})
    per_key: ClassVar[bool] = True

    def cap(self, task_type: TaskType) -> int | None:
        return task_type.key_concurrency
