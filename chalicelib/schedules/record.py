"""A stored schedule: its definition, where its firings stand, and what operators did to it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.schedules.definition import ScheduleDefinition, parse_utc_text, utc_text

# A schedule's history keeps its last operator actions; older ones are in the log.
MAX_HISTORY = 10
Source = Literal["api", "code"]


class FieldIssue(Model):
    field: str
    message: str


class FiringError(Model):
    """Why a firing was refused: its payload no longer fits its type (or the type is gone)."""

    at: str = Field(description="The firing's time, UTC.")
    message: str
    details: list[FieldIssue]


class FiringRef(Model):
    at: str = Field(description="The firing's time, UTC.")
    taskId: str


class Skip(Model):
    """The last firing `overlap: skip` (or a full `buffer_one`) did not fire, and the task it waited on."""

    at: str
    waitingOn: str


class Counts(Model):
    fired: int = 0
    skipped: int = Field(default=0, description="Firings not fired because the previous firing's task had not ended.")
    missed: int = Field(default=0, description="Firings older than the catch-up window when the ticker saw them.")
    refused: int = Field(default=0, description="Firings whose payload no longer fit their type.")
    caughtUp: int = Field(default=0, description="Firings fired more than a tick late, inside the catch-up window.")


class Audit(Model):
    kind: Literal["created", "updated", "paused", "resumed", "triggered", "backfilled"]
    at: str
    by: str


class ScheduleState(Model):
    """Everything but the definition: the cursor and what came of the firings."""

    model_config = ConfigDict(extra="ignore")

    source: Source
    definitionHash: str | None = None  # a code-declared schedule's declaration, as last reconciled
    cursor: str  # every firing at or before this instant (UTC) has been fired, skipped, missed or refused
    lastFiring: FiringRef | None = None
    buffered: str | None = None  # `buffer_one`: the firing held until the previous task ends
    lastSkip: Skip | None = None
    lastError: FiringError | None = None
    counts: Counts = Field(default_factory=Counts)
    history: list[Audit] = Field(default_factory=list)
    createdAt: str
    updatedAt: str


@dataclass(frozen=True)
class Schedule:
    definition: ScheduleDefinition
    state: ScheduleState
    version: int = 0  # 0: never stored

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def cursor(self) -> datetime:
        return parse_utc_text(self.state.cursor)

    def changed(self, definition: ScheduleDefinition | None = None, **state: object) -> Schedule:
        """This schedule with another definition and/or state fields (the version is the one read)."""
        return replace(
            self,
            definition=definition or self.definition,
            state=self.state.model_copy(update=state),
        )

    def audited(self, kind: str, at: datetime, by: str, definition: ScheduleDefinition | None = None) -> Schedule:
        """This schedule with an operator's action appended to its history (the last MAX_HISTORY kept)."""
        entry = Audit.model_validate({"kind": kind, "at": utc_text(at), "by": by})
        history = [*self.state.history, entry][-MAX_HISTORY:]
        return self.changed(definition, history=history, updatedAt=utc_text(at))


def new_schedule(definition: ScheduleDefinition, source: Source, now: datetime, by: str) -> Schedule:
    """A schedule about to be stored: its first firing is the first one after `now`."""
    at = utc_text(now)
    state = ScheduleState(
        source=source,
        definitionHash=definition_hash(definition) if source == "code" else None,
        cursor=at,
        createdAt=at,
        updatedAt=at,
        history=[Audit(kind="created", at=at, by=by)],
    )
    return Schedule(definition, state)


def definition_hash(definition: ScheduleDefinition) -> str:
    """A digest of a definition, to tell whether a code declaration changed since it was reconciled."""
    canonical = json.dumps(definition.document(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
