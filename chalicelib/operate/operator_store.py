"""The operator's writes: retry and cancel, each one conditional write that appends to the history.

Each is conditioned on the version the operation read (`UNCHANGED_SINCE_READ`):
of two operators racing on one task, one write lands and the other is refused
with `StaleRecord`, which the API answers 409.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.models import Action, Status
from chalicelib.tasks.record import TaskRecord, action_entry, iso_from_ms
from chalicelib.tasks.table import TaskTable

logger = logging.getLogger(__name__)


class OperatorStore(TaskTable):
    """Restart, cancel and request to cancel task items, on an operator's word."""

    def restart(
        self,
        record: TaskRecord,
        max_attempts: int,
        by: str,
        at_ms: int | None = None,
        start_by_ms: int | None = None,
    ) -> TaskRecord:
        """Start a FAILED or CANCELLED task over: PENDING, a fresh attempt budget, its history kept.

        `at_ms` is when the retry was decided (now if None): taken before its message is sent,
        it precedes every attempt that message starts. The new run expires at `start_by_ms`
        if given, else never: an old expiry is removed.

        Raises:
            StaleRecord: the task changed since `record` was read (a concurrent retry won).
        """
        now_iso = iso_from_ms(self.now_ms() if at_ms is None else at_ms)
        entry = action_entry(Action.RETRY, now_iso, by, record.status)
        expiry_set, expiry_remove = (", #startBy = :startBy", "") if start_by_ms is not None else ("", ", #startBy")
        update = (
            "SET #status = :pending, #attempts = :zero, #maxAttempts = :maxAttempts, #updatedAt = :now_iso,"
            f" #redrives = :zero, #history = list_append(#history, :entries){expiry_set} ADD #version :one"
            " REMOVE #finishedAt, #expiresAt, #retryAt, #cancelRequested, #result, #lastMessageId,"
            f" #statusShard, #statusSort, #progress{expiry_remove}"
        )
        values: dict[str, Any] = {
            ":pending": Status.PENDING.value,
            ":zero": 0,
            ":maxAttempts": max_attempts,
            ":now_iso": now_iso,
            ":entries": [entry],
            ":one": 1,
        }
        if start_by_ms is not None:
            values[":startBy"] = start_by_ms
        return self._update_if_unchanged(record, update, values, "retried")

    def cancel(self, record: TaskRecord, by: str) -> TaskRecord:
        """Make a PENDING or RETRYING task CANCELLED: it never starts another attempt.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        entry = action_entry(Action.CANCEL, iso_from_ms(self.now_ms()), by, record.status)
        return self._end_if_unchanged(record, Status.CANCELLED, [entry], "cancelled")

    def request_cancel(self, record: TaskRecord, by: str) -> TaskRecord:
        """Mark a PROCESSING task so that a failure of its running attempt ends it CANCELLED.

        Raises:
            StaleRecord: the task changed since `record` was read.
        """
        now_iso = iso_from_ms(self.now_ms())
        update = (
            "SET #cancelRequested = :true, #updatedAt = :now_iso, #history = list_append(#history, :entries)"
            " ADD #version :one"
        )
        values = {
            ":true": True,
            ":now_iso": now_iso,
            ":entries": [action_entry(Action.CANCEL_REQUESTED, now_iso, by, record.status)],
            ":one": 1,
        }
        return self._update_if_unchanged(record, update, values, "cancelled")
