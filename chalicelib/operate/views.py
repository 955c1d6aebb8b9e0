"""What the operator's routes answer: listings, `/stats`, `/stuck`, bulk retries and task types.

Apart from chalicelib/models.py, which both paths import, so that a consumer's cold start does
not define the operator's answers: only the routes that send them import this module.
"""

from typing import Any, Literal

from pydantic import Field

from chalicelib.deferred import Model
from chalicelib.models import Status
from chalicelib.tasks.priority import Priority


class TaskSummary(Model):
    """A task in a list: enough to decide what to do with it."""

    id: str
    type: str | None
    status: Status
    attempts: int
    maxAttempts: int
    createdAt: str
    updatedAt: str
    lastError: str | None
    priority: Priority = Field(description="The task's class, as published.")
    tags: list[str] = Field(description="The tags given at publish; [] for none.")


class TaskPage(Model):
    """One page of `GET /tasks?status=`, most recently updated first."""

    tasks: list[TaskSummary]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class QueueDepth(Model):
    visible: int = Field(description="Messages waiting to be received.")
    inFlight: int = Field(description="Messages received and not yet deleted or made visible again.")
    delayed: int = Field(description="Messages sent with a delay that has not passed.")
    oldestAgeSeconds: float | None = Field(
        description="Age of the oldest message, from CloudWatch; null where no datapoint is available."
    )


class FigureSource(Model):
    source: str
    exact: bool


class Series(Model):
    """Counts per bucket, oldest first; the last bucket is the current, partial one."""

    completed: list[int] = Field(description="TasksCompleted: tasks that ended COMPLETED.")
    failed: list[int] = Field(description="TasksFailed: tasks that ended FAILED.")
    retried: list[int] = Field(description="RetriesScheduled: failed attempts given another.")
    accepted: list[int] = Field(description="TasksAccepted: tasks published.")


class SeriesWindow(Model):
    start: str = Field(description="The first bucket's start, RFC 3339 UTC.")
    stepSeconds: int = Field(description="Each bucket's length: 60 (per minute) or 3600 (per hour).")
    series: dict[str, Series] = Field(description="`total`, and each registered task type by name.")


class Percentiles(Model):
    p50: float | None
    p95: float | None
    p99: float | None


class Latency(Model):
    attemptMs: Percentiles = Field(description="AttemptDuration over the last hour, milliseconds.")
    endToEndMs: Percentiles = Field(description="EndToEndLatency (created to terminal) over the last hour.")


class Throughput(Model):
    """`GET /stats`' throughput, from taskproc's own metrics (chalicelib/operate/throughput.py)."""

    perMinute: SeriesWindow = Field(description="The last hour, 60 buckets of a minute.")
    perHour: SeriesWindow = Field(description="The last day, 24 buckets of an hour.")
    latency: dict[str, Latency] = Field(description="`total`, and each registered task type by name.")


class Stats(Model):
    """`GET /stats`: counts of the statuses that can be counted at a bounded cost, and the queues' depths."""

    counts: dict[str, int | None] = Field(
        description="Every status. FAILED, RETRYING and CANCELLED are exact (the index); COMPLETED, PENDING and"
        " PROCESSING are approximate (the metrics and the queues): `sources` says what each means."
    )
    throughput: Throughput | None = Field(
        default=None, description="Null only when the metrics did not answer (see `sources.throughput`)."
    )
    oldestWaitingSeconds: float | None = Field(
        default=None,
        description="The age of the oldest message waiting in the task queues (the oldest of the three"
        " classes'); null without a datapoint.",
    )
    queues: dict[str, QueueDepth]
    repairs: dict[str, int | None] = Field(
        default_factory=dict,
        description="Tasks mended in the last 24 hours: adopted (stored by a consumer after their publish"
        " died), redispatched (re-sent by a repeat publish), retriesAwaited (a retry's message that waited"
        " for its write); null without a datapoint.",
    )
    schedules: dict[str, int] = Field(
        default_factory=dict,
        description="Every schedule's counters summed, each since it was created: fired (catch-ups, triggers and"
        " backfills included), skipped (overlap), caughtUp (fired late, inside the catch-up window),"
        " missed (past the catch-up window), refused (the payload no longer fit the type).",
    )
    sources: dict[str, FigureSource]


class StuckTask(Model):
    id: str
    type: str
    status: Literal["PENDING", "PROCESSING"]
    createdAt: str
    updatedAt: str
    reason: Literal["pending past dispatch", "lease expired"]
    since: str = Field(description="When it became stuck: its dispatch bound, or its lease's expiry (RFC 3339 UTC).")


class StuckPage(Model):
    """`GET /stuck`: one bounded Scan's stuck tasks, in the table's order (chalicelib/operate/stuck.py)."""

    tasks: list[StuckTask]
    next: str | None = Field(description="A cursor for the rest of the table; null when the Scan reached its end.")
    scanned: int = Field(description="Items this page read (what it cost), stuck or not.")


class Skipped(Model):
    id: str
    reason: str


class BulkRetryResult(Model):
    """What `POST /retries` matched and what it queued again."""

    dryRun: bool
    matched: list[str]
    retried: list[str]
    skipped: list[Skipped]


class TypeEntry(Model):
    """A registered task type as `GET /types` lists it."""

    name: str
    paused: bool = Field(description="An operator paused the type: it starts no attempt; publishing still accepts.")
    options: dict[str, Any] = Field(
        description="The options the type was registered with, in camelCase (maxAttempts, timeoutSeconds,"
        " backoff {baseSeconds, maxSeconds}, heartbeatSeconds, and the flow-control options such as concurrency);"
        " an option not given is left out."
    )
    running: int | None = Field(
        description="Attempts of the type running now, when a concurrency cap (`options.concurrency`) applies;"
        " null otherwise."
    )
    pausedBy: str | None = Field(description="Who paused it (the IAM principal on AWS); null when it runs.")
    pausedAt: str | None = Field(description="When it was paused; null when it runs.")
    effectiveBy: str | None = Field(
        description="When every consumer has seen the pause (consumers read the pauses at most every 5 s): attempts"
        " acquired before then still run. Null when it runs."
    )


class TypeList(Model):
    """The answer to `GET /types`: every registered type, by name."""

    types: list[TypeEntry]


class TypeHistoryEntry(Model):
    """One pause or resume of a type: who, when, and whether it changed anything."""

    action: Literal["pause", "resume"]
    by: str
    at: str
    changed: bool = Field(description="False for a pause of a paused type or a resume of a running one.")


class TypeDetail(TypeEntry):
    """The answer to `GET /types/{type}`: the type's entry and its latest pauses and resumes, oldest first."""

    history: list[TypeHistoryEntry]


class TypeChange(TypeEntry):
    """The answer to `POST /types/{type}/pause` and `/resume`: the type's entry after the action."""

    changed: bool = Field(description="False when the type already was as asked: nothing changed.")
    message: str = Field(description="What happened, in words.")
