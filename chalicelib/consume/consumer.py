"""One batch of SQS records in, one outcome per record out, under Lambda's batch rules.

With `chalice deploy` the event source mapping deletes the whole batch when the
handler returns and keeps the whole batch when it raises. So a batch in which
any record must come back deletes its finished records itself and then raises.
With ReportBatchItemFailures (the packaged template) it returns the ids to keep.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from chalicelib import metrics
from chalicelib.chains import CHAIN_FIELD, steps_of_message
from chalicelib.consume.attempt import AttemptOutcome, abandoned, run_attempt, unknown_type
from chalicelib.consume.backoff import backoff_seconds
from chalicelib.consume.deadline import UNBOUNDED, Invocation
from chalicelib.consume.expiry import START_BY_ATTRIBUTE
from chalicelib.consume.heartbeat import Heartbeat
from chalicelib.consume.terminal import after_terminal
from chalicelib.errors import LeaseLost, QueueError, StaleRecord, StoreError
from chalicelib.flow.gate import Admission, Deferred
from chalicelib.logs import log_event, task_scope
from chalicelib.metrics import Metric
from chalicelib.models import (
    DEFAULT_TYPE,
    POISON_ERROR_PREFIX,
    RETRY_VERSION_ATTRIBUTE,
    Status,
    Task,
    TaskIn,
    WorkflowRef,
)
from chalicelib.registry import TaskType
from chalicelib.runtime import Runtime
from chalicelib.settings import MAX_VISIBILITY_SECONDS
from chalicelib.tasks.priority import Priority, queue_name_of_arn
from chalicelib.tasks.queue import Queue, VisibilityChange
from chalicelib.tasks.record import TaskRecord, iso_from_ms, ms_from_iso
from chalicelib.tasks.store import Acquired, AcquireRefused, Refusal

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED_PERMANENTLY = "failed_permanently"  # the task is FAILED at once; nothing comes back
    CANCELLED = "cancelled"  # its attempt failed after an operator cancelled it
    DROPPED = "dropped"  # its task is already terminal
    EXPIRED = "expired"  # not started before its expiry: ended CANCELLED without running
    RETRY_SCHEDULED = "retry_scheduled"
    DEFERRED = "deferred"  # leased elsewhere or backing off: it comes back later
    RENEWED = "renewed"  # held back by flow control: a fresh copy of its message waits instead
    DEAD_LETTERED = "dead_lettered"  # the task is FAILED; the message leaves for the DLQ
    POISON = "poison"  # not a task: sent to the DLQ at once
    RECORDED = "recorded"  # a dead letter, recorded against its task
    ERROR = "error"  # AWS failed beyond retries: the message comes back

    @property
    def finished(self) -> bool:
        """Whether the message may be deleted."""
        return self in {
            Outcome.SUCCEEDED,
            Outcome.FAILED_PERMANENTLY,
            Outcome.CANCELLED,
            Outcome.DROPPED,
            Outcome.EXPIRED,
            Outcome.RENEWED,
            Outcome.POISON,
            Outcome.RECORDED,
        }


@dataclass(frozen=True)
class RecordResult:
    message_id: str
    receipt_handle: str
    outcome: Outcome
    visibility_seconds: int | None = None


# A task's message is queued again at most this often after SQS dead-lettered it with
# attempts left; a message that can never be handled still ends its task FAILED.
MAX_REDRIVES = 2
# SQS delays a new message by 15 minutes at most.
MAX_SEND_DELAY_SECONDS = 900

# A retry's message can arrive before the retry's write lands: it waits this long and looks
# again. The API's calls end within its function's timeout, so after a few waits the write has
# landed or never will; the message's receives then run out and the dead-letter handler drops it.
RETRY_LANDING_SECONDS = 10
# A message whose task has no item this long after it was sent outlived every publish that
# could still store it (the API's timeout is below it): its publish died after the send.
ADOPTION_REPAIR_MS = 30_000

# A message renewed by a flow deferral carries the id of the message it stands for (the task's
# message as the item knows it, its `lastMessageId`), and how often it was deferred.
TASK_MESSAGE_ATTRIBUTE = "taskMessageId"
DEFERRALS_ATTRIBUTE = "deferrals"

# What became of one record, and the visibility timeout its message needs, if any.
Verdict = tuple[Outcome, int | None]


class BatchIncomplete(Exception):
    """Raised so that the event source mapping keeps the batch's unfinished messages."""


@dataclass(frozen=True)
class SqsRecord:
    """The parts of a Lambda SQS record the consumers use."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at_ms: int | None = None
    retry_of_version: int | None = None  # an operator's retry: the version its restart writes
    start_by_ms: int | None = None  # the task's expiry, for a consumer that has to store the task
    queue_name: str | None = None  # the queue it was received from (its eventSourceARN): its class
    # Every message attribute with a text value, kept when the message is renewed.
    attributes: dict[str, str] = field(default_factory=dict)
    task_message_id: str | None = None  # a renewed message: the id of the message it stands for
    deferrals: int = 0  # flow deferrals of this task's message so far

    @property
    def identity(self) -> str:
        """The id of the task's message this record is: its own, or the one it was renewed from."""
        return self.task_message_id or self.message_id

    @classmethod
    def from_lambda(cls, record: dict[str, Any]) -> SqsRecord:
        attributes = record.get("attributes") or {}
        texts = {
            name: value["stringValue"]
            for name, value in (record.get("messageAttributes") or {}).items()
            if isinstance(value, dict) and isinstance(value.get("stringValue"), str)
        }
        return cls(
            message_id=record["messageId"],
            receipt_handle=record["receiptHandle"],
            body=record["body"],
            receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
            sent_at_ms=_whole(attributes.get("SentTimestamp")),
            retry_of_version=_whole(texts.get(RETRY_VERSION_ATTRIBUTE)),
            start_by_ms=_whole(texts.get(START_BY_ATTRIBUTE)),
            attributes=texts,
            task_message_id=texts.get(TASK_MESSAGE_ATTRIBUTE) or None,
            deferrals=_whole(texts.get(DEFERRALS_ATTRIBUTE)) or 0,
            queue_name=queue_name_of_arn(record.get("eventSourceARN")),
        )


def _whole(value: Any) -> int | None:
    """A whole number sent as a string of ASCII digits (as SQS sends attributes), else None."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def parse_task_message(body: str, priority: Priority = Priority.DEFAULT) -> Task:
    """The task a message carries, of the class of the queue it came from.

    Raises:
        ValueError: the body is not JSON or not a valid task; the message says which rule.
    """
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    # A chain step's place (`chain`) is taskproc's own: TaskIn, the client's body, has no such field.
    position = raw.pop(CHAIN_FIELD, None) if isinstance(raw, dict) else None
    # A workflow's mark is taskproc's own (chalicelib/workflows/), never a client's: not TaskIn's.
    workflow = raw.pop("workflow", None) if isinstance(raw, dict) else None
    try:
        TaskIn.model_validate(raw)
        ref = None if workflow is None else WorkflowRef(str(workflow["id"]), int(workflow["child"]))
    except (ValidationError, TypeError, KeyError, ValueError) as exc:
        if not isinstance(exc, ValidationError):
            raise ValueError(f"not a valid task: workflow: {exc}") from exc
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ValueError(f"not a valid task: {field}: {first['msg']}") from exc
    then, chain = steps_of_message({**raw, CHAIN_FIELD: position})
    return Task(
        id=raw["id"],
        type=raw.get("type", DEFAULT_TYPE),
        payload=raw["payload"],
        priority=priority,
        key=raw.get("key"),
        callback=(raw.get("callback") or {}).get("url"),
        tags=tuple(raw.get("tags", ())),
        then=then,
        chain=chain,
        workflow=ref,
    )


def _seconds(ms: int) -> int:
    return min(MAX_VISIBILITY_SECONDS, max(1, math.ceil(ms / 1000)))


@dataclass
class _Running:
    """One record's attempt, shared by its thread and the batch's: whoever claims it records its outcome."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed: bool = False
    acquired: Acquired | None = None
    started: float = 0.0

    def claim(self) -> bool:
        with self.lock:
            first, self.claimed = not self.claimed, True
            return first


class TaskConsumer:
    """Runs the records of a class's task queue, each under the task's lease, inside one invocation.

    `priority` is the class of the queue its event source polls; a record says which queue it
    came from (its `eventSourceARN`), and that queue's class wins where it names one.
    """

    def __init__(
        self, runtime: Runtime, invocation: Invocation = UNBOUNDED, priority: Priority = Priority.DEFAULT
    ) -> None:
        self._rt = runtime
        self._settings = runtime.settings
        self._invocation = invocation
        self._priority = priority
        self._running: dict[str, _Running] = {}
        self._running_lock = threading.Lock()

    def _slot(self, message_id: str) -> _Running:
        with self._running_lock:
            return self._running.setdefault(message_id, _Running())

    def abandon(self, record: SqsRecord) -> RecordResult | None:
        """Settle a record whose handler still runs when the invocation must settle its batch.

        Lambda cannot stop the handler's thread, so its attempt is recorded here as timed
        out (its result, if it ever comes, is discarded) and its message comes back for
        the next attempt like any failure's. None when the record's own thread is already
        recording its outcome: its result is then the record's.
        """
        slot = self._slot(record.message_id)
        if not slot.claim():
            return None
        outcome, visibility = Outcome.ERROR, None  # not running yet: its message comes back
        acquired = slot.acquired
        if acquired is not None:
            fields = {"taskId": acquired.task.id, "attempt": acquired.attempt, "messageId": record.message_id}
            try:
                with task_scope(acquired.task.id, attempt=acquired.attempt):
                    attempt = abandoned((self._rt.store.now_ms() / 1000 - slot.started) * 1000)
                    log_event("abandoned", logging.WARNING, **fields, durationMs=round(attempt.duration_ms))
                    metrics.count(Metric.ATTEMPTS_FAILED, acquired.task.type)
                    outcome, visibility = self._failed(acquired, attempt, fields)
            except Exception:  # noqa: BLE001 - one record's failure must not lose the others
                log_event("record_error", logging.ERROR, messageId=record.message_id, error=_last_error())
                outcome, visibility = Outcome.ERROR, None
        return RecordResult(record.message_id, record.receipt_handle, outcome, visibility)

    def handle(self, record: SqsRecord) -> RecordResult:
        try:
            outcome, visibility = self._handle(record)
        except Exception:  # noqa: BLE001 - one record's failure must not lose the others
            log_event("record_error", logging.ERROR, messageId=record.message_id, error=_last_error())
            outcome, visibility = Outcome.ERROR, None
        return RecordResult(record.message_id, record.receipt_handle, outcome, visibility)

    def _priority_of(self, record: SqsRecord) -> Priority:
        """The class of the queue `record` came from."""
        return self._rt.priority_of_queue(record.queue_name) or self._priority

    def _queue_of(self, record: SqsRecord) -> Queue:
        """The queue `record` came from: its message's receipt handle is that queue's, and its task's class."""
        return self._rt.queue_for(self._priority_of(record))

    def _handle(self, record: SqsRecord) -> Verdict:
        try:
            task = parse_task_message(record.body, self._priority_of(record))
        except ValueError as exc:
            self._rt.dead_letters.send(
                record.body, {"poisonReason": str(exc)[:1024], "sourceMessageId": record.message_id}
            )
            log_event("poison", logging.WARNING, messageId=record.message_id, reason=str(exc))
            metrics.count(Metric.POISON, None)
            return Outcome.POISON, None
        # Every line logged for this record carries its task id (and, once acquired, the attempt).
        with task_scope(task.id):
            return self._acquire_and_run(record, task)

    def _acquire_and_run(self, record: SqsRecord, task: Task) -> Verdict:
        """Pass the flow gate, take the lease, run; whatever the gate took is given back after."""
        task_type = self._rt.registry.get(task.type)
        owner = uuid.uuid4().hex
        if task_type is None:  # no policy applies: its attempt records the unknown type
            return self._acquired_and_run(record, task, task_type, owner, None)
        gate = self._rt.gate
        try:
            admission = gate.admit(task, task_type, owner)
        except Deferred as deferred:
            return self._held_back(record, task, deferred)
        try:
            return self._acquired_and_run(record, task, task_type, owner, admission)
        finally:
            running = self._slot(record.message_id)
            started = running.acquired is not None  # None: the lease was refused, or never used
            gate.release(admission, self._rt.store.now_ms() - running.started * 1000 if started else None)

    def _acquired_and_run(
        self, record: SqsRecord, task: Task, task_type: TaskType | None, owner: str, admission: Admission | None
    ) -> Verdict:
        store, settings = self._rt.store, self._settings
        max_attempts = task_type.attempts(settings.MAX_ATTEMPTS) if task_type else settings.MAX_ATTEMPTS
        lease = task_type.lease(settings.LEASE_SECONDS) if task_type else settings.LEASE_SECONDS
        try:
            acquired = store.acquire(
                task,
                owner,
                record.identity,
                max_attempts,
                lease,
                start_by_ms=record.start_by_ms,
            )
        except AcquireRefused as refused:
            return self._refused(record, refused)
        if acquired.adopted:
            self._adopted(record, task)
        slot = self._slot(record.message_id)
        with slot.lock:
            if slot.claimed:  # the batch was settled while this acquire ran: the lease runs out unused
                return Outcome.ERROR, None
            slot.acquired, slot.started = acquired, store.now_ms() / 1000
        with task_scope(task.id, attempt=acquired.attempt):
            return self._run(record, task, task_type, acquired, admission)

    def _held_back(self, record: SqsRecord, task: Task, deferred: Deferred) -> Verdict:
        """Defer a task that flow control holds back, spending no attempt and no receive.

        A fresh copy of its message (its body and attributes, the task's message id and one more
        deferral) is sent with the computed delay and this one is finished, so the receive count
        starts over: a capped type's backlog drains however long it waits, and never reaches the
        dead-letter queue for it. Only if the send fails is this message hidden instead, which
        uses one of its receives as any deferral did before.
        """
        if self._slot(record.message_id).claimed:
            return Outcome.ERROR, None  # the batch was settled meanwhile: this message comes back as it is
        delay = self._rt.gate.delay_seconds(deferred, record.deferrals)
        metrics.count(Metric.FLOW_DEFERRED, task.type)
        return self._renewed(
            record, "flow_deferred", delay, record.deferrals + 1, taskId=task.id, deferredBy=deferred.by
        )

    def _renewed(self, record: SqsRecord, event: str, delay: int, deferrals: int, **fields: Any) -> Verdict:
        """Finish `record` and send a fresh copy of it (its body and attributes, the task's message id,
        `deferrals`) hidden for `delay` seconds; if that send fails, hide `record` itself instead."""
        fields = {**fields, "messageId": record.message_id}
        attributes = {**record.attributes, TASK_MESSAGE_ATTRIBUTE: record.identity}
        if deferrals:
            attributes[DEFERRALS_ATTRIBUTE] = str(deferrals)
        try:
            renewed = self._queue_of(record).send(record.body, attributes, delay_seconds=delay)
        except QueueError:
            log_event(event, logging.WARNING, **fields, delaySeconds=delay, renewed=False)
            return Outcome.DEFERRED, delay
        log_event(event, **fields, delaySeconds=delay, deferrals=deferrals or None, newMessageId=renewed)
        return Outcome.RENEWED, None

    def _not_due(self, record: SqsRecord, task: TaskRecord, wait_ms: int) -> Verdict:
        """Hold back a message that arrived before its task's `notBefore`, spending no attempt and no
        receive: renewed like a flow deferral, due when the task is (at most SQS's 900 s at a time)."""
        delay = min(MAX_SEND_DELAY_SECONDS, max(1, math.ceil(wait_ms / 1000)))
        return self._renewed(record, "not_due", delay, record.deferrals, taskId=task.id, notBefore=task.not_before)

    def _adopted(self, record: SqsRecord, task: Task) -> None:
        """The acquire stored the task: its publish sent the message but had not put the item.

        Within the API's timeout that is a race the publish's put then loses (and reads as its
        own); past it, the publish died after its send, and this is the repair.
        """
        age_ms = self._rt.store.now_ms() - record.sent_at_ms if record.sent_at_ms else None
        repaired = age_ms is not None and age_ms > ADOPTION_REPAIR_MS
        # Only a repair is worth a line: the race happens to many tasks of a burst, and its log
        # line would cost more than the rest of the task's lines (docs/bench-figures.md).
        log_event(
            "adopted",
            logging.WARNING if repaired else logging.DEBUG,
            taskId=task.id,
            messageId=record.message_id,
            messageAgeMs=age_ms,
            repaired=repaired,
        )
        if repaired:
            metrics.count(Metric.TASKS_ADOPTED, task.type)

    def _run(
        self, record: SqsRecord, task: Task, task_type: TaskType | None, acquired: Acquired, admission: Admission | None
    ) -> Verdict:
        store, settings = self._rt.store, self._settings
        fields = {"taskId": task.id, "attempt": acquired.attempt, "messageId": record.message_id}
        if acquired.took_over:
            log_event("expired_attempt_recorded", logging.WARNING, **fields)
            metrics.count(Metric.EXPIRED_ATTEMPTS, task.type)
        admitted = {} if admission is None else {"admittedMs": admission.admitted_ms, "countedMs": admission.counted_ms}
        log_event("started", **fields, type=task.type, receiveCount=record.receive_count, **admitted)
        metrics.count(Metric.ATTEMPTS_STARTED, task.type)
        keeper = None
        if task_type is None:
            outcome = unknown_type(acquired.task, self._rt.registry)
        else:
            keeper = self._keeper(record, task_type, acquired)
            outcome = run_attempt(
                acquired.task,
                task_type,
                acquired.attempt,
                acquired.max_attempts,
                settings.LEASE_SECONDS,
                clock=lambda: store.now_ms() / 1000,
                invocation_deadline=self._invocation.attempt_deadline(store.now_ms() / 1000),
                keeper=keeper,
            )
        if not self._slot(record.message_id).claim():
            # The batch was settled without this attempt (chalicelib/consume/deadline.py): its outcome is written.
            log_event("result_discarded", logging.WARNING, **fields, error=outcome.error)
            return Outcome.ERROR, None
        metrics.milliseconds(Metric.ATTEMPT_DURATION, task.type, outcome.duration_ms)
        if outcome.abandoned:
            # Another consumer took the task over: it records this attempt; nothing is kept here.
            log_event("lease_lost", logging.ERROR, **fields, error=outcome.error)
            return Outcome.ERROR, None
        if outcome.cancelled:
            return self._cancelled(acquired, fields)
        if not outcome.succeeded:
            metrics.count(Metric.ATTEMPTS_FAILED, task.type)
            return self._failed(acquired, outcome, fields)
        assert outcome.result_json is not None
        try:
            store.complete(acquired, outcome.result_json, keeper.unwritten_progress if keeper else None)
        except LeaseLost:
            log_event("lease_lost", logging.ERROR, **fields)
            return Outcome.ERROR, None
        log_event("succeeded", **fields, durationMs=round(outcome.duration_ms))
        self._finished(acquired, Metric.COMPLETED)
        return self._followed(acquired.task, (Outcome.SUCCEEDED, None))

    def _keeper(self, record: SqsRecord, task_type: TaskType, acquired: Acquired) -> Heartbeat | None:
        """The heartbeat of an attempt of a long type, its message hidden for its lease; else None."""
        if task_type.heartbeat_seconds is None:
            return None
        keeper = Heartbeat(
            self._rt.store,
            self._queue_of(record),
            acquired,
            record.message_id,
            record.receipt_handle,
            task_type.heartbeat_seconds,
            clock=lambda: self._rt.store.now_ms() / 1000,
        )
        keeper.hide_message()
        return keeper

    def _cancelled(self, acquired: Acquired, fields: dict[str, Any]) -> Verdict:
        try:
            self._rt.store.cancel_attempt(acquired)
        except LeaseLost:
            log_event("lease_lost", logging.ERROR, **fields)
            return Outcome.ERROR, None
        log_event("cancelled", logging.WARNING, **fields, reason="cancelled through its heartbeat")
        self._finished(acquired, Metric.TASKS_CANCELLED)
        return self._followed(acquired.task, (Outcome.CANCELLED, None))

    def _finished(self, acquired: Acquired, metric: Metric) -> None:
        """Count a task that reached a terminal status, and how long it took from its creation."""
        metrics.count(metric, acquired.task.type)
        if acquired.created_at:
            latency = self._rt.store.now_ms() - ms_from_iso(acquired.created_at)
            metrics.milliseconds(Metric.END_TO_END_LATENCY, acquired.task.type, max(0, latency))

    def _failed(self, acquired: Acquired, outcome: AttemptOutcome, fields: dict[str, Any]) -> Verdict:
        error = outcome.error or "failed"
        store = self._rt.store
        final = outcome.permanent or acquired.is_last_attempt
        delay = None if final else self._backoff(acquired)
        written = store.fail(acquired, error, retry_at_ms=None if delay is None else store.now_ms() + delay * 1000)
        if written is Status.CANCELLED:
            log_event("cancelled", logging.WARNING, **fields, error=error)
            self._finished(acquired, Metric.TASKS_CANCELLED)
            return self._followed(acquired.task, (Outcome.CANCELLED, None))
        log_event("failed", logging.WARNING, **fields, error=error, final=final, permanent=outcome.permanent or None)
        if outcome.permanent:
            metrics.count(Metric.PERMANENT_FAILURES, acquired.task.type)
            self._finished(acquired, Metric.TASKS_FAILED)
            return self._followed(acquired.task, (Outcome.FAILED_PERMANENTLY, None))
        if delay is None:
            self._finished(acquired, Metric.TASKS_FAILED)
            # Visible again at once, so its next receive moves it to the dead-letter queue
            # rather than making a finished task wait out a backoff.
            return self._followed(acquired.task, (Outcome.DEAD_LETTERED, 0))
        log_event("retry_scheduled", **fields, delaySeconds=delay)
        metrics.count(Metric.RETRIES_SCHEDULED, acquired.task.type)
        return Outcome.RETRY_SCHEDULED, delay

    def _followed(self, task: Task, verdict: Verdict, record: TaskRecord | None = None) -> Verdict:
        """`verdict` for a task just made or found terminal, once its follow-ups are published
        (chalicelib/consume/terminal.py); if they may not be, its message comes back to publish them."""
        try:
            after_terminal(self._rt, task, record)
        except (QueueError, StoreError):
            log_event("follow_up_unpublished", logging.WARNING, taskId=task.id, error=_last_error())
            return Outcome.ERROR, None
        return verdict

    def _backoff(self, acquired: Acquired) -> int:
        """Seconds before the next attempt: the type's own schedule, else the stage's."""
        task_type = self._rt.registry.get(acquired.task.type)
        schedule = task_type.backoff if task_type else None
        base = schedule.base_seconds if schedule else self._settings.BACKOFF_BASE_SECONDS
        cap = schedule.max_seconds if schedule else self._settings.BACKOFF_MAX_SECONDS
        return backoff_seconds(acquired.attempt, base, cap, self._rt.rng)

    def _refused(self, record: SqsRecord, refused: AcquireRefused) -> Verdict:
        task = refused.record
        fields = {"taskId": task.id, "attempt": task.attempts, "messageId": record.message_id}
        if refused.reason is Refusal.TERMINAL:
            if record.retry_of_version is not None and task.version < record.retry_of_version:
                # An operator's retry sent this before its write; the write may not have landed yet.
                log_event("retry_awaited", **fields, status=task.status.value, version=task.version)
                metrics.count(Metric.RETRIES_AWAITED, task.type)
                return Outcome.DEFERRED, RETRY_LANDING_SECONDS
            log_event("duplicate_dropped", **fields, status=task.status.value)
            # A terminal write whose follow-ups were never published (its consumer died) is seen here.
            return self._followed(task.task, (Outcome.DROPPED, None), task)
        if refused.reason is Refusal.EXHAUSTED:
            reason = task.expired_reason
            try:
                self._rt.store.fail_abandoned(task, reason)
            except StaleRecord:
                return Outcome.ERROR, None
            log_event("failed", logging.WARNING, **fields, error=reason, final=True)
            metrics.count(Metric.TASKS_FAILED, task.type)
            return self._followed(task.task, (Outcome.DEAD_LETTERED, 0))
        if refused.reason is Refusal.EXPIRED_BEFORE_START:
            try:
                expired = self._rt.store.expire_unstarted(task)
            except StaleRecord:
                return Outcome.ERROR, None
            start_by = iso_from_ms(task.start_by_ms) if task.start_by_ms is not None else None
            log_event("expired_before_start", logging.WARNING, **fields, startBy=start_by)
            metrics.count(Metric.TASKS_EXPIRED, task.type)
            metrics.count(Metric.TASKS_CANCELLED, task.type)
            return self._followed(task.task, (Outcome.EXPIRED, None), expired)
        if refused.reason is Refusal.NOT_DUE:
            return self._not_due(record, task, refused.wait_ms)
        if refused.reason is Refusal.CANCEL_REQUESTED:
            try:
                self._rt.store.finish_cancel(task)
            except StaleRecord:
                return Outcome.ERROR, None
            log_event("cancelled", logging.WARNING, **fields, reason="cancelled while its consumer died")
            metrics.count(Metric.TASKS_CANCELLED, task.type)
            return self._followed(task.task, (Outcome.DROPPED, None))
        log_event("deferred", **fields, reason=refused.reason.value, waitMs=refused.wait_ms)
        return Outcome.DEFERRED, _seconds(refused.wait_ms)


class DeadLetterConsumer:
    """Records every dead-lettered message against its task, or logs it when it has none."""

    def __init__(self, runtime: Runtime) -> None:
        self._store = runtime.store
        self._rt = runtime

    def abandon(self, record: SqsRecord) -> RecordResult | None:
        """A dead letter still being recorded when the batch must be settled comes back."""
        return RecordResult(record.message_id, record.receipt_handle, Outcome.ERROR)

    def handle(self, record: SqsRecord) -> RecordResult:
        try:
            outcome = self._handle(record)
            metrics.count(Metric.DEAD_LETTERS, _type_of(record.body))
        except Exception:  # noqa: BLE001 - one record's failure must not lose the others
            log_event("record_error", logging.ERROR, messageId=record.message_id, error=_last_error())
            outcome = Outcome.ERROR
        return RecordResult(record.message_id, record.receipt_handle, outcome)

    def _handle(self, record: SqsRecord) -> Outcome:
        try:
            task = parse_task_message(record.body)
        except ValueError as exc:
            return self._poison(record, str(exc))
        with task_scope(task.id):
            return self._record(record, task)

    def _record(self, record: SqsRecord, task: Task) -> Outcome:
        current = self._store.get(task.id)
        fields = {"taskId": task.id, "messageId": record.message_id}
        if current is None:
            self._store.record_unknown_failure(
                task.id,
                task.payload,
                "dead-lettered before the task was stored",
                task.type,
                task.callback,
                task.workflow,
            )
            log_event("dead_lettered", logging.ERROR, **fields, recorded="created FAILED")
            return self._followed_task(task)
        if current.is_terminal:
            log_event("dead_lettered", **fields, status=current.status.value)
            return self._followed(current, current)
        if current.live_lease(self._store.now_ms()) or (
            current.last_message_id and current.last_message_id != record.identity
        ):
            # Another copy of the task's message is running or will run it.
            log_event("dead_lettered_duplicate", **fields, status=current.status.value)
            return Outcome.RECORDED
        if current.cancel_requested:
            # Its running attempt ended without success (its consumer died): the cancel wins.
            self._store.finish_cancel(current)
            log_event("cancelled", logging.WARNING, **fields, reason="cancelled while its consumer died")
            metrics.count(Metric.TASKS_CANCELLED, current.type)
            return self._followed(current)
        if current.attempts_left > 0 and current.redrives < MAX_REDRIVES:
            return self._redrive(current, fields)
        if current.lease:
            reason = current.expired_reason
        else:
            reason = current.last_error or "the message was dead-lettered before any attempt finished"
        self._store.fail_abandoned(current, reason)
        log_event("dead_lettered", logging.WARNING, **fields, attempt=current.attempts, error=reason)
        return self._followed(current)

    def _followed(self, current: TaskRecord, terminal: TaskRecord | None = None) -> Outcome:
        """RECORDED once the follow-ups of a task this dead letter made or found terminal are published;
        else ERROR, and the dead letter comes back to publish them."""
        return self._followed_task(current.task, terminal)

    def _followed_task(self, task: Task, terminal: TaskRecord | None = None) -> Outcome:
        try:
            after_terminal(self._rt, task, terminal)
        except (QueueError, StoreError):
            log_event("follow_up_unpublished", logging.WARNING, taskId=task.id, error=_last_error())
            return Outcome.ERROR
        return Outcome.RECORDED

    def _redrive(self, current: TaskRecord, fields: dict[str, Any]) -> Outcome:
        """Queue the task again: its message ran out of receives before the task ran out of attempts.

        Deliveries that were only deferred (a duplicate during a lease or a backoff) use up
        receives too, so SQS can dead-letter a task's message early. The new message waits
        out what is left of the backoff and becomes the task's message, in its class's queue.
        """
        wait_ms = (current.retry_at_ms or 0) - self._store.now_ms()
        delay = min(MAX_SEND_DELAY_SECONDS, max(0, math.ceil(wait_ms / 1000)))
        message_id = self._rt.queue_for(current.priority).send(current.task.message_body(), delay_seconds=delay)
        self._store.note_redrive(current, message_id)
        log_event(
            "redriven", logging.WARNING, **fields, attempt=current.attempts, newMessageId=message_id, delaySeconds=delay
        )
        return Outcome.RECORDED

    def _poison(self, record: SqsRecord, reason: str) -> Outcome:
        task_id = _usable_id(record.body)
        if task_id is not None and self._store.record_unknown_failure(task_id, {}, f"{POISON_ERROR_PREFIX} {reason}"):
            log_event("poison_recorded", logging.ERROR, taskId=task_id, messageId=record.message_id, reason=reason)
        else:
            log_event(
                "poison_recorded",
                logging.ERROR,
                taskId=task_id,
                messageId=record.message_id,
                reason=reason,
                body=record.body[:4096],
            )
        return Outcome.RECORDED


def _type_of(body: str) -> str | None:
    """The task type a message names, for its metrics; None when it names none readable."""
    try:
        value = json.loads(body).get("type", DEFAULT_TYPE)
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


def _usable_id(body: str) -> str | None:
    try:
        raw = json.loads(body)
        return TaskIn.model_validate({"id": raw["id"], "payload": {}}).id
    except (ValueError, TypeError, KeyError, RecursionError, ValidationError):
        return None


def _last_error() -> str:
    return traceback.format_exc(limit=3)


def consume(
    records: list[dict[str, Any]],
    handler: TaskConsumer | DeadLetterConsumer,
    queue: Queue,
    report_item_failures: bool,
    invocation: Invocation = UNBOUNDED,
) -> dict[str, Any] | None:
    """Handle a Lambda SQS batch concurrently and settle it under the event source's rules.

    The handlers are waited for until the invocation's end less its margin; a record
    still running then is settled by `handler.abandon` (chalicelib/consume/deadline.py).

    Returns the partial-batch response when `report_item_failures` is set, else None.

    Raises:
        BatchIncomplete: some messages must come back; the finished ones were deleted first.
    """
    parsed = [SqsRecord.from_lambda(record) for record in records]
    pool = ThreadPoolExecutor(max_workers=max(1, len(parsed)))
    futures = [pool.submit(handler.handle, record) for record in parsed]
    done, _ = wait(futures, timeout=invocation.wait_seconds())
    # Never wait for a handler past the invocation's end: Lambda cannot stop its thread either.
    pool.shutdown(wait=False)
    results = []
    for future, record in zip(futures, parsed, strict=True):
        settled = None if future in done else handler.abandon(record)
        results.append(settled if settled is not None else future.result())

    changes = [
        VisibilityChange(r.message_id, r.receipt_handle, r.visibility_seconds)
        for r in results
        if r.visibility_seconds is not None
    ]
    if changes:
        for message_id in queue.change_visibility(changes):
            log_event("visibility_not_changed", logging.WARNING, messageId=message_id)

    unfinished = [r.message_id for r in results if not r.outcome.finished]
    if report_item_failures:
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in unfinished]}
    if unfinished:
        finished = {r.message_id: r.receipt_handle for r in results if r.outcome.finished}
        if finished:
            for message_id in queue.delete(finished):
                log_event("finished_message_not_deleted", logging.WARNING, messageId=message_id)
        raise BatchIncomplete(f"{len(unfinished)} of {len(results)} messages come back later: {unfinished}")
    return None
