"""What the `/schedules` routes do, without Chalice: parse, call the store and engine, return models.

Every change is audited on the schedule (`history`: who, from API Gateway's IAM identity, and
when) and logged. A code-declared schedule (`source: "code"`) is the code's: PUT and DELETE are
refused with 409; pause, resume, trigger and backfill are an operator's and allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from chalicelib.errors import Conflict, FieldProblem, ValidationFailed
from chalicelib.logs import log_event
from chalicelib.operate.cursor import decode_cursor, encode_cursor
from chalicelib.publish.api import field_problems
from chalicelib.query import parse_query
from chalicelib.runtime import Runtime
from chalicelib.schedules import engine
from chalicelib.schedules.definition import (
    ScheduleDefinition,
    schedule_id_problem,
    utc_text,
    validated_definition,
)
from chalicelib.schedules.record import Schedule, new_schedule
from chalicelib.schedules.store import ScheduleNotFound
from chalicelib.schedules.views import (
    BackfillAnswer,
    BackfillFiring,
    BackfillIn,
    LastFiring,
    ScheduleDeleted,
    ScheduleListQuery,
    SchedulePage,
    ScheduleSummary,
    ScheduleView,
)
from chalicelib.tasks.view import TaskView

logger = logging.getLogger(__name__)

TIMING_FIELDS = ("cron", "rate", "timezone")
CODE_OWNED = "schedule {id!r} is declared in the code (task type {type!r}): change it there, and deploy"


def view(rt: Runtime, schedule: Schedule, now: datetime) -> ScheduleView:
    """The schedule as `GET /schedules/{id}` shows it (one read of its last firing's task)."""
    definition, state = schedule.definition, schedule.state
    last = state.lastFiring
    return ScheduleView(
        **definition.model_dump(),
        source=state.source,
        nextFirings=[] if definition.paused else definition.next_firings(max(now, schedule.cursor)),
        lastFiring=LastFiring(at=last.at, taskId=last.taskId, status=engine.task_status(rt, last.taskId))
        if last is not None
        else None,
        buffered=state.buffered,
        lastSkip=state.lastSkip,
        lastError=state.lastError,
        counts=state.counts,
        history=state.history,
        createdAt=state.createdAt,
        updatedAt=state.updatedAt,
    )


def _summary(schedule: Schedule, now: datetime) -> ScheduleSummary:
    definition, state = schedule.definition, schedule.state
    upcoming = None if definition.paused else next(definition.firings_after(max(now, schedule.cursor)), None)
    return ScheduleSummary(
        id=definition.id,
        type=definition.type,
        cron=definition.cron,
        rate=definition.rate,
        timezone=definition.timezone,
        paused=definition.paused,
        source=state.source,
        nextFiring=utc_text(upcoming) if upcoming is not None else None,
        lastFiring=state.lastFiring.at if state.lastFiring is not None else None,
        counts=state.counts,
    )


def read(rt: Runtime, schedule_id: str) -> Schedule:
    """The stored schedule.

    Raises:
        ScheduleNotFound: no schedule has this id (or it cannot be one).
    """
    if schedule_id_problem(schedule_id) is not None:
        raise ScheduleNotFound(f"no schedule has id {schedule_id!r} (it cannot be a schedule id)")
    schedule = rt.schedules.get(schedule_id)
    if schedule is None:
        raise ScheduleNotFound(f"no schedule has id {schedule_id!r}")
    return schedule


def create(body: dict[str, Any], by: str, rt: Runtime, now: datetime) -> ScheduleView:
    """`POST /schedules`: store a new schedule; its first firing is the first after now.

    Raises:
        ValidationFailed: the body breaks a rule (each detail names the field).
        ScheduleExists: the id is taken (409).
    """
    definition = validated_definition(body, rt.registry)
    schedule = new_schedule(definition, "api", now, by)
    stored = rt.schedules.create(schedule, engine.next_due(schedule, now))
    log_event("schedule_created", scheduleId=definition.id, by=by)
    return view(rt, stored, now)


def get(schedule_id: str, rt: Runtime, now: datetime) -> ScheduleView:
    return view(rt, read(rt, schedule_id), now)


def list_page(params: Mapping[str, Sequence[str]], rt: Runtime, now: datetime) -> SchedulePage:
    """`GET /schedules?limit=&cursor=`: one page of schedules, a bounded Scan (see docs/schedules.md's cost).

    Raises:
        ValidationFailed: an unknown or repeated parameter, a bad limit or cursor.
    """
    query = parse_query(ScheduleListQuery, params)
    key = rt.cursor_keys.key()
    scope = f"{rt.settings.SCHEDULES_TABLE}|schedules"
    after = decode_cursor(key, scope, query.cursor) if query.cursor else None
    schedules, last = rt.schedules.page(query.limit, after)
    return SchedulePage(
        schedules=[_summary(schedule, now) for schedule in schedules],
        nextCursor=encode_cursor(key, scope, last) if last is not None else None,
    )


def _refuse_code_owned(schedule: Schedule) -> None:
    if schedule.state.source == "code":
        raise Conflict(CODE_OWNED.format(id=schedule.id, type=schedule.definition.type))


def replace(schedule_id: str, body: dict[str, Any], by: str, rt: Runtime, now: datetime) -> ScheduleView:
    """`PUT /schedules/{id}`: a new definition for the schedule (the body's `id`, if given, is the path's).
    A changed cron, rate or zone fires from now on: firings of the old timing are not caught up.

    Raises:
        ValidationFailed, ScheduleNotFound; Conflict: a code-declared schedule, or a concurrent change.
    """
    if "id" in body and body["id"] != schedule_id:
        raise ValidationFailed("the body's id is not the path's", [FieldProblem("id", "must be the path's id")])
    definition = validated_definition({**body, "id": schedule_id}, rt.registry)

    def change(schedule: Schedule) -> Schedule:
        _refuse_code_owned(schedule)
        return reset_cursor_if_retimed(schedule, definition, now).audited("updated", now, by, definition)

    changed = engine.change_schedule(rt.schedules, read(rt, schedule_id).id, change, now)
    log_event("schedule_updated", scheduleId=schedule_id, by=by)
    return view(rt, changed, now)


def reset_cursor_if_retimed(schedule: Schedule, definition: ScheduleDefinition, now: datetime) -> Schedule:
    """The schedule with `definition`; if its timing changed, its cursor moved up to now."""
    old = schedule.definition
    if all(getattr(old, name) == getattr(definition, name) for name in TIMING_FIELDS):
        return schedule.changed(definition)
    return schedule.changed(definition, cursor=utc_text(max(schedule.cursor, now)))


def delete(schedule_id: str, by: str, rt: Runtime) -> ScheduleDeleted:
    """`DELETE /schedules/{id}`. Its firings' tasks stay.

    Raises:
        ScheduleNotFound; Conflict: a code-declared schedule, or a concurrent change.
    """
    schedule = read(rt, schedule_id)
    _refuse_code_owned(schedule)
    rt.schedules.delete(schedule)
    log_event("schedule_deleted", scheduleId=schedule_id, by=by)
    return ScheduleDeleted(id=schedule_id)


def pause(schedule_id: str, paused: bool, by: str, rt: Runtime, now: datetime) -> ScheduleView:
    """`POST /schedules/{id}/pause|resume`. A resumed schedule fires at the next tick the firings it
    missed while paused that are inside its catch-up window; older ones are counted as missed."""
    read(rt, schedule_id)
    kind = "paused" if paused else "resumed"

    def change(schedule: Schedule) -> Schedule:
        definition = schedule.definition.model_copy(update={"paused": paused})
        return schedule.audited(kind, now, by, definition)

    changed = engine.change_schedule(rt.schedules, schedule_id, change, now)
    log_event(f"schedule_{kind}", scheduleId=schedule_id, by=by)
    return view(rt, changed, now)


def trigger(schedule_id: str, by: str, rt: Runtime, now: datetime) -> TaskView:
    """`POST /schedules/{id}/trigger`: one firing now, task `<id>@<now>.manual`; its task's view."""
    read(rt, schedule_id)
    task = engine.trigger(rt, schedule_id, now, by)
    log_event("schedule_triggered", scheduleId=schedule_id, by=by, taskId=task.id)
    return task


def backfill(schedule_id: str, body: dict[str, Any], by: str, rt: Runtime, now: datetime) -> BackfillAnswer:
    """`POST /schedules/{id}/backfill` `{"from", "to"}`: the firings in that range, each under its own id."""
    try:
        wanted = BackfillIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the backfill is not valid", field_problems(exc)) from exc
    read(rt, schedule_id)
    published = engine.backfill(rt, schedule_id, wanted.start.astimezone(UTC), wanted.end.astimezone(UTC), now, by)
    log_event("schedule_backfilled", scheduleId=schedule_id, by=by, published=len(published))
    return BackfillAnswer(scheduleId=schedule_id, published=[BackfillFiring(**entry) for entry in published])
