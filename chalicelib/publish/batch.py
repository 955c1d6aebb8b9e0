"""Batch publish: up to 100 tasks in one request, each queued and stored, or refused, on its own.

A task costs one conditional PutItem and a tenth of a SendMessageBatch here, against one
PutItem and one SendMessage through `POST /publish`. The messages go first, to each
entry's class's queue, in SendMessageBatch calls of up to 10 entries and 256 KiB; then the items of the tasks whose
messages were sent are put side by side on a small thread pool (BatchWriteItem cannot
check that an id is new).

As through `POST /publish`, no task is ever stored without its message: a task whose
message was not sent is refused and not stored, and a task whose message was sent but
whose put failed (or whose process died before it) is stored by the consumer that
receives its message.

An entry whose `runAt` is further ahead than SQS can delay a message has its timer written
instead of a message sent (chalicelib/tick/timers.py), one PutItem each, side by side, before the puts.

An entry with a `uniqueKey` claims it before the sends, with one conditional write of its own
(chalicelib/flow/unique.py): one UpdateItem more per such entry, as through `POST /publish`.
Entries of different keys claim side by side; entries sharing a key claim it one after another
in batch order, so the first wins and the others find it held.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from chalicelib import metrics
from chalicelib.consume.expiry import message_attributes, start_by_ms
from chalicelib.errors import (
    FieldProblem,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreError,
    TaskprocError,
    ValidationFailed,
    error_detail,
)
from chalicelib.flow.unique import KeyClaim, KeyHeld, UniqueKeys, Uniqueness
from chalicelib.logs import log_event
from chalicelib.metrics import Metric
from chalicelib.models import Task, TaskId, TaskIn
from chalicelib.publish import api
from chalicelib.publish.answers import BatchEntryRefused, PublishAccepted, PublishBatchAnswer, PublishBatchIn
from chalicelib.runtime import Runtime
from chalicelib.tasks.priority import Priority
from chalicelib.tasks.queue import Outgoing, Queue
from chalicelib.tasks.record import TaskRecord
from chalicelib.tick.timers import Start, Timer

logger = logging.getLogger(__name__)

# Puts and sends in flight at once for one request: enough that 100 puts take about ten
# round trips, well below the SDK's connection pool (runtime.aws_config).
MAX_WORKERS = 16

Result = PublishAccepted | BatchEntryRefused

_task_id = TypeAdapter(TaskId)


@dataclass(frozen=True)
class _Claim:
    """A valid entry, the first in the batch with its id, on its way to the table and the queue."""

    index: int
    task: Task
    start: Start
    message: str
    start_by_ms: int | None = None
    wanted: Uniqueness | None = None

    @property
    def timer(self) -> Timer | None:
        """The timer that holds its message, for an entry due further ahead than SQS can delay one."""
        return api.timer_of(self.task, self.message, self.start, self.start_by_ms)


@dataclass(frozen=True)
class _Sent:
    """A claim whose message is on the queue (or whose timer is written: no message id yet, and the
    timer the id already had, if any), with the unique key it holds, if any."""

    claim: _Claim
    message_id: str | None
    key: KeyClaim | None = None
    earlier_timer: Timer | None = None


def publish_batch(body: dict[str, Any], rt: Runtime) -> PublishBatchAnswer:
    """Store and queue each entry of a batch as `POST /publish` would; one result per entry, in order.

    An entry that breaks a rule, or is larger than a task may be, is refused with the error
    `POST /publish` would answer for it; one whose put or send failed is refused with
    `service_unavailable` and is not kept. An id seen earlier in the batch is a duplicate of
    that entry: it is not stored or sent again, and it shares that entry's outcome. An entry whose
    unique key another task holds is a duplicate naming it (`existingId`), and is not sent; when
    that task is an earlier entry of the batch which was then refused, it shares that refusal.

    Raises:
        ValidationFailed: the body is not a batch (`tasks` missing, not a list, empty, longer
            than MAX_BATCH_TASKS, or another key beside it).
    """
    try:
        batch = PublishBatchIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the body is not a valid batch", api.field_problems(exc)) from exc
    results: list[Result | None] = [None] * len(batch.tasks)
    now_ms = rt.store.now_ms()  # every entry's expiry counts from the request
    claims: dict[str, _Claim] = {}
    repeats: list[tuple[int, _Claim]] = []
    for index, entry in enumerate(batch.tasks):
        try:
            task, validated = _validated(entry, rt)
            message = api.checked_message(task)
            run_at = api.run_at_ms(validated, now_ms)
            start = Start.of(now_ms, validated.delaySeconds, run_at, rt.settings.RUN_AT_TIMER_SECONDS)
        except (ValidationFailed, PayloadTooLarge) as error:
            results[index] = _refused(_usable_id(entry), error)
            continue
        if task.id in claims:
            repeats.append((index, claims[task.id]))
        else:
            start_by = start_by_ms(now_ms, validated.expiresInSeconds)
            wanted = Uniqueness.of(validated)
            claims[task.id] = _Claim(index, task, start, message, start_by, wanted)
    if claims:
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(claims))) as pool:
            keyed = _claim_keys(list(claims.values()), rt, pool, results)
            sent = _queue(keyed, rt, pool, results)
            _store(sent, rt, pool, results)
        unsent_holders = {claim.task.id for claim, key in keyed if key is not None and key.written}
        unsent_holders -= {item.claim.task.id for item in sent}
        _share_refusals_of_holders(unsent_holders, results)
    for index, first in repeats:
        results[index] = _repeat(results[first.index], first.task)
    answer = PublishBatchAnswer(results=[result for result in results if result is not None])
    assert len(answer.results) == len(batch.tasks), "every entry has its result"
    _log_summary(answer)
    return answer


def _validated(entry: Any, rt: Runtime) -> tuple[Task, TaskIn]:
    if not isinstance(entry, dict):
        # What `POST /publish` answers for a body that is not an object.
        raise ValidationFailed(
            "the body must be a JSON object",
            [FieldProblem("body", f"must be a JSON object, not {type(entry).__name__}")],
        )
    task, validated = api.validated_task(entry, rt.registry)
    api.check_callback(task, rt)
    return task, validated


def _claim_keys(
    claims: list[_Claim], rt: Runtime, pool: Executor, results: list[Result | None]
) -> list[tuple[_Claim, KeyClaim | None]]:
    """Claim each entry's unique key; an entry whose key another task holds is answered as a
    duplicate naming it, and one whose claim got no answer is refused: neither is sent."""
    keys = UniqueKeys(rt.flow, rt.store)
    by_key: dict[str, list[_Claim]] = {}
    for claim in claims:
        if claim.wanted is not None:
            by_key.setdefault(claim.wanted.key, []).append(claim)

    def claim_in_order(group: list[_Claim]) -> list[KeyClaim | KeyHeld | Exception]:
        outcomes: list[KeyClaim | KeyHeld | Exception] = []
        for claim in group:
            assert claim.wanted is not None
            try:
                outcomes.append(keys.claim(claim.wanted, claim.task.id))
            except (KeyHeld, StoreError) as outcome:
                outcomes.append(outcome)
            except Exception as unexpected:
                # Kept, not raised from pool.map, which would leave the other entries without answers.
                logger.exception("claim of unique key %r failed", claim.wanted.key)
                outcomes.append(unexpected)
        return outcomes

    decided: dict[int, KeyClaim | KeyHeld | Exception] = {}
    for group, outcomes in zip(by_key.values(), pool.map(claim_in_order, by_key.values()), strict=True):
        decided.update((claim.index, outcome) for claim, outcome in zip(group, outcomes, strict=True))
    going: list[tuple[_Claim, KeyClaim | None]] = []
    for claim in claims:
        outcome = decided.get(claim.index)
        if isinstance(outcome, KeyHeld):
            results[claim.index] = api.held_back(claim.task, outcome.claim)
        elif isinstance(outcome, Exception):
            results[claim.index] = _refused(claim.task.id, ServiceUnavailable(api.UNCLAIMED))
        else:
            going.append((claim, outcome))
    return going


def _queue(
    keyed: list[tuple[_Claim, KeyClaim | None]], rt: Runtime, pool: Executor, results: list[Result | None]
) -> list[_Sent]:
    """Send the claims' messages, each to its class's queue; a claim whose message was not sent is
    refused, not stored, and releases the unique key it claimed. The answers keep the claims' order."""
    claims = [claim for claim, _ in keyed if claim.timer is None]
    message_ids: dict[int, str | None] = {}
    for priority in Priority:
        of_class = [claim for claim in claims if claim.task.priority is priority]
        if of_class:
            sent_ids = _send(of_class, rt.queue_for(priority), pool)
            message_ids.update(zip((c.index for c in of_class), sent_ids, strict=True))
    timed = [claim for claim, _ in keyed if claim.timer is not None]
    timers = dict(zip((claim.index for claim in timed), pool.map(lambda c: _write_timer(c, rt), timed), strict=True))
    sent: list[_Sent] = []
    keys = UniqueKeys(rt.flow, rt.store)
    for claim, key in keyed:
        if claim.index in timers:
            written, earlier = timers[claim.index]
            if written:
                sent.append(_Sent(claim, None, key, earlier))
                continue
            unsent = api.UNTIMED
        elif (message_id := message_ids[claim.index]) is not None:
            sent.append(_Sent(claim, message_id, key))
            continue
        else:
            unsent = api.UNQUEUED
        if key is not None:
            keys.release(key)
        results[claim.index] = _refused(claim.task.id, ServiceUnavailable(unsent))
    return sent


def _write_timer(claim: _Claim, rt: Runtime) -> tuple[bool, Timer | None]:
    """Write a claim's timer in place of its message: (written, the timer its id already had)."""
    assert claim.timer is not None
    try:
        return True, rt.timers.put_new(claim.timer)
    except StoreError as exc:
        logger.warning("timer of task %r not written: %s", claim.task.id, exc)
    except Exception:
        # Kept, not raised from pool.map, which would leave the other entries without answers.
        logger.exception("timer of task %r not written", claim.task.id)
    return False, None


def _send(claims: list[_Claim], queue: Queue, pool: Executor) -> list[str | None]:
    outgoing = [
        Outgoing(claim.message, claim.start.delay_seconds, message_attributes(claim.start_by_ms)) for claim in claims
    ]
    try:
        return queue.send_batch(outgoing, pool)
    except Exception:
        # send_batch answers a failed send with None; anything else is unexpected.
        logger.exception("sending %d messages to %s failed", len(outgoing), queue.name)
        return [None] * len(outgoing)


def _store(sent: list[_Sent], rt: Runtime, pool: Executor, results: list[Result | None]) -> None:
    """Put each sent claim's item, side by side, and answer it: accepted, duplicate or refused."""

    def put(item: _Sent) -> tuple[TaskRecord, bool] | None:
        claim = item.claim
        try:
            outcome = rt.store.create(
                claim.task,
                api.max_attempts_of(claim.task, rt),
                0,
                item.message_id,
                claim.start_by_ms,
                item.key.attribute if item.key is not None else None,
                claim.start.not_before_ms,
            )
            if claim.timer is not None:
                api.settle_timer(rt, claim.timer, item.earlier_timer, outcome[1])
            return outcome
        except StoreError as exc:
            logger.warning("put of task %r failed: %s", claim.task.id, exc)
        except Exception:
            # Caught here rather than raised from pool.map, which would leave the other
            # claims without their answers.
            logger.exception("put of task %r failed", claim.task.id)
        return None

    now_ms = rt.store.now_ms()
    keys = UniqueKeys(rt.flow, rt.store)
    for item, outcome in zip(sent, pool.map(put, sent), strict=True):
        claim = item.claim
        if item.key is not None and outcome is not None:
            keys.settle(item.key, *outcome)
        if outcome is None:
            results[claim.index] = _refused(claim.task.id, ServiceUnavailable(api.unstored(claim.task.id)))
        elif outcome[1]:
            results[claim.index] = api.accepted(claim.task, outcome[0].status, item.message_id, claim.start)
        else:
            results[claim.index] = api.duplicate(claim.task, outcome[0], now_ms)


def _share_refusals_of_holders(unsent_holders: set[str], results: list[Result | None]) -> None:
    """An entry held back by the key an earlier entry claimed, whose send then failed (and its claim
    with it), shares that entry's refusal: neither was published, and both may be sent again."""
    refusals = {result.id: result.error for result in results if isinstance(result, BatchEntryRefused)}
    for index, result in enumerate(results):
        if isinstance(result, PublishAccepted) and result.existingId in unsent_holders:
            results[index] = BatchEntryRefused(id=result.id, error=refusals[result.existingId])


def _repeat(first: Result | None, task: Task) -> Result:
    """The result of an entry whose id an earlier entry of the batch claimed: that entry's outcome."""
    assert first is not None, "a claim has its result before its repeats are answered"
    if isinstance(first, BatchEntryRefused):
        return BatchEntryRefused(id=task.id, error=first.error)
    log_event("duplicate_publish", taskId=task.id, status=first.status.value if first.status else None)
    metrics.count(Metric.DUPLICATES, task.type)
    return PublishAccepted(id=task.id, status=first.status, duplicate=True, existingId=first.existingId)


def _usable_id(entry: Any) -> str | None:
    """The entry's id if it is one a task could have, else None."""
    if not isinstance(entry, dict):
        return None
    try:
        return _task_id.validate_python(entry.get("id"))
    except ValidationError:
        return None


def _refused(task_id: str | None, error: TaskprocError) -> BatchEntryRefused:
    return BatchEntryRefused(id=task_id, error=error_detail(error))


def _log_summary(answer: PublishBatchAnswer) -> None:
    accepted = sum(1 for r in answer.results if isinstance(r, PublishAccepted) and not r.duplicate)
    duplicates = sum(1 for r in answer.results if isinstance(r, PublishAccepted) and r.duplicate)
    log_event(
        "batch_published",
        tasks=len(answer.results),
        accepted=accepted,
        duplicates=duplicates,
        refused=len(answer.results) - accepted - duplicates,
    )
