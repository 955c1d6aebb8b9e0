"""Pausing a task type: an operator's word, kept in one flow item that every consumer reads.

One item (`pauses`) holds every paused type, so a consumer learns the state of all of them with
one read, at most once per `refresh_seconds` per container: that read is all a pause costs the
types nobody pauses. A pause therefore takes effect within `refresh_seconds` of its write
landing (`effective_by` says when, restated when botocore's retries kept the write out); attempts
acquired before then run, and running attempts finish.
Each change appends who, when and what to the item's history, like an operator's retry does
to its task's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from chalicelib.errors import StoreError
from chalicelib.flow.table import ConditionFailed, FlowTable
from chalicelib.tasks.record import iso_from_ms

PAUSES_KEY = "pauses"
# How stale a consumer's view of the pauses may be: the delay before a pause takes effect.
PAUSE_REFRESH_SECONDS = 5.0
# The item keeps the latest changes only: enough to audit, never near DynamoDB's 400 KB.
MAX_HISTORY = 100
# A pause's write that took longer than this (botocore retried it) restates when it takes effect.
LATE_WRITE_MS = 250


@dataclass(frozen=True)
class Pause:
    """A paused type: who paused it and when (ISO 8601 UTC)."""

    type: str
    by: str
    at: str
    effective_by: str


@dataclass(frozen=True)
class Change:
    """What an operator's pause or resume found and did: the type's pause after it (None: the type runs),
    and whether it changed anything (a pause of a paused type, or a resume of a running one, does not)."""

    pause: Pause | None
    changed: bool


class Pauses:
    """Reads (cached) and writes the paused types."""

    def __init__(
        self,
        table: FlowTable,
        refresh_seconds: float = PAUSE_REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, Pause] | None = None
        self._read_at = 0.0

    def is_paused(self, type_name: str) -> bool:
        """Whether `type_name` is paused, as of at most `refresh_seconds` ago.

        Raises:
            StoreError: the table could not be read (the caller defers the record).
        """
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._read_at >= self.refresh_seconds:
                self._cached, self._read_at = self._read(consistent=True), now
            return type_name in self._cached

    def all(self) -> dict[str, Pause]:
        """Every paused type, read now (strongly consistent)."""
        return self._read(consistent=True)

    def pause(self, type_name: str, by: str) -> Pause:
        """Pause `type_name` (pausing a paused type keeps its first pause, and says so in the history).

        Raises:
            StoreError: the table refused the write after botocore's retries.
        """
        pause, _ = self._pause(type_name, by)
        return pause

    def resume(self, type_name: str, by: str) -> None:
        """Resume `type_name` (resuming a type that runs is recorded, and changes nothing).

        Raises:
            StoreError: the table refused the write after botocore's retries.
        """
        self._resume(type_name, by)

    def change(self, action: Literal["pause", "resume"], type_name: str, by: str) -> Change:
        """An operator's pause or resume of `type_name`, and whether it changed anything.

        Raises:
            StoreError: the table refused the write after botocore's retries.
        """
        if action == "pause":
            pause, changed = self._pause(type_name, by)
            return Change(pause, changed)
        changed = self._resume(type_name, by)
        return Change(self._read(consistent=True).get(type_name), changed)

    def _pause(self, type_name: str, by: str) -> tuple[Pause, bool]:
        now_ms = self._table.now_ms()
        entry = self._entry("pause", type_name, by, now_ms)
        effective = iso_from_ms(now_ms + int(self.refresh_seconds * 1000))
        pause = {"by": by, "at": entry["at"], "effectiveBy": effective}
        try:
            self._table.update(
                PAUSES_KEY,
                "SET #types.#type = :pause, #history = list_append(if_not_exists(#history, :empty), :entries)",
                {":pause": pause, ":entries": [entry], ":empty": []},
                condition="attribute_exists(#types) AND attribute_not_exists(#types.#type)",
                names_extra={"#type": type_name},
            )
            changed = True
        except ConditionFailed as refused:
            if refused.old is None or "types" not in refused.old:
                changed = self._create(type_name, pause, entry)
            else:
                self._note(entry)
                changed = False
        if changed:
            self._restate_if_late(type_name, entry["at"], now_ms)
        current = self._read(consistent=True).get(type_name) or Pause(type_name, by, entry["at"], effective)
        return current, changed

    def _restate_if_late(self, type_name: str, at: str, sent_ms: int) -> None:
        """Move the pause's `effectiveBy` to `refresh_seconds` after its write landed, when botocore
        retried the write: a view read after `sent_ms` but before the write landed is stale, and
        holds until `refresh_seconds` after it was read. Best effort: a resume since wins, and a
        restatement that fails leaves the first estimate, early by the write's retries.
        """
        landed_ms = self._table.now_ms()
        if landed_ms - sent_ms <= LATE_WRITE_MS:
            return
        try:
            self._table.update(
                PAUSES_KEY,
                "SET #types.#type.#effectiveBy = :effective",
                {":effective": iso_from_ms(landed_ms + int(self.refresh_seconds * 1000)), ":at": at},
                condition="#types.#type.#at = :at",
                names_extra={"#type": type_name},
            )
        except (ConditionFailed, StoreError):
            return

    def _resume(self, type_name: str, by: str) -> bool:
        entry = self._entry("resume", type_name, by, self._table.now_ms())
        try:
            self._table.update(
                PAUSES_KEY,
                "REMOVE #types.#type SET #history = list_append(if_not_exists(#history, :empty), :entries)",
                {":entries": [entry], ":empty": []},
                condition="attribute_exists(#types.#type)",
                names_extra={"#type": type_name},
            )
            changed = True
        except ConditionFailed:
            self._note(entry)
            changed = False
        with self._lock:
            self._cached = None  # this container sees its own resume at once
        return changed

    def history(self) -> list[dict[str, Any]]:
        """The latest pauses and resumes, oldest first: {"action", "type", "by", "at"}."""
        item = self._table.get(PAUSES_KEY) or {}
        return list(item.get("history") or [])[-MAX_HISTORY:]

    def _create(self, type_name: str, pause: dict[str, str], entry: dict[str, str]) -> bool:
        """The first pause of the stage: the item gets its map of types. Returns whether this pause changed it."""
        try:
            self._table.update(
                PAUSES_KEY,
                "SET #types = :types, #history = list_append(if_not_exists(#history, :empty), :entries)",
                {":types": {type_name: pause}, ":entries": [entry], ":empty": []},
                condition="attribute_not_exists(#types)",
            )
        except ConditionFailed:
            # Another pause made the map in between: add this one to it.
            return self._pause(type_name, entry["by"])[1]
        return True

    def _note(self, entry: dict[str, str]) -> None:
        """Record a pause or resume that changed nothing."""
        self._table.update(
            PAUSES_KEY,
            "SET #history = list_append(if_not_exists(#history, :empty), :entries)",
            {":entries": [{**entry, "changed": False}], ":empty": []},
        )

    def _read(self, consistent: bool) -> dict[str, Pause]:
        item = self._table.get(PAUSES_KEY, consistent=consistent) or {}
        return {
            name: Pause(name, str(value.get("by", "")), str(value.get("at", "")), str(value.get("effectiveBy", "")))
            for name, value in (item.get("types") or {}).items()
        }

    @staticmethod
    def _entry(action: str, type_name: str, by: str, now_ms: int) -> dict[str, str]:
        return {"action": action, "type": type_name, "by": by, "at": iso_from_ms(now_ms)}
