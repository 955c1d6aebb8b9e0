"""The operator's view of the task types: each with its options, its pause and its running count; pause and resume.

Like chalicelib/operate/operations.py these take the runtime, return models and raise domain errors;
app.py's routes shape the answer. A pause or resume is one conditional write to the flow
table's `pauses` item (chalicelib/flow/pause.py), which records who and when in that item's
history, as a retry does in its task's.

A type's running count is read from its semaphore item, `concurrency#<type>`, which the
consumers' concurrency policy (chalicelib/flow/concurrency.py) keeps: `slots` maps each holder
to the epoch millisecond its slot's lease expires. A slot past its expiry belongs to a consumer
that died and is not counted, as the policy itself would reclaim it.
"""

from __future__ import annotations

from typing import Any, Literal

from chalicelib.errors import FieldProblem, ServiceUnavailable, StoreError, TypeNotFound
from chalicelib.flow.concurrency import running
from chalicelib.flow.pause import PAUSE_REFRESH_SECONDS, Change, Pause
from chalicelib.logs import log_event
from chalicelib.models import MAX_TYPE_NAME_LENGTH
from chalicelib.operate.views import TypeChange, TypeDetail, TypeEntry, TypeHistoryEntry, TypeList
from chalicelib.registry import TaskType
from chalicelib.runtime import Runtime

# The option whose presence gives a type a running count.
CAP_OPTION = "concurrency"
# How many of a type's latest pauses and resumes `GET /types/{type}` shows.
RECENT_CHANGES = 20
UNAVAILABLE = "the flow table did not answer; try again"


def _registered(name: str, rt: Runtime) -> TaskType:
    task_type = rt.registry.get(name)
    if task_type is None:
        shown = name if len(name) <= MAX_TYPE_NAME_LENGTH else name[:MAX_TYPE_NAME_LENGTH] + "..."
        raise TypeNotFound(
            f"no task type is named {shown!r}",
            [FieldProblem("type", f"must be one of the registered types: {', '.join(rt.registry.names())}")],
        )
    return task_type


def _entry(task_type: TaskType, pause: Pause | None, rt: Runtime) -> dict[str, Any]:
    """The fields of a type's entry, its running count read now when a cap applies."""
    options = task_type.options()
    return {
        "name": task_type.name,
        "paused": pause is not None,
        "options": options,
        "running": running(rt.flow, task_type.name) if CAP_OPTION in options else None,
        "pausedBy": pause.by if pause else None,
        "pausedAt": pause.at if pause else None,
        "effectiveBy": pause.effective_by if pause else None,
    }


def list_types(rt: Runtime) -> TypeList:
    """`GET /types`: every registered type. One read of the pauses, and one per type with a cap.

    Raises:
        ServiceUnavailable: the flow table did not answer.
    """
    types = [_registered(name, rt) for name in rt.registry.names()]
    try:
        pauses = rt.pauses.all()
        return TypeList(types=[TypeEntry(**_entry(task_type, pauses.get(task_type.name), rt)) for task_type in types])
    except StoreError as exc:
        raise ServiceUnavailable(UNAVAILABLE) from exc


def describe(name: str, rt: Runtime) -> TypeDetail:
    """`GET /types/{type}`: the type's entry and its latest pauses and resumes, oldest first (two reads of
    the pauses item: one consistent, for the entry, and one for the history).

    Raises:
        TypeNotFound: no type has this name.
        ServiceUnavailable: the flow table did not answer.
    """
    task_type = _registered(name, rt)
    try:
        entry = _entry(task_type, rt.pauses.all().get(name), rt)
        changes = [change for change in rt.pauses.history() if change.get("type") == name][-RECENT_CHANGES:]
    except StoreError as exc:
        raise ServiceUnavailable(UNAVAILABLE) from exc
    history = [
        TypeHistoryEntry(action=c["action"], by=c["by"], at=c["at"], changed=c.get("changed", True)) for c in changes
    ]
    return TypeDetail(**entry, history=history)


def change(action: Literal["pause", "resume"], name: str, by: str, rt: Runtime) -> TypeChange:
    """`POST /types/{type}/pause` or `/resume`: one conditional write, recorded in the pauses' history.

    Pausing a paused type keeps its first pause, and resuming a running one changes nothing;
    both are still recorded, and answered `changed: false`.

    Raises:
        TypeNotFound: no type has this name.
        ServiceUnavailable: the flow table did not answer (the action may or may not have landed).
    """
    task_type = _registered(name, rt)
    try:
        done: Change = rt.pauses.change(action, name, by)
        entry = _entry(task_type, done.pause, rt)
    except StoreError as exc:
        raise ServiceUnavailable(
            f"the flow table did not answer; task type {name!r} may or may not have been {action}d:"
            " read GET /types before trying again"
        ) from exc
    log_event(f"operator_{action}", type=name, by=by, changed=done.changed)
    return TypeChange(**entry, changed=done.changed, message=_said(action, name, done))


def _said(action: str, name: str, done: Change) -> str:
    pause = done.pause
    if action == "pause" and pause is not None:
        if not done.changed:
            return f"task type {name!r} was already paused by {pause.by} at {pause.at}; nothing changed"
        return (
            f"task type {name!r} is paused: consumers see it within {PAUSE_REFRESH_SECONDS:g} s, by"
            f" {pause.effective_by}; attempts already started finish, and publishing still accepts its tasks"
        )
    if pause is not None:  # paused again between the resume and the read
        return f"task type {name!r} was resumed, and paused again by {pause.by} at {pause.at}"
    if not done.changed:
        return f"task type {name!r} was not paused; nothing changed"
    return (
        f"task type {name!r} is resumed: consumers see it within {PAUSE_REFRESH_SECONDS:g} s, and its held-back"
        " tasks start again"
    )
