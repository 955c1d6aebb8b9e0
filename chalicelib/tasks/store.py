"""The task table. The task item is also the lock that makes deliveries safe.

A task item walks this timeline (times are epoch milliseconds):

    create        PENDING, attempts 0, no lease
    acquire       PROCESSING, attempts n, leaseOwner=o, leaseExpiresAt=now+lease
    complete      COMPLETED (only while leaseOwner=o)
    fail          RETRYING with retryAt=now+backoff, or FAILED after the last attempt
    takeover      leaseExpiresAt <= now: the holder died; the next acquire records
                  attempt n as expired and starts attempt n+1 (if any is left)
    expiry        startBy <= now with attempts 0: the acquire is refused, and the
                  consumer ends the task CANCELLED without running it (expiry.py)
    not due       notBefore > now (delaySeconds, runAt): the acquire is refused, and the
                  consumer renews the message until then (consumer.py)

Every write is one conditional request; a refused acquire learns why from the
same call (ReturnValuesOnConditionCheckFailure), never from a second read.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from chalicelib.consume.expiry import EXPIRED_ERROR, expired_entry
from chalicelib.errors import CancelRequested, LeaseLost, StaleRecord, StoreError
from chalicelib.models import Outcome, Status, Task, WorkflowRef
from chalicelib.tasks.index import index_attributes, index_update
from chalicelib.tasks.record import (
    CALLBACK_ATTRIBUTE,
    CHAIN_ATTRIBUTE,
    THEN_ATTRIBUTE,
    UNIQUE_ATTRIBUTE,
    WORKFLOW_ATTRIBUTE,
    TaskRecord,
    attempt_entry,
    iso_from_ms,
    record_from_item,
    steps_to_json,
)
from chalicelib.tasks.table import TASK_IS_NEW, ConditionFailed, TaskTable, capped_error, deserialize

logger = logging.getLogger(__name__)

# Named parts of the conditions; each reads as the rule it enforces.
TASK_EXISTS = "attribute_exists(#id)"
NOT_TERMINAL = "#status IN (:pending, :processing, :retrying)"
NO_LEASE = "attribute_not_exists(#leaseExpiresAt)"
ATTEMPTS_LEFT = "#attempts < #maxAttempts"
BACKOFF_OVER = "(attribute_not_exists(#retryAt) OR #retryAt <= :nowWithSkew)"
HOLDS_LEASE = "#leaseOwner = :owner"
HISTORY_LENGTH_UNCHANGED = "size(#history) = :historyLength"
NO_CANCEL_REQUESTED = "attribute_not_exists(#cancelRequested)"
# A run that has started keeps its retries whatever its expiry; one that has not starts only before it.
STARTED_OR_NOT_EXPIRED = "(#attempts > :zero OR attribute_not_exists(#startBy) OR #startBy > :now)"
# No attempt starts before the task's time (`delaySeconds`, `runAt`): a message that arrives early
# (another host's clock, a stray copy) is held back. `notBefore` is ISO 8601 in one fixed form
# (record.iso_from_ms: milliseconds, `Z`), whose text order is time order.
NOT_BEFORE_PASSED = "(attribute_not_exists(#notBefore) OR #notBefore <= :nowIso)"

STORED_AND_ACQUIRABLE = (
    f"{NOT_TERMINAL} AND {NO_LEASE} AND {ATTEMPTS_LEFT} AND {BACKOFF_OVER} AND {NO_CANCEL_REQUESTED}"
    f" AND {STARTED_OR_NOT_EXPIRED} AND {NOT_BEFORE_PASSED}"
)
ACQUIRABLE = f"{TASK_IS_NEW} OR ({STORED_AND_ACQUIRABLE})"

# Hosts' clocks differ a little; a retry that arrives this much before its
# retryAt still runs rather than burning one of the message's receives.
CLOCK_SKEW_MS = 1_000
# A takeover first records the dead attempt, then acquires; another consumer may do either first.
TAKEOVER_TRIES = 3


class Refusal(StrEnum):
    """Why an acquire was refused, read from the item the refused write returned."""

    TERMINAL = "terminal"
    LEASED = "leased"
    EXHAUSTED = "exhausted"
    BACKING_OFF = "backing_off"
    CANCEL_REQUESTED = "cancel_requested"  # an operator cancelled it while its holder, now gone, ran it
    EXPIRED = "expired"  # its holder died; the dead attempt is recorded before another starts
    EXPIRED_BEFORE_START = "expired_before_start"  # its startBy passed before its first attempt started
    NOT_DUE = "not_due"  # its notBefore (delaySeconds, runAt) is still ahead


class _NotStored(Exception):
    """An acquire that may not create the item found none."""


class AcquireRefused(Exception):
    """The task may not start an attempt now; `record` is the item as the write saw it."""

    def __init__(self, reason: Refusal, record: TaskRecord, wait_ms: int = 0) -> None:
        super().__init__(f"task {record.id!r} not acquired: {reason.value}")
        self.reason = reason
        self.record = record
        self.wait_ms = wait_ms


@dataclass(frozen=True)
class Acquired:
    """A lease on one attempt of a task."""

    task: Task
    owner: str
    attempt: int
    max_attempts: int
    started_at: str
    previous: TaskRecord | None
    created_at: str = ""
    took_over: bool = False  # a dead holder's attempt was recorded as expired first
    adopted: bool = False  # this consumer stored the task: its publish sent the message, not the item

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


def _history_ends_with(item: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    history = (item or {}).get("history") or []
    if not history:
        return False
    last = history[-1]
    return "attempt" in last and int(last["attempt"]) == entry["attempt"] and last["startedAt"] == entry["startedAt"]


class TaskStore(TaskTable):
    """The lease lifecycle of task items: create, acquire, and record each attempt's outcome."""

    def create(
        self,
        task: Task,
        max_attempts: int,
        delay_seconds: int = 0,
        message_id: str | None = None,
        start_by_ms: int | None = None,
        unique: dict[str, Any] | None = None,
        not_before_ms: int | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Store a new PENDING task whose message `message_id` was already sent (None: a timer holds it,
        chalicelib/tick/timers.py); an existing id keeps its first payload.

        `start_by_ms`, when given, is the task's expiry (chalicelib/consume/expiry.py); `unique`, the claim of
        the unique key it holds (chalicelib/flow/unique.py), kept for its view; `not_before_ms`, when
        its first attempt may start (else `delay_seconds` from now).

        Returns the record and whether it is this publish's task: True when the item is new, and
        also when the consumer received `message_id` first and created the item from it.
        """
        item = self._pending_item(task, max_attempts, delay_seconds, message_id, start_by_ms, not_before_ms)
        if unique is not None:
            item[UNIQUE_ATTRIBUTE] = unique
        old = self._put_new(item)
        if old is None:
            return record_from_item(item), True
        # Made by a consumer from this very message (it won the race with this put), or a duplicate.
        # Not lastMessageId: a duplicate's message may have started an attempt of the existing task.
        return record_from_item(old), message_id is not None and old.get("firstMessageId") == message_id

    def acquire(
        self,
        task: Task,
        owner: str,
        message_id: str,
        max_attempts: int,
        lease_seconds: float,
        start_by_ms: int | None = None,
    ) -> Acquired:
        """Start the next attempt of `task` under a lease held by `owner`.

        A task sent straight to the queue, with no item yet, is created here. A task whose
        holder died has the dead attempt written to its history, and the dead lease removed,
        in one write before the acquire, so that no attempt is lost if this consumer dies
        too; `took_over` then says so.

        A message carrying an expiry (`start_by_ms`) that finds no item stores the task first,
        PENDING with its expiry, as its publish would have; the acquire that follows then
        starts it, or is refused because it expired. The acquire itself never writes `startBy`:
        its SET cannot tell a new item from a stored one whose run has no expiry.

        Raises:
            AcquireRefused: the task is terminal, leased, backing off, out of attempts, or
                expired before its first attempt started (`Refusal.EXPIRED_BEFORE_START`).
        """
        expired: TaskRecord | None = None
        stored_here = False
        for _ in range(TAKEOVER_TRIES):
            try:
                # A message with an expiry, a callback, a chain or a workflow's mark stores its item whole
                # first (`_pending_item`): the acquire's own create writes none of them.
                may_create = (
                    start_by_ms is None
                    and task.callback is None
                    and not task.then
                    and task.chain is None
                    and task.workflow is None
                )
                acquired = self._acquire_once(
                    task, owner, message_id, max_attempts, lease_seconds, may_create=may_create
                )
            except _NotStored:
                pending = self._pending_item(task, max_attempts, message_id=message_id, start_by_ms=start_by_ms)
                stored_here = self._store_new(pending)
                continue
            except AcquireRefused as refused:
                if refused.reason is not Refusal.EXPIRED:
                    raise
                expired = refused.record
                self._retire_expired(expired)
                continue
            return replace(acquired, took_over=expired is not None, adopted=acquired.adopted or stored_here)
        raise AcquireRefused(Refusal.LEASED, expired) if expired else StoreError("acquire kept being refused")

    def _retire_expired(self, record: TaskRecord) -> None:
        """Record a dead holder's attempt as expired and remove its lease, unless someone has since."""
        update = (
            "SET #history = list_append(#history, :entries) ADD #version :one"
            " REMOVE #leaseOwner, #leaseExpiresAt, #attemptStartedAt"
        )
        # Stale: another consumer took it over first, or this write landed and its answer was lost.
        with contextlib.suppress(StaleRecord):
            self._update_if_unchanged(record, update, {":entries": [record.expired_attempt()], ":one": 1}, "taken over")

    def _acquire_once(
        self, task: Task, owner: str, message_id: str, max_attempts: int, lease_seconds: float, *, may_create: bool
    ) -> Acquired:
        now = self.now_ms()
        started_at = iso_from_ms(now)
        update = (
            "SET #status = :processing, #leaseOwner = :owner, #leaseExpiresAt = :leaseExpiresAt,"
            " #attemptStartedAt = :startedAt, #updatedAt = :startedAt, #lastMessageId = :messageId,"
            " #payload = if_not_exists(#payload, :payload), #type = if_not_exists(#type, :type),"
            " #priority = if_not_exists(#priority, :priority),"
            " #createdAt = if_not_exists(#createdAt, :startedAt),"
            " #firstMessageId = if_not_exists(#firstMessageId, :messageId),"
            " #maxAttempts = if_not_exists(#maxAttempts, :maxAttempts), #history = if_not_exists(#history, :empty)"
            " ADD #attempts :one, #version :one"
            " REMOVE #retryAt, #statusShard, #statusSort, #progress"
        )
        values = {
            **self._status_values(),
            ":nowWithSkew": now + CLOCK_SKEW_MS,
            ":now": now,
            ":nowIso": started_at,
            ":zero": 0,
            ":owner": owner,
            ":leaseExpiresAt": now + int(lease_seconds * 1000),
            ":startedAt": started_at,
            ":messageId": message_id,
            ":payload": json.dumps(task.payload, ensure_ascii=False, separators=(",", ":")),
            ":type": task.type,
            ":priority": task.priority.value,
            ":maxAttempts": max_attempts,
            ":empty": [],
            ":one": 1,
        }
        if task.key is not None:  # a task stored from its message keeps its publish's flow key
            update = update.replace(" ADD ", ", #key = if_not_exists(#key, :key) ADD ", 1)
            values[":key"] = task.key
        if task.tags:  # and its tags
            update = update.replace(" ADD ", ", #tags = if_not_exists(#tags, :tags) ADD ", 1)
            values[":tags"] = list(task.tags)
        try:
            condition = ACQUIRABLE if may_create else STORED_AND_ACQUIRABLE
            response = self._update(task.id, update, condition, values, return_values="ALL_OLD")
        except ConditionFailed as refused:
            landed = self._own_landed_acquire(refused.old, owner)
            if landed is not None:
                return landed
            if refused.old is None and not may_create:
                raise _NotStored from None
            raise self._refusal(refused.old, now) from None
        old = deserialize(response.get("Attributes"))
        previous = record_from_item(old) if old else None
        return Acquired(
            task=previous.task if previous else task,
            owner=owner,
            attempt=(previous.attempts if previous else 0) + 1,
            max_attempts=previous.max_attempts if previous else max_attempts,
            started_at=started_at,
            previous=previous,
            created_at=previous.created_at if previous else started_at,
            adopted=previous is None,
        )

    @staticmethod
    def _own_landed_acquire(old_item: dict[str, Any] | None, owner: str) -> Acquired | None:
        """Our acquire, when a retry finds it already applied (its first answer was lost)."""
        if not old_item or old_item.get("leaseOwner") != owner:
            return None
        record = record_from_item(old_item)
        assert record.lease is not None
        return Acquired(
            task=record.task,
            owner=owner,
            attempt=record.attempts,
            max_attempts=record.max_attempts,
            started_at=record.lease.started_at,
            previous=None,
            created_at=record.created_at,
            adopted=True,
        )

    def complete(self, acquired: Acquired, result_json: str, progress_json: str | None = None) -> Status:
        """Record the attempt as succeeded and the task as COMPLETED with its result (JSON text), and
        the last progress its heartbeats had not written yet, if any.

        Raises:
            LeaseLost: another consumer took the task over first.
        """
        now = self.now_ms()
        entry = attempt_entry(acquired.attempt, acquired.started_at, iso_from_ms(now), Outcome.SUCCEEDED, None)
        return self._finish_attempt(
            acquired,
            entry,
            Status.COMPLETED,
            now,
            error=None,
            retry_at_ms=None,
            result=result_json,
            progress=progress_json,
        )

    def fail(self, acquired: Acquired, error: str, retry_at_ms: int | None) -> Status:
        """Record the attempt as failed: RETRYING until `retry_at_ms`, or FAILED when it is None.

        Returns the status written: CANCELLED instead when an operator asked to cancel
        the task while this attempt ran.

        Raises:
            LeaseLost: another consumer took the task over first.
        """
        now = self.now_ms()
        error = capped_error(error)
        entry = attempt_entry(acquired.attempt, acquired.started_at, iso_from_ms(now), Outcome.FAILED, error)
        status = Status.FAILED if retry_at_ms is None else Status.RETRYING
        return self._finish_attempt(acquired, entry, status, now, error=error, retry_at_ms=retry_at_ms)

    def heartbeat(self, acquired: Acquired, lease_seconds: float, progress_json: str | None) -> None:
        """Extend the attempt's lease by `lease_seconds` from now, storing its progress if given.

        Raises:
            LeaseLost: another consumer holds the lease now.
            CancelRequested: an operator asked to cancel the task; the lease is not extended.
        """
        sets = ["#leaseExpiresAt = :leaseExpiresAt"]
        values: dict[str, Any] = {
            ":leaseExpiresAt": self.now_ms() + int(lease_seconds * 1000),
            ":owner": acquired.owner,
        }
        if progress_json is not None:
            sets.append("#progress = :progress")
            values[":progress"] = progress_json
        condition = f"{HOLDS_LEASE} AND {NO_CANCEL_REQUESTED}"
        try:
            self._update(acquired.task.id, f"SET {', '.join(sets)}", condition, values)
        except ConditionFailed as refused:
            old = refused.old or {}
            if old.get("leaseOwner") == acquired.owner and old.get("cancelRequested"):
                raise CancelRequested(f"task {acquired.task.id!r} was cancelled by an operator") from None
            raise LeaseLost(f"task {acquired.task.id!r}: attempt {acquired.attempt} lost its lease") from None

    def cancel_attempt(self, acquired: Acquired) -> Status:
        """End the task CANCELLED, its attempt recorded `cancelled`: the handler stopped on a cancel.

        Raises:
            LeaseLost: another consumer took the task over first.
        """
        now = self.now_ms()
        error = "cancelled by an operator while it ran"
        entry = attempt_entry(acquired.attempt, acquired.started_at, iso_from_ms(now), Outcome.CANCELLED, error)
        return self._finish_attempt(acquired, entry, Status.CANCELLED, now, error=error, retry_at_ms=None)

    def fail_abandoned(self, record: TaskRecord, reason: str) -> None:
        """Mark FAILED a task that can make no more progress, as `record` last saw it.

        Its expired attempt, if any, is added to the history.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        expired = record.expired_attempt()
        self._end_if_unchanged(record, Status.FAILED, [expired] if expired else [], "failed", error=reason)

    def expire_unstarted(self, record: TaskRecord) -> TaskRecord:
        """End CANCELLED a task, as `record` read it, whose expiry passed before its first attempt started.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        entry = expired_entry(iso_from_ms(self.now_ms()))
        return self._end_if_unchanged(record, Status.CANCELLED, [entry], "expired", error=EXPIRED_ERROR)

    def note_redrive(self, record: TaskRecord, message_id: str) -> None:
        """Make `message_id` the task's message after its old one was dead-lettered and sent again.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        now_iso = iso_from_ms(self.now_ms())
        index_sets, _, index_values = index_update(record.status, record.id, now_iso)
        sets = ", ".join(["#lastMessageId = :messageId", "#updatedAt = :now_iso", *index_sets])
        update = f"SET {sets} ADD #redrives :one, #version :one"
        values = {":messageId": message_id, ":now_iso": now_iso, ":one": 1, **index_values}
        self._update_if_unchanged(record, update, values, "redriven")

    def create_follow_up(self, task: Task, max_attempts: int, message_id: str) -> bool:
        """Store PENDING a task taskproc publishes itself (a callback's delivery) whose message
        `message_id` was already sent. False when its id exists: that message is then a duplicate,
        dropped by the consumer like any other.

        An UpdateItem, not `create`'s PutItem: the consumers' roles write the table with nothing else.
        """
        return self._store_new(self._pending_item(task, max_attempts, message_id=message_id))

    def create_failed_follow_up(self, task: Task, max_attempts: int, reason: str) -> bool:
        """Store FAILED, never run and without a message, a task taskproc could not publish (a chain step
        too large to send), so that its failure is seen where the task would be. False when its id exists."""
        item = self._pending_item(task, max_attempts)
        item.update(
            status=Status.FAILED.value,
            finishedAt=item["createdAt"],
            lastError=capped_error(reason),
            expiresAt=self._expires_at(self.now_ms()),
            **index_attributes(Status.FAILED, task.id, item["updatedAt"]),
        )
        return self._store_new(item)

    def note_dispatched(self, task_id: str, message_id: str) -> bool:
        """Make `message_id` the message of a task whose timer just sent it (chalicelib/tick/ticker.py).

        Only a stored task that has no message yet takes it: a task whose publish died before its
        put is stored by the consumer from this message, and one whose message was recorded (or
        which an attempt already took) keeps its own. False when nothing was written. The version is
        left as it is: an operator's cancel read before this write still lands.
        """
        update = "SET #lastMessageId = :messageId"
        condition = f"{TASK_EXISTS} AND attribute_not_exists(#lastMessageId)"
        try:
            self._update(task_id, update, condition, {":messageId": message_id})
        except ConditionFailed as refused:
            # botocore's retry of a write whose answer was lost meets the write itself.
            return (refused.old or {}).get("lastMessageId") == message_id
        return True

    def record_unknown_failure(
        self,
        task_id: str,
        payload: dict[str, Any],
        reason: str,
        task_type: str | None = None,
        callback: str | None = None,
        workflow: WorkflowRef | None = None,
    ) -> bool:
        """Store a FAILED task for an id the table has never seen, with the callback and the workflow's mark
        its message carried (a workflow's child is counted by its mark). False if the id exists."""
        item = self._new_item(task_id, payload, Status.FAILED, max_attempts=1, task_type=task_type)
        if callback is not None:
            item[CALLBACK_ATTRIBUTE] = {"url": callback}
        if workflow is not None:
            item[WORKFLOW_ATTRIBUTE] = workflow.document()
        item.update(
            finishedAt=item["createdAt"],
            lastError=capped_error(reason),
            expiresAt=self._expires_at(self.now_ms()),
            **index_attributes(Status.FAILED, task_id, item["updatedAt"]),
        )
        return self._put_new(item) is None

    def void_unstored(self, task_id: str, reason: str) -> TaskRecord | None:
        """Store CANCELLED, never to run, a task whose publish died before it stored it, so that its
        message, if it was sent, is dropped by the consumer that receives it instead of running it.

        Returns None when stored; else the task as it stands (a consumer stored it from its message).
        """
        item = self._new_item(task_id, {}, Status.CANCELLED, max_attempts=1, task_type=None)
        item.update(
            finishedAt=item["createdAt"],
            lastError=capped_error(reason),
            expiresAt=self._expires_at(self.now_ms()),
            **index_attributes(Status.CANCELLED, task_id, item["updatedAt"]),
        )
        old = self._put_new(item)
        return None if old is None else record_from_item(old)

    # --- internals -------------------------------------------------------

    def _pending_item(
        self,
        task: Task,
        max_attempts: int,
        delay_seconds: int = 0,
        message_id: str | None = None,
        start_by_ms: int | None = None,
        not_before_ms: int | None = None,
    ) -> dict[str, Any]:
        item = self._new_item(task.id, task.payload, Status.PENDING, max_attempts, task.type)
        item["priority"] = task.priority.value
        if not_before_ms is not None:
            item["notBefore"] = iso_from_ms(not_before_ms)
        elif delay_seconds:
            item["notBefore"] = iso_from_ms(self.now_ms() + delay_seconds * 1000)
        if message_id is not None:
            item["lastMessageId"] = item["firstMessageId"] = message_id
        if start_by_ms is not None:
            item["startBy"] = start_by_ms
        if task.key is not None:
            item["key"] = task.key
        if task.callback is not None:
            item[CALLBACK_ATTRIBUTE] = {"url": task.callback}
        if task.tags:
            item["tags"] = list(task.tags)
        if task.then:
            item[THEN_ATTRIBUTE] = steps_to_json(task.then)
        if task.chain is not None:
            item[CHAIN_ATTRIBUTE] = task.chain.model_dump()
        if task.workflow is not None:
            item[WORKFLOW_ATTRIBUTE] = task.workflow.document()
        return item

    def _store_new(self, item: dict[str, Any]) -> bool:
        """Store `item` unless its id exists; True when stored.

        An UpdateItem rather than a PutItem: the consumer's role writes the table with nothing else.
        """
        fields = {name: value for name, value in item.items() if name != "id"}
        update = "SET " + ", ".join(f"#{name} = :{name}" for name in fields)
        try:
            self._update(item["id"], update, TASK_IS_NEW, {f":{name}": value for name, value in fields.items()})
        except ConditionFailed:
            return False
        return True

    def _new_item(
        self, task_id: str, payload: dict[str, Any], status: Status, max_attempts: int, task_type: str | None
    ) -> dict[str, Any]:
        now = iso_from_ms(self.now_ms())
        item: dict[str, Any] = {
            "id": task_id,
            "status": status.value,
            "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            "attempts": 0,
            "maxAttempts": max_attempts,
            "createdAt": now,
            "updatedAt": now,
            "history": [],
            "version": 1,
        }
        if task_type is not None:
            item["type"] = task_type
        return item

    def _finish_attempt(
        self,
        acquired: Acquired,
        entry: dict[str, Any],
        status: Status,
        now: int,
        *,
        error: str | None,
        retry_at_ms: int | None,
        result: str | None = None,
        progress: str | None = None,
    ) -> Status:
        """Write the attempt's outcome while holding its lease; returns the status written.

        A failure does not retry a task an operator asked to cancel: it ends CANCELLED.
        """
        task_id = acquired.task.id
        sets = ["#status = :status", "#updatedAt = :now_iso", "#history = list_append(#history, :entries)"]
        now_iso = iso_from_ms(now)
        values: dict[str, Any] = {
            ":status": status.value,
            ":now_iso": now_iso,
            ":entries": [entry],
            ":owner": acquired.owner,
            ":one": 1,
        }
        if error is not None:
            sets.append("#lastError = :error")
            values[":error"] = error
        if result is not None:
            sets.append("#result = :result")
            values[":result"] = result
        if progress is not None:
            sets.append("#progress = :progress")
            values[":progress"] = progress
        if retry_at_ms is not None:
            sets.append("#retryAt = :retryAt")
            values[":retryAt"] = retry_at_ms
        if status.is_terminal:
            sets += ["#finishedAt = :now_iso", "#expiresAt = :expiresAt"]
            values[":expiresAt"] = self._expires_at(now)
        index_sets, index_removes, index_values = index_update(status, task_id, now_iso)
        removes = ["#leaseOwner", "#leaseExpiresAt", "#attemptStartedAt", *index_removes]
        if status in (Status.COMPLETED, Status.CANCELLED):
            # A success wins over a cancel asked for while it ran; a failure then ends CANCELLED.
            removes += ["#cancelRequested", "#retryAt"]
        if status is Status.COMPLETED:
            # A success has no error: the failed attempts before it keep theirs in the history.
            removes.append("#lastError")
        update = f"SET {', '.join(sets + index_sets)} ADD #version :one REMOVE {', '.join(removes)}"
        condition = f"{TASK_EXISTS} AND {HOLDS_LEASE}"
        if status in (Status.RETRYING, Status.FAILED):
            condition += f" AND {NO_CANCEL_REQUESTED}"
        try:
            self._update(task_id, update, condition, {**values, **index_values})
        except ConditionFailed as refused:
            if _history_ends_with(refused.old, entry):
                return Status(refused.old["status"]) if refused.old else status  # our own write, answer lost
            old = refused.old or {}
            if (
                status is not Status.CANCELLED
                and old.get("leaseOwner") == acquired.owner
                and old.get("cancelRequested")
            ):
                return self._cancel_held(acquired, entry, now, error)
            raise LeaseLost(f"task {task_id!r}: attempt {acquired.attempt} lost its lease") from refused
        return status

    def _cancel_held(self, acquired: Acquired, entry: dict[str, Any], now: int, error: str | None) -> Status:
        """End CANCELLED a task whose attempt failed after an operator asked to cancel it."""
        return self._finish_attempt(acquired, entry, Status.CANCELLED, now, error=error, retry_at_ms=None)

    def finish_cancel(self, record: TaskRecord) -> None:
        """End CANCELLED a task an operator cancelled while an attempt ran whose consumer then died.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        expired = record.expired_attempt()
        self._end_if_unchanged(record, Status.CANCELLED, [expired] if expired else [], "cancelled")

    def _refusal(self, old_item: dict[str, Any] | None, now: int) -> AcquireRefused | StoreError:
        if old_item is None:
            return StoreError("acquire was refused but the table returned no item")
        record = record_from_item(old_item)
        if record.is_terminal:
            return AcquireRefused(Refusal.TERMINAL, record)
        if record.expired_before_start(now):
            return AcquireRefused(Refusal.EXPIRED_BEFORE_START, record)
        if record.not_before is not None and record.not_before > iso_from_ms(now):  # the condition's own test
            return AcquireRefused(Refusal.NOT_DUE, record, wait_ms=max(1, (record.not_before_ms or now) - now))
        lease = record.live_lease(now)
        if lease is not None:
            return AcquireRefused(Refusal.LEASED, record, wait_ms=lease.expires_at_ms - now)
        if record.cancel_requested:
            return AcquireRefused(Refusal.CANCEL_REQUESTED, record)
        if record.attempts >= record.max_attempts:
            return AcquireRefused(Refusal.EXHAUSTED, record)
        if record.lease is not None:
            return AcquireRefused(Refusal.EXPIRED, record)
        wait = (record.retry_at_ms or 0) - now
        return AcquireRefused(Refusal.BACKING_OFF, record, wait_ms=max(wait, 0))

    def _status_values(self) -> dict[str, Any]:
        return {
            ":pending": Status.PENDING.value,
            ":processing": Status.PROCESSING.value,
            ":retrying": Status.RETRYING.value,
        }
