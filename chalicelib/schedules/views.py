"""The `/schedules` routes' bodies and answers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.models import Status
from chalicelib.query import DEFAULT_PAGE, MAX_PAGE, QueryModel, QueryNumber
from chalicelib.schedules.definition import OverlapName
from chalicelib.schedules.record import Audit, Counts, FiringError, Skip, Source


class LastFiring(Model):
    at: str = Field(description="The firing's time, UTC.")
    taskId: str
    status: Status | None = Field(description="Its task's status now; null if the task table has no such task.")


class ScheduleView(Model):
    """A schedule: its definition, when it fires next, and what came of its firings."""

    id: str
    type: str
    payload: dict[str, Any]
    cron: str | None
    rate: str | None
    timezone: str
    overlap: OverlapName
    catchupWindowSeconds: int
    paused: bool
    source: Source = Field(description="`code`: declared by a task type (change it in the code); `api`: made here.")
    nextFirings: list[str] = Field(description="The next five firings, UTC, ascending; empty while paused.")
    lastFiring: LastFiring | None
    buffered: str | None = Field(description="`buffer_one`: the firing held until the previous task ends.")
    lastSkip: Skip | None = Field(description="The last firing not fired because the previous task had not ended.")
    lastError: FiringError | None = Field(description="The last refused firing and why; null if none was refused.")
    counts: Counts
    history: list[Audit] = Field(description="Who created and changed the schedule, and when (the last 10).")
    createdAt: str
    updatedAt: str


class ScheduleSummary(Model):
    """A schedule in a list."""

    id: str
    type: str
    cron: str | None
    rate: str | None
    timezone: str
    paused: bool
    source: Source
    nextFiring: str | None
    lastFiring: str | None = Field(description="The last firing's time, UTC.")
    counts: Counts


class SchedulePage(Model):
    """One page of `GET /schedules`, in the table's order (not sorted)."""

    schedules: list[ScheduleSummary]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class ScheduleListQuery(QueryModel):
    """The query of `GET /schedules`."""

    limit: QueryNumber = Field(
        default=DEFAULT_PAGE,
        ge=1,
        le=MAX_PAGE,
        description=f"Items read per page, 1 to {MAX_PAGE} (default {DEFAULT_PAGE}).",
    )
    cursor: str | None = Field(default=None, description="The previous page's nextCursor, unchanged.")


def _text_time(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with a zone, e.g. 2026-11-25T12:00:00Z")
    return value


TextTime = Annotated[AwareDatetime, BeforeValidator(_text_time)]


class BackfillIn(Model):
    """The body of `POST /schedules/{id}/backfill`: the firings from `from` to `to`, both included."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    start: TextTime = Field(alias="from", description="RFC 3339 with a zone: the range's start, included.")
    end: TextTime = Field(alias="to", description="RFC 3339 with a zone, not after now: the range's end, included.")


class BackfillFiring(Model):
    at: str
    taskId: str
    duplicate: bool = Field(description="True when that firing's task existed already (it is not run again).")


class BackfillAnswer(Model):
    scheduleId: str
    published: list[BackfillFiring]


class ScheduleDeleted(Model):
    id: str
    deleted: bool = True
