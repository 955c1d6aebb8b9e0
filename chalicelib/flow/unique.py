"""Unique tasks: a key that admits one task per window (`uniqueFor`) or until its task ends
(`uniqueUntil: "terminal"`), held in one flow item per key.

No library keeps such a claim over DynamoDB. Powertools' idempotency is the nearest (one item, one
conditional write, an expiry), but it keys on a request and holds while a handler runs; a unique
key must outlive the request and, in terminal mode, follow a task it does not run. The item
`unique#<key>`:

    holder     the id of the task that holds the key
    until      the end of its window (epoch ms), or "terminal"
    claimedAt  when it was claimed (epoch ms)
    expiresAt  epoch seconds just after the window (DynamoDB's TTL; none in terminal mode). The TTL
               deletes late, so every condition compares `until`, never the item's existence alone.

A publish with a key claims it before its send (api.py, batch.py), along this timeline:

    claim     no claim, or its window ended             -> this id holds it (one UpdateItem)
    same id   the claim's holder is this very id        -> nothing written: the publish goes on as a
                                                           repeat of that task does today
    held      another id, inside its window             -> duplicate, existingId = the holder
    terminal  another id until it ends: read the holder's task (consistent), and
                its task ended                          -> take the key over: a second UpdateItem,
                                                           on the condition that the claim is as read
                no item ADOPTION_REPAIR_MS after claim  -> its publish died before its put, which can
                                                           no longer land: void its id (CANCELLED, so
                                                           a message it did send is dropped, never
                                                           run) and take the key over
                otherwise                               -> duplicate
    release   the send failed, or the id was a known task's -> `until` = now, if the claim is still
                                                           the one this publish wrote

Two publishes racing for a free key write under the same condition: DynamoDB applies one, and the
other's refusal (ReturnValuesOnConditionCheckFailure) names the winner. What it cannot promise: a
window claim is never read, so one whose publish died before its send holds the key, for no task,
until its window ends (a repeat of that publish, same id, goes on under it). A send whose answer was
lost after its message left is released as a failed send is: that task then runs without the key.
An operator's retry of an ended terminal-mode task runs it again without
re-claiming its key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.consume.consumer import ADOPTION_REPAIR_MS
from chalicelib.errors import StoreError
from chalicelib.flow.table import ConditionFailed, FlowTable
from chalicelib.logs import log_event
from chalicelib.models import UNIQUE_UNTIL_TERMINAL, TaskIn
from chalicelib.tasks.record import TaskRecord
from chalicelib.tasks.store import TaskStore

logger = logging.getLogger(__name__)

KEY_PREFIX = "unique#"
TERMINAL = UNIQUE_UNTIL_TERMINAL

# Named parts of the claim's condition.
NO_CLAIM = "attribute_not_exists(#key)"
WINDOW_ENDED = "(attribute_type(#until, :number) AND #until <= :now)"
CLAIM_AS_READ = "(#holder = :seenHolder AND #claimedAt = :seenClaimedAt)"
STILL_THIS_CLAIM = "#holder = :holder AND #claimedAt = :claimedAt"

# A takeover is refused only when another publish took the key first; the next look then finds
# that publish's claim, held. More tries than this means the key changes hands as fast as it is read.
CLAIM_TRIES = 3
# No message of a publish can exist after this: the task queue's MessageRetentionPeriod
# (infra/resources.yaml, 4 days) after its send, plus SQS's longest delay. A holder with no item
# older than this has nothing left to void (its task, if it ran, ended and its item expired).
MESSAGE_LIFETIME_MS = (345_600 + 900) * 1000
VOIDED = "its publish ended before it stored the task; unique key {key!r} passed to task {next!r}"


@dataclass(frozen=True)
class Uniqueness:
    """What a publish asks of its key: a window of `seconds`, or (None) until its task ends."""

    key: str
    seconds: int | None

    @classmethod
    def of(cls, validated: TaskIn) -> Uniqueness | None:
        """The body's unique key and its mode, or None without a key (the model checked the pairing)."""
        if validated.uniqueKey is None:
            return None
        return cls(validated.uniqueKey, validated.uniqueFor)


@dataclass(frozen=True)
class KeyClaim:
    """A claim of a unique key, as written or as read; `written` when this publish wrote it."""

    key: str
    holder: str
    until: int | str
    claimed_at: int
    written: bool = False

    @property
    def attribute(self) -> dict[str, Any]:
        """The task item's `unique` map (record.UNIQUE_ATTRIBUTE)."""
        return {"key": self.key, "until": self.until, "claimedAt": self.claimed_at}

    def is_held_by(self, record: TaskRecord) -> bool:
        """Whether `record` was stored holding this very claim (by this publish or a repeat of it)."""
        return record.unique is not None and (record.unique["key"], record.unique["claimedAt"]) == (
            self.key,
            self.claimed_at,
        )


class KeyHeld(Exception):
    """Another task holds the key; `claim` is its claim, as the refused write saw it."""

    def __init__(self, claim: KeyClaim) -> None:
        super().__init__(f"unique key {claim.key!r} is held by task {claim.holder!r}")
        self.claim = claim


class UniqueKeys:
    """Claims and releases unique keys in the flow table; reads (and voids) holders in the task table."""

    def __init__(self, table: FlowTable, tasks: TaskStore, stored_within_ms: int = ADOPTION_REPAIR_MS) -> None:
        self._table = table
        self._tasks = tasks
        self._stored_within_ms = stored_within_ms

    def claim(self, wanted: Uniqueness, task_id: str) -> KeyClaim:
        """Claim `wanted.key` for `task_id`, or learn that `task_id` already holds it.

        Raises:
            KeyHeld: another task holds the key.
            StoreError: a table did not answer, or the key kept changing hands.
        """
        now = self._table.now_ms()
        until: int | str = TERMINAL if wanted.seconds is None else now + wanted.seconds * 1000
        seen: KeyClaim | None = None
        for _ in range(CLAIM_TRIES):
            condition = f"{NO_CLAIM} OR {WINDOW_ENDED}"
            values: dict[str, Any] = {":holder": task_id, ":until": until, ":now": now, ":number": "N"}
            if seen is not None:
                condition += f" OR {CLAIM_AS_READ}"
                values |= {":seenHolder": seen.holder, ":seenClaimedAt": seen.claimed_at}
            if isinstance(until, int):
                update = "SET #holder = :holder, #until = :until, #claimedAt = :now, #expiresAt = :expiresAt"
                values[":expiresAt"] = until // 1000 + 1
            else:
                # A terminal claim must outlive any TTL an ended window claim of the key had set.
                update = "SET #holder = :holder, #until = :until, #claimedAt = :now REMOVE #expiresAt"
            try:
                self._table.update(KEY_PREFIX + wanted.key, update, values, condition=condition)
                return KeyClaim(wanted.key, task_id, until, now, written=True)
            except ConditionFailed as refused:
                held = _claim_of(wanted.key, refused.old)
            if held.holder == task_id:
                return held
            if not self._released(held, task_id, now):
                raise KeyHeld(held)
            seen = held
        raise StoreError(f"unique key {wanted.key!r} kept changing hands while it was claimed")

    def release(self, claim: KeyClaim) -> None:
        """End a claim this publish wrote, unless another publish has taken the key since.

        A failure is logged, not raised: the publish answers as it would have, and the claim then
        holds until its window ends (terminal: until ADOPTION_REPAIR_MS shows its task was never stored).
        """
        if not claim.written:
            return
        now = self._table.now_ms()
        try:
            self._table.update(
                KEY_PREFIX + claim.key,
                "SET #until = :now, #expiresAt = :expiresAt",
                {":now": now, ":expiresAt": now // 1000 + 1, ":holder": claim.holder, ":claimedAt": claim.claimed_at},
                condition=STILL_THIS_CLAIM,
            )
        except ConditionFailed:
            return
        except StoreError as exc:
            fields = {"uniqueKey": claim.key, "taskId": claim.holder, "error": str(exc)}
            log_event("unique_release_failed", logging.WARNING, **fields)
            return
        log_event("unique_released", uniqueKey=claim.key, taskId=claim.holder)

    def settle(self, claim: KeyClaim, record: TaskRecord, created: bool) -> None:
        """After the put: a claim written for an id that turned out to be another task's is released.

        A repeat of a task's publish whose key's window had ended writes a fresh claim; the task
        it repeats does not hold that claim, so the key goes free again rather than held for nothing.
        """
        if claim.written and not created and not claim.is_held_by(record):
            self.release(claim)

    def _released(self, held: KeyClaim, claimant: str, now: int) -> bool:
        """Whether a terminal-mode claim no longer holds: its task ended, or was never stored."""
        if held.until != TERMINAL:
            return False  # a window ends by time alone, and the condition saw it had not
        holder = self._tasks.get(held.holder)
        if holder is not None:
            return holder.is_terminal
        age_ms = now - held.claimed_at
        if age_ms <= self._stored_within_ms:
            return False  # its publish may still store it
        if age_ms > MESSAGE_LIFETIME_MS:
            return True  # no message of it is left to run it
        holder = self._tasks.void_unstored(held.holder, VOIDED.format(key=held.key, next=claimant))
        if holder is not None:
            return holder.is_terminal  # a consumer stored it from its message in the meantime
        log_event("unique_holder_voided", logging.WARNING, uniqueKey=held.key, taskId=held.holder, claimAgeMs=age_ms)
        return True


def _claim_of(key: str, item: dict[str, Any] | None) -> KeyClaim:
    if item is None:
        raise StoreError(f"the claim of unique key {key!r} was refused but the table returned no item")
    until = item["until"]
    return KeyClaim(key, str(item["holder"]), until if isinstance(until, str) else int(until), int(item["claimedAt"]))
