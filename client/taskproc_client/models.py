"""The API's answers as typed, read-only objects, in snake_case (`last_error` for `lastError`).

They mirror the server's answers (chalicelib/tasks/view.py, chalicelib/publish/answers.py,
chalicelib/operate/views.py and chalicelib/schedules/views.py) without importing them: this package
is installed apart from the Lambda code. They are lenient where the server may grow (an unknown
field is ignored, an optional one may be absent), and each keeps the document it was read from
as `.raw`, for printing it as the API sent it or reading a field newer than this client.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr, model_validator
from pydantic.alias_generators import to_camel


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class View(BaseModel):
    """Base of the answers: camelCase in JSON, snake_case here, the raw document kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        view = handler(data)
        if isinstance(data, dict):
            view._raw = data
        return view

    @classmethod
    def of(cls, document: Any) -> Self:
        """The view of one JSON document of the API."""
        return cls.model_validate(document)

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON document of the API this was read from."""
        return self._raw


class HistoryEntry(View):
    """One entry of a task's history: an attempt (`kind` "attempt"), an operator's action
    ("retry", "cancel", "cancel_requested") or the expiry ("expired"); fields of other kinds are None."""

    kind: str = "attempt"
    attempt: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None
    at: datetime | None = None
    by: str | None = None
    from_status: Status | None = None


class ChainStep(View):
    """A step of a task's chain (`then` at publish): its task's id, its type, and whether it was published."""

    id: str
    type: str
    state: str  # "waiting", "published" or "not_run"


class TaskView(View):
    """Where a task stands: `GET /tasks/{id}`."""

    id: str
    type: str = "simulate"
    status: Status
    priority: str = "default"
    key: str | None = None
    tags: list[str] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    not_before: datetime | None = None
    start_by: datetime | None = None
    unique_key: str | None = None
    unique_until: str | None = None  # the window's end (ISO 8601) or "terminal"
    last_error: str | None = None
    cancel_requested: bool = False
    progress: Any = None
    history: list[HistoryEntry] = Field(default_factory=list)
    callback: dict[str, str] | None = None  # {"url"}: where the task's outcome is POSTed
    callback_task: str | None = None  # the id of the `callback` task that delivers it
    then: list[ChainStep] | None = None  # its chain's steps, when it was published with `then`


class WorkflowStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self is not WorkflowStatus.RUNNING


class WorkflowThen(View):
    """The task that runs once a workflow's children have ended: its id (`<workflow id>/then`) and status,
    `WAITING` before it is published, `NOT_RUN` once the workflow ended without it, else its task's status."""

    id: str
    status: str


class Workflow(View):
    """Where a workflow stands: `POST /workflows` and `GET /workflows/{id}`."""

    id: str
    status: WorkflowStatus
    counts: dict[str, int] = Field(default_factory=dict)  # children per task status, e.g. {"COMPLETED": 3}
    children: list[str] = Field(default_factory=list)  # the children's task ids, in the order given
    then: WorkflowThen


class TaskSummary(View):
    """A task in a listing."""

    id: str
    type: str | None = None
    status: Status
    priority: str | None = None
    tags: list[str] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_error: str | None = None


class TaskPage(View):
    """One page of `GET /tasks`; pass `next_cursor` as `cursor` for the next one (None on the last)."""

    tasks: list[TaskSummary]
    next_cursor: str | None = None


class PublishAnswer(View):
    """The answer to `POST /publish`, and an accepted batch entry's result."""

    id: str
    status: Status | None = None
    duplicate: bool = False
    existing_id: str | None = None


class QueueDepth(View):
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    oldest_age_seconds: float | None = None


class FigureSource(View):
    source: str
    exact: bool = True


class Series(View):
    """Counts per bucket, oldest first; the last bucket is the current, partial one."""

    completed: list[int] = Field(default_factory=list)
    failed: list[int] = Field(default_factory=list)
    retried: list[int] = Field(default_factory=list)
    accepted: list[int] = Field(default_factory=list)


class SeriesWindow(View):
    start: str
    step_seconds: int
    series: dict[str, Series] = Field(default_factory=dict)  # "total", and each task type by name


class Percentiles(View):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Latency(View):
    attempt_ms: Percentiles
    end_to_end_ms: Percentiles


class Throughput(View):
    """`GET /stats`' throughput: per minute over the last hour, per hour over the last day, latencies."""

    per_minute: SeriesWindow
    per_hour: SeriesWindow
    latency: dict[str, Latency] = Field(default_factory=dict)


class Stats(View):
    """`GET /stats`: counts of every status (`sources` says which are exact), the queues' depths,
    repairs, the schedules' counters, throughput, and each figure's source."""

    counts: dict[str, int | None]
    queues: dict[str, QueueDepth] = Field(default_factory=dict)
    repairs: dict[str, int | None] = Field(default_factory=dict)
    # The schedules' counters summed: fired, skipped, caughtUp, missed, refused.
    schedules: dict[str, int] = Field(default_factory=dict)
    throughput: Throughput | None = None  # None when the metrics did not answer, or an older server
    oldest_waiting_seconds: float | None = None
    sources: dict[str, FigureSource] = Field(default_factory=dict)


class StuckTask(View):
    """A PENDING task past its dispatch bound, or a PROCESSING one past its lease."""

    id: str
    type: str
    status: Status
    created_at: str
    updated_at: str
    reason: str  # "pending past dispatch" or "lease expired"
    since: str


class StuckPage(View):
    """`GET /stuck`: one bounded Scan's stuck tasks; `next` is None when the Scan reached the table's end."""

    tasks: list[StuckTask] = Field(default_factory=list)
    next: str | None = None
    scanned: int = 0


class Skipped(View):
    id: str
    reason: str


class BulkRetry(View):
    """What `POST /retries` matched and what it queued again."""

    dry_run: bool
    matched: list[str]
    retried: list[str]
    skipped: list[Skipped] = Field(default_factory=list)


class TypeChange(View):
    """A pause or resume of a type, as `GET /types/{type}` lists it."""

    action: str
    by: str
    at: datetime | None = None
    changed: bool = True


class TaskType(View):
    """A task type: `GET /types` entries, `GET /types/{type}` (with `history`), and the answers of
    pause and resume (with `changed` and `message`)."""

    name: str
    paused: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    running: int | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None
    effective_by: datetime | None = None
    history: list[TypeChange] = Field(default_factory=list)
    changed: bool | None = None
    message: str | None = None


class LastFiring(View):
    at: datetime | None = None
    task_id: str | None = None
    status: Status | None = None  # the task's status now; None when the task table has no such task


class FiringCounts(View):
    """What came of a schedule's firings so far."""

    fired: int = 0
    skipped: int = 0  # the previous firing's task had not ended (overlap `skip`)
    missed: int = 0  # older than the catch-up window when the ticker saw them
    refused: int = 0  # the payload no longer fit the type
    caught_up: int = 0  # fired more than a tick late, inside the catch-up window


class FiringSkip(View):
    at: datetime | None = None
    waiting_on: str | None = None


class FiringError(View):
    """The last refused firing, and why (`details`: `{"field", "message"}` per broken rule)."""

    at: datetime | None = None
    message: str = ""
    details: list[dict[str, str]] = Field(default_factory=list)


class ScheduleChange(View):
    kind: str
    at: datetime | None = None
    by: str | None = None


class Schedule(View):
    """A schedule (`GET /schedules/{id}` and the answers of its changes): its definition,
    `next_firings` (UTC, ascending; empty while paused), its last firing and what came of the others."""

    id: str
    type: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    rate: str | None = None
    timezone: str | None = None
    overlap: str | None = None
    catchup_window_seconds: int | None = None
    paused: bool = False
    source: str | None = None  # "api", or "code" for one a task type declares
    next_firings: list[datetime] = Field(default_factory=list)
    last_firing: LastFiring | None = None
    buffered: datetime | None = None
    last_skip: FiringSkip | None = None
    last_error: FiringError | None = None
    counts: FiringCounts = Field(default_factory=FiringCounts)
    history: list[ScheduleChange] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ScheduleSummary(View):
    """A schedule in `GET /schedules`: its timing, its next firing and the time of its last one."""

    id: str
    type: str | None = None
    cron: str | None = None
    rate: str | None = None
    timezone: str | None = None
    paused: bool = False
    source: str | None = None
    next_firing: datetime | None = None
    last_firing: datetime | None = None
    counts: FiringCounts = Field(default_factory=FiringCounts)


class SchedulePage(View):
    schedules: list[ScheduleSummary]
    next_cursor: str | None = None


class BackfillFiring(View):
    at: datetime | None = None
    task_id: str
    duplicate: bool = False  # the firing's task existed already


class Backfill(View):
    """The answer to `POST /schedules/{id}/backfill`: each firing in the range and its task."""

    schedule_id: str
    published: list[BackfillFiring] = Field(default_factory=list)
