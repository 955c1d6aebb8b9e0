"""A task's view: where it stands, with its history in time order, as `GET /tasks/{id}` and the operator's
answers show it.

The store reads an item into a `TaskRecord` (chalicelib/tasks/record.py); only the API turns one into a
view, so the view's models live here and not in chalicelib/models.py, which every function imports: a
consumer's cold start does not define them (tests/unit/test_cold_start.py).
"""

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field

from chalicelib.chains import ENDS_CHAIN, next_step
from chalicelib.consume.expiry import EXPIRED_KIND
from chalicelib.deferred import Model
from chalicelib.models import Action, CallbackIn, Outcome, Status, chain_step_id
from chalicelib.tasks.priority import Priority
from chalicelib.tasks.record import TaskRecord, iso_from_ms, ms_from_iso

# What a client sees in `history[].by`: that an operator acted, never which IAM principal.
OPERATOR = "operator"


class ChainStepView(Model):
    """A step of the task's chain in its view."""

    id: str = Field(description="The step's task id, `<id of the task published with the chain>/then/<n>`.")
    type: str
    state: Literal["waiting", "published", "not_run"] = Field(
        description="`published`: its task exists (read it for its status); `not_run`: the chain ended before it"
        " (a task before it FAILED or was CANCELLED; a retry that completes it goes on); `waiting`: not yet."
    )


class AttemptView(Model):
    """One attempt in a task's history."""

    kind: Literal["attempt"] = "attempt"
    attempt: int = Field(ge=1)
    startedAt: str
    finishedAt: str | None
    outcome: Outcome
    error: str | None


class ActionView(Model):
    """An operator's action in a task's history: what, when, by whom, from which status."""

    kind: Action
    at: str
    by: str = Field(
        description="The IAM principal that asked ('anonymous' where no credentials are checked) on the operator "
        "routes; 'operator' on GET /tasks/{id}, a client route."
    )
    fromStatus: Status


class ExpiredView(Model):
    """A task that was not started by its `startBy`: it ended CANCELLED without running."""

    kind: Literal["expired"] = EXPIRED_KIND
    at: str


HistoryEntry = Annotated[AttemptView | ActionView | ExpiredView, Field(union_mode="left_to_right")]


class TaskView(Model):
    """Where a task stands: the answer to `GET /tasks/{id}`."""

    id: str
    type: str
    priority: Priority = Field(description="The task's class, as published: high, default or low.")
    key: str | None = Field(default=None, description="The flow key given at publish, if any.")
    tags: list[str] = Field(default_factory=list, description="The tags given at publish, in their order; [] for none.")
    status: Status
    attempts: int = Field(ge=0, description="Attempts started so far.")
    maxAttempts: int = Field(ge=1)
    payload: dict[str, Any]
    result: Any = Field(description="What the handler returned (JSON), null until COMPLETED.")
    createdAt: str
    updatedAt: str
    finishedAt: str | None = Field(description="When the task reached COMPLETED, FAILED or CANCELLED.")
    nextAttemptAt: str | None = Field(description="When a RETRYING task's next attempt is due.")
    notBefore: str | None = Field(
        description="When its first attempt may start, from `delaySeconds` or `runAt`; no attempt starts before."
    )
    startBy: str | None = Field(
        description="When the task expires unless its first attempt has started (from `expiresInSeconds`)."
    )
    uniqueKey: str | None = Field(default=None, description="The `uniqueKey` this task was published holding.")
    uniqueUntil: str | None = Field(
        default=None,
        description="Until when its `uniqueKey` admits no other task: the end of its `uniqueFor` window, or"
        " `terminal` (until this task ends); null without a key.",
    )
    lastError: str | None = Field(
        description="Why the last attempt failed, or why the task ended FAILED or CANCELLED; null when COMPLETED"
        " (the failed attempts before its success keep their errors in `history`)."
    )
    cancelRequested: bool = Field(description="An operator asked to cancel the attempt running now.")
    progress: Any = Field(
        default=None,
        description="What the running (or last) attempt's handler last reported through its heartbeat"
        ' (any JSON value up to 4 KiB, e.g. {"done": 3, "total": 10}); null when it reported none.'
        " A new attempt starts with none.",
    )
    history: list[HistoryEntry] = Field(
        description="In time order: each attempt at its `startedAt`, each action and expiry at its `at`."
    )
    callback: CallbackIn | None = Field(default=None, description="The completion callback given at publish.")
    callbackTask: str | None = Field(
        default=None,
        description="With a callback: the id of the `callback` task that delivers its latest end (`<id>/callback`;"
        " after the n-th operator retry, `<id>/callback/<n+1>` once it has ended again), which exists once this"
        " task is terminal; read it like any task to see the delivery's attempts.",
    )
    then: list[ChainStepView] | None = Field(
        default=None,
        description="With a chain: its steps after this task, in order, each with its task's id and whether it"
        " was published (docs/workflows.md, Chains); null without one. Read by `GET /tasks/{id}`; the answers"
        " of an operator's retry and cancel leave it null.",
    )


def task_view(record: TaskRecord, now_ms: int, *, principals: bool = True) -> TaskView:
    """Where `record`'s task stands. Without `principals`, each action's `by` is `OPERATOR`, not who it was."""
    history: list[AttemptView | ActionView | ExpiredView] = [_entry_view(entry, principals) for entry in record.history]
    live = record.live_lease(now_ms)
    if live is not None:
        history.append(
            AttemptView(
                attempt=record.attempts,
                startedAt=live.started_at,
                finishedAt=None,
                outcome=Outcome.RUNNING,
                error=None,
            )
        )
    elif (expired := record.expired_attempt()) is not None:
        history.append(AttemptView.model_validate(expired))
    # The item keeps entries in the order their writes landed, which is not the order things
    # happened: an attempt is written when it ends, so a cancel asked for while it ran lands
    # before it. The view is in time order, each attempt at its start (ties keep the write order).
    history.sort(key=_entry_time)
    return TaskView(
        id=record.id,
        type=record.type,
        priority=record.priority,
        key=record.key,
        tags=list(record.tags),
        status=record.status,
        attempts=record.attempts,
        maxAttempts=record.max_attempts,
        payload=record.payload,
        result=json.loads(record.result_json) if record.result_json is not None else None,
        createdAt=record.created_at,
        updatedAt=record.updated_at,
        finishedAt=record.finished_at,
        nextAttemptAt=iso_from_ms(record.retry_at_ms)
        if record.retry_at_ms and record.status is Status.RETRYING
        else None,
        notBefore=record.not_before,
        startBy=iso_from_ms(record.start_by_ms) if record.start_by_ms is not None else None,
        lastError=record.last_error,
        cancelRequested=record.cancel_requested,
        uniqueKey=record.unique["key"] if record.unique else None,
        uniqueUntil=_until_view(record.unique["until"]) if record.unique else None,
        progress=json.loads(record.progress_json) if record.progress_json is not None else None,
        history=history,
        callback=CallbackIn(url=record.callback) if record.callback else None,
        callbackTask=record.callback_task,
    )


def _until_view(until: int | str) -> str:
    return iso_from_ms(until) if isinstance(until, int) else until


def _entry_time(entry: AttemptView | ActionView | ExpiredView) -> int:
    """When a history entry happened: an attempt's start, an action's or an expiry's `at`."""
    return ms_from_iso(entry.startedAt if isinstance(entry, AttemptView) else entry.at)


def _entry_view(entry: dict[str, Any], principals: bool) -> AttemptView | ActionView | ExpiredView:
    if "attempt" in entry:
        return AttemptView.model_validate(entry)
    if entry.get("kind") == EXPIRED_KIND:
        return ExpiredView.model_validate(entry)
    return ActionView.model_validate(entry if principals else entry | {"by": OPERATOR})


def chain_view(record: TaskRecord, read: Callable[[str], TaskRecord | None]) -> list[ChainStepView] | None:
    """The steps after `record` in its chain, each `published` (its task exists), `not_run` (a task
    before it ended FAILED or CANCELLED) or `waiting`; None without a chain.

    Reads each published step's item with `read` (the store's consistent `get`), stopping at the first
    step not published: steps are published in order, so none after it is.

    Raises:
        StoreError: the table did not answer.
    """
    if not record.then:
        return None
    root, first = next_step(record)
    views: list[ChainStepView] = []
    before = record.status  # the status of the task before the step in hand
    state: str | None = None  # once a step is not published, neither is any after it
    for number, step in enumerate(record.then, start=first):
        step_id = chain_step_id(root, number)
        if state is None:
            published = read(step_id)
            if published is not None:
                views.append(ChainStepView(id=step_id, type=step.type, state="published"))
                before = published.status
                continue
            state = "not_run" if before in ENDS_CHAIN else "waiting"
        views.append(ChainStepView(id=step_id, type=step.type, state=state))
    return views
