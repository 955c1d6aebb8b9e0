"""Schedules kept in the code: `@task_type(..., schedules=[...])`, reconciled with the table.

`reconcile(rt, now)` runs once per container (the ticker calls it on its first tick): it creates
the declared schedules the table lacks, rewrites those whose declaration changed (a hash of the
definition, kept on the schedule, tells), and deletes the code-owned ones no longer declared.
It never touches a schedule made through the API: a declaration whose id one holds is reported
and left alone. Which ids the code declared last time is one item (`declared#schedules`), so
reconciling reads that item and one item per declared schedule, and never scans the table.

An operator's pause of a code-owned schedule stands until the code's declaration changes; then
the declaration's `paused` wins, like every other field of it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from chalicelib.logs import log_event
from chalicelib.runtime import Runtime
from chalicelib.schedules.definition import ScheduleDefinition
from chalicelib.schedules.engine import change_schedule, next_due
from chalicelib.schedules.record import Schedule, definition_hash, new_schedule
from chalicelib.schedules.routes import reset_cursor_if_retimed
from chalicelib.schedules.store import ScheduleExists, StaleSchedule

logger = logging.getLogger(__name__)

CODE: Literal["code"] = "code"  # its source, and who its history says made or changed it


def declared_schedules(rt: Runtime) -> dict[str, ScheduleDefinition]:
    """Every schedule the registered task types declare, by id."""
    types = (rt.registry.get(name) for name in rt.registry.names())
    return {schedule.id: schedule for task_type in types if task_type for schedule in task_type.schedules}


def reconcile(rt: Runtime, now: datetime) -> Mapping[str, int]:
    """Make the table's code-owned schedules what the code declares; counts of created, updated,
    deleted, unchanged and conflicts (an API-made schedule holding a declared id)."""
    counts: Counter[str] = Counter(dict.fromkeys(("created", "updated", "deleted", "unchanged", "conflicts"), 0))
    declared = declared_schedules(rt)
    previously, version = rt.schedules.declared()
    for definition in declared.values():
        counts[_reconcile_one(rt, definition, now)] += 1
    for gone in sorted(set(previously) - set(declared)):
        schedule = rt.schedules.get(gone)
        if schedule is not None and schedule.state.source == CODE:
            try:
                rt.schedules.delete(schedule)
            except StaleSchedule:
                continue  # a tick wrote it meanwhile: the next container deletes it
            log_event("schedule_deleted", scheduleId=gone, by=CODE)
            counts["deleted"] += 1
    try:
        rt.schedules.set_declared(list(declared), version)
    except StaleSchedule:
        log_event("declared_schedules_raced", declared=len(declared))
    if any(counts[name] for name in ("created", "updated", "deleted", "conflicts")):
        log_event("schedules_reconciled", **counts)
    return dict(counts)


def _reconcile_one(rt: Runtime, definition: ScheduleDefinition, now: datetime) -> str:
    digest = definition_hash(definition)
    existing = rt.schedules.get(definition.id)
    if existing is None:
        schedule = new_schedule(definition, CODE, now, CODE)
        try:
            rt.schedules.create(schedule, next_due(schedule, now))
        except ScheduleExists:
            return "unchanged"  # another container created it a moment ago
        log_event("schedule_created", scheduleId=definition.id, by=CODE)
        return "created"
    if existing.state.source != CODE:
        log_event("declared_schedule_conflict", logging.ERROR, scheduleId=definition.id, type=definition.type)
        return "conflicts"
    if existing.state.definitionHash == digest:
        return "unchanged"

    def update(schedule: Schedule) -> Schedule:
        retimed = reset_cursor_if_retimed(schedule, definition, now)
        return retimed.audited("updated", now, CODE, definition).changed(definitionHash=digest)

    change_schedule(rt.schedules, definition.id, update, now)
    log_event("schedule_updated", scheduleId=definition.id, by=CODE)
    return "updated"
