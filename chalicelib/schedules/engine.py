"""Firing schedules: each tick's due ones, an operator's trigger and backfill.

A firing publishes a task whose id is `<schedule id>@<fire time UTC>` through the publish path
(message first, then a conditional put: chalicelib/publish/api.py), so a firing published twice (a tick
delivered twice, two tickers, a crash between the publish and the cursor's write) makes one task
and loses none. Then the schedule's cursor advances in one write under its version; a ticker
whose write loses the race discards its counts, the winner's stand.

Per due schedule and tick: the firings after the cursor up to `now`; those older than the
catch-up window are counted as missed, not fired; the others fire oldest first, at most
MAX_FIRINGS_PER_TICK (the rest stay due for the next tick). `overlap` decides what a firing does
while the previous firing's task has not ended (one read of that task per tick): `allow` fires,
`skip` counts a skip, `buffer_one` holds one firing (later ones are skipped) and fires it at the
first tick that finds the task ended. A firing whose payload no longer fits its type is refused and
recorded on the schedule (`lastError`); nothing a schedule does stops the tick for the others.

`now` is always an argument: the ticker passes its tick's time, the routes the schedule clock's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.errors import Conflict, FieldProblem, TaskNotFound, TaskprocError, ValidationFailed
from chalicelib.logs import log_event
from chalicelib.models import Status, Task
from chalicelib.publish import api
from chalicelib.runtime import Runtime
from chalicelib.schedules.definition import (
    Overlap,
    ScheduleDefinition,
    firing_task_id,
    parse_utc_text,
    payload_problems,
    utc_text,
)
from chalicelib.schedules.record import Counts, FieldIssue, FiringError, FiringRef, Schedule, Skip
from chalicelib.schedules.store import SHARDS, ScheduleStore, StaleSchedule
from chalicelib.tasks.record import record_from_item
from chalicelib.tasks.view import TaskView, task_view

logger = logging.getLogger(__name__)

COUNTS = ("fired", "skipped", "caughtUp", "missed", "refused")
# Due schedules read per Query page, and pages per shard per tick: at most 8 x 4 x 25 = 800
# schedules a tick; more stay due and are read by the next tick.
DUE_PAGE = 25
DUE_PAGES = 4
# A catch-up of a minutely schedule with a window of a day would be 1,440 publishes in one tick.
MAX_FIRINGS_PER_TICK = 60
# A publish is a message and a write, 10 to 30 ms: 500 of them fit well inside a one-minute tick.
MAX_PUBLISHES_PER_TICK = 500
# Missed firings are counted one by one up to this many a tick; past it the cursor jumps.
MAX_MISSED_COUNTED = 10_000
# A firing published more than a tick after its time is a catch-up.
TICK = timedelta(minutes=1)
MAX_BACKFILL_FIRINGS = 100
BACKFILL_RULE = (
    f"a backfill covers at most {MAX_BACKFILL_FIRINGS} firings (each is a message and a write inside the"
    " API's 29 s): split the range"
)
# Read-modify-write of an operator's action, retried over a ticker's concurrent write.
WRITE_ATTEMPTS = 5


def fire_due(rt: Runtime, now: datetime) -> Mapping[str, int]:
    """Fire every schedule due at `now` (one tick); the counts of fired, skipped, caughtUp, missed, refused.

    At most MAX_PUBLISHES_PER_TICK firings are published, so that a tick ends well inside the
    ticker's minute whatever the backlog; the schedules not reached stay due for the next tick.
    """
    counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    for shard in range(SHARDS):
        start = None
        for _ in range(DUE_PAGES):
            due, start = rt.schedules.due(shard, now, DUE_PAGE, start)
            for schedule in due:
                budget = MAX_PUBLISHES_PER_TICK - counts["fired"]
                if budget <= 0:
                    return dict(counts)
                try:
                    counts.update(tick(rt, schedule, now, min(budget, MAX_FIRINGS_PER_TICK)))
                except Exception:  # one schedule's failure is logged; it stays due, the others fire
                    logger.exception("schedule %r could not be ticked", schedule.id)
            if start is None:
                break
    return dict(counts)


def tick(rt: Runtime, schedule: Schedule, now: datetime, budget: int = MAX_FIRINGS_PER_TICK) -> Mapping[str, int]:
    """Fire one schedule's due firings and advance its cursor; what was counted (empty if another
    writer won the cursor's write)."""
    definition = schedule.definition
    if definition.paused:
        return {}
    counts: Counter[str] = Counter()
    now = now.astimezone(UTC)
    cursor = schedule.cursor
    window_start = (now - timedelta(seconds=definition.catchupWindowSeconds)).replace(microsecond=0)
    if cursor < window_start:
        missed = 0
        for at in definition.firings_after(cursor):
            if at >= window_start or missed == MAX_MISSED_COUNTED:
                break
            missed += 1
        counts["missed"] += missed
        cursor = window_start - timedelta(seconds=1)  # firings are on whole seconds
    previous = _Previous(rt, schedule.state.lastFiring)
    state: dict[str, Any] = {}
    buffered = schedule.state.buffered
    if buffered is not None and previous.ended():
        try:
            fired = _fire(rt, schedule, parse_utc_text(buffered), now, counts, state)
        except _Unpublished:
            fired = None
        else:
            buffered = None
        if fired is not None:
            previous.fired(fired)
    fired_now = 0
    for at in definition.firings_after(cursor):
        if at > now or fired_now >= budget:
            break
        if definition.overlap != Overlap.ALLOW and not previous.ended():
            if definition.overlap == Overlap.BUFFER_ONE and buffered is None:
                buffered = utc_text(at)
            else:
                counts["skipped"] += 1
                state["lastSkip"] = Skip(at=utc_text(at), waitingOn=previous.task_id or "")
            cursor = at
            continue
        try:
            fired = _fire(rt, schedule, at, now, counts, state)
        except _Unpublished:
            break  # the cursor stays before it: the next tick publishes it again, under the same id
        if fired is not None:
            previous.fired(fired)
            fired_now += 1
        cursor = at
    if buffered is not None and buffered == schedule.state.buffered and not counts and cursor == schedule.cursor:
        return {}  # `buffer_one` still waiting: nothing to write, and it stays due
    state["buffered"] = buffered
    state["cursor"] = utc_text(cursor)
    state["updatedAt"] = utc_text(now)
    changed = schedule.changed(**state, counts=_added(schedule.state.counts, counts))
    try:
        rt.schedules.replace(changed, next_due(changed, now))
    except StaleSchedule:
        log_event("schedule_tick_lost", scheduleId=schedule.id)
        return {}
    if any(counts.values()):
        log_event("schedule_ticked", scheduleId=schedule.id, **counts)
    return counts


def next_due(schedule: Schedule, now: datetime) -> datetime | None:
    """When the ticker should next read the schedule: its next firing after the cursor, or now again
    while `buffer_one` holds one (each tick then reads the task it waits on)."""
    if schedule.definition.paused:
        return None
    if schedule.state.buffered is not None:
        return now
    return next(schedule.definition.firings_after(schedule.cursor), None)


class _Previous:
    """The previous firing's task, read at most once a tick; a task fired this tick has not ended."""

    def __init__(self, rt: Runtime, last: FiringRef | None) -> None:
        self._rt = rt
        self.task_id = last.taskId if last is not None else None
        self._ended: bool | None = None if last is not None else True

    def ended(self) -> bool:
        if self._ended is None:
            item = self._rt.store.get_item(self.task_id or "")
            # A task gone from the table (past its retention) ended long ago.
            self._ended = item is None or record_from_item(item).status.is_terminal
        return self._ended

    def fired(self, task_id: str) -> None:
        self.task_id, self._ended = task_id, False


def _fire(
    rt: Runtime,
    schedule: Schedule,
    at: datetime,
    now: datetime,
    counts: Counter[str],
    state: dict[str, Any],
    manual: bool = False,
) -> str | None:
    """Publish one firing; its task id, or None when it was refused (recorded in `state`).

    Raises:
        _Unpublished: the publish path did not answer; nothing was counted.
    """
    problems = payload_problems(schedule.definition, rt.registry)
    if problems:
        counts["refused"] += 1
        state["lastError"] = refusal(schedule.definition, at, problems)
        log_event("schedule_firing_refused", logging.WARNING, scheduleId=schedule.id, at=utc_text(at))
        return None
    task_id = firing_task_id(schedule.id, at, manual)
    try:
        publish(rt, schedule.definition, task_id)
    except TaskprocError as exc:
        log_event(
            "schedule_firing_unpublished", logging.WARNING, scheduleId=schedule.id, at=utc_text(at), error=str(exc)
        )
        raise _Unpublished from exc
    counts["fired"] += 1
    if now - at > TICK:
        counts["caughtUp"] += 1
    state["lastFiring"] = FiringRef(at=utc_text(at), taskId=task_id)
    return task_id


def publish(rt: Runtime, definition: ScheduleDefinition, task_id: str) -> bool:
    """Publish a firing's task; whether it was new (False: a firing published before).

    Raises:
        ServiceUnavailable, PayloadTooLarge: the publish path's refusals.
    """
    accepted = api.publish_task(Task(id=task_id, type=definition.type, payload=definition.payload), rt)
    return not accepted.duplicate


def refusal(definition: ScheduleDefinition, at: datetime, problems: list[FieldProblem]) -> FiringError:
    return FiringError(
        at=utc_text(at),
        message=f"the payload no longer fits task type {definition.type!r}; the firing was not published",
        details=[FieldIssue(field=p.field, message=p.message) for p in problems],
    )


def _added(counts: Counts, more: Mapping[str, int]) -> Counts:
    return Counts.model_validate({name: getattr(counts, name) + more.get(name, 0) for name in Counts.model_fields})


def trigger(rt: Runtime, schedule_id: str, now: datetime, by: str) -> TaskView:
    """One firing now, whatever the schedule's timing and overlap: the task `<id>@<now>.manual`'s view.

    Raises:
        ScheduleNotFound: no such schedule.
        Conflict: the payload no longer fits the type (recorded on the schedule too).
        ServiceUnavailable: the firing could not be published.
    """
    at = now.astimezone(UTC).replace(microsecond=0)
    task_id = firing_task_id(schedule_id, at, manual=True)

    def fire(schedule: Schedule) -> Schedule:
        problems = payload_problems(schedule.definition, rt.registry)
        if problems:
            raise _Refused(refusal(schedule.definition, at, problems))
        publish(rt, schedule.definition, task_id)
        counts = _added(schedule.state.counts, {"fired": 1})
        return schedule.audited("triggered", now, by).changed(
            lastFiring=FiringRef(at=utc_text(at), taskId=task_id), counts=counts
        )

    _change_refusing(rt, schedule_id, fire, now)
    record, _ = api.read_task(task_id, rt)
    return task_view(record, rt.store.now_ms())


def backfill(
    rt: Runtime, schedule_id: str, start: datetime, end: datetime, now: datetime, by: str
) -> list[dict[str, Any]]:
    """Publish every firing from `start` to `end` (both included, `end` not after `now`), each with its
    own deterministic id: a firing published before (by a tick or an earlier backfill) is a duplicate.
    What was published, oldest first: `{"at", "taskId", "duplicate"}`.

    Raises:
        ValidationFailed: the range is reversed, in the future, or covers more than MAX_BACKFILL_FIRINGS.
        ScheduleNotFound, Conflict, ServiceUnavailable: as for `trigger`.
    """
    if end < start:
        raise ValidationFailed("the backfill range is reversed", [FieldProblem("to", "must not be before from")])
    if end > now:
        raise ValidationFailed(
            "a backfill covers past firings", [FieldProblem("to", f"must not be after now ({utc_text(now)})")]
        )
    published: list[dict[str, Any]] = []
    created: set[str] = set()  # by any pass: a pass repeated over a ticker's write finds them duplicates

    def fire(schedule: Schedule) -> Schedule:
        definition = schedule.definition
        firings: list[datetime] = []
        for at in definition.firings_after(start - timedelta(seconds=1)):
            if at > end:
                break
            if len(firings) == MAX_BACKFILL_FIRINGS:
                raise ValidationFailed("the backfill range is too long", [FieldProblem("to", BACKFILL_RULE)])
            firings.append(at)
        problems = payload_problems(definition, rt.registry)
        if problems and firings:
            raise _Refused(refusal(definition, firings[0], problems))
        published.clear()
        for at in firings:
            task_id = firing_task_id(schedule.id, at)
            if publish(rt, definition, task_id):
                created.add(task_id)
            published.append({"at": utc_text(at), "taskId": task_id, "duplicate": task_id not in created})
        counts = _added(schedule.state.counts, {"fired": len(created)})
        return schedule.audited("backfilled", now, by).changed(counts=counts)

    _change_refusing(rt, schedule_id, fire, now)
    return published


class _Unpublished(Exception):
    """A firing's publish failed (a queue or table error); it is published again later."""


class _Refused(Exception):
    """A firing's payload no longer fits its type."""

    def __init__(self, error: FiringError) -> None:
        self.error = error


def _change_refusing(rt: Runtime, schedule_id: str, change: Any, now: datetime) -> Schedule:
    """`change` the schedule under its version; a refused firing is recorded and answered 409."""
    try:
        return change_schedule(rt.schedules, schedule_id, change, now)
    except _Refused as refused:
        error = refused.error
        change_schedule(rt.schedules, schedule_id, lambda s: s.changed(lastError=error), now)
        raise Conflict(error.message, [FieldProblem(issue.field, issue.message) for issue in error.details]) from None


def change_schedule(store: ScheduleStore, schedule_id: str, change: Any, now: datetime) -> Schedule:
    """Read the schedule, `change` it, write it under the version read; again if a ticker wrote between.

    Raises:
        ScheduleNotFound: no such schedule.
        StaleSchedule: it kept changing (WRITE_ATTEMPTS times).
    """
    from chalicelib.schedules.store import ScheduleNotFound

    for attempt in range(WRITE_ATTEMPTS):
        schedule = store.get(schedule_id)
        if schedule is None:
            raise ScheduleNotFound(f"no schedule has id {schedule_id!r}")
        changed = change(schedule)
        try:
            return store.replace(changed, next_due(changed, now))
        except StaleSchedule:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def task_status(rt: Runtime, task_id: str) -> Status | None:
    """The status of a firing's task, or None when the table has no such task (yet, or any more)."""
    try:
        record, _ = api.read_task(task_id, rt)
    except TaskNotFound:
        return None
    return record.status
