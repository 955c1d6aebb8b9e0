"""What must hold after any amount of chaos, checked on the task items as the table holds them.

Pure functions over plain dicts (the items deserialized), so they are tested
without a stack and read the same against any table.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = {"COMPLETED", "FAILED"}
POISON_ERROR_PREFIX = "poison message:"


@dataclass(frozen=True)
class Expected:
    """What the chaos run knows about one accepted task."""

    task_id: str
    # True when no attempt can succeed (failureChance 1, or payload.message "ERROR").
    always_fails: bool = False
    # The payload of the first publish, which must be the one stored.
    payload: Mapping[str, Any] | None = None


@dataclass
class Findings:
    """Each invariant's offending task ids; every list must be empty."""

    lost: list[str] = field(default_factory=list)  # accepted, but no item
    stuck: list[str] = field(default_factory=list)  # not COMPLETED or FAILED
    double_run: list[str] = field(default_factory=list)  # more than one succeeded attempt
    overlaps: list[str] = field(default_factory=list)  # two attempts overlapped in time
    over_attempts: list[str] = field(default_factory=list)  # more attempts than MAX_ATTEMPTS
    unexplained: list[str] = field(default_factory=list)  # FAILED without a lastError
    inconsistent: list[str] = field(default_factory=list)  # status disagrees with the history
    wrong_success: list[str] = field(default_factory=list)  # a task that always fails COMPLETED
    payload_changed: list[str] = field(default_factory=list)  # a duplicate's payload replaced the first
    poison_unrecorded: list[str] = field(default_factory=list)  # a poison message nobody recorded
    duplicate_accepted: list[str] = field(default_factory=list)  # more than one publish answered as new
    api_disagrees: list[str] = field(default_factory=list)  # GET /tasks/{id} differs from the table

    def broken(self) -> dict[str, list[str]]:
        """The invariants that broke, by name, with their offending ids."""
        return {name.replace("_", "-"): ids for name, ids in vars(self).items() if ids}


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def attempts_overlap(history: list[Mapping[str, Any]]) -> bool:
    """Whether any attempt started before the one before it had finished (or had no end)."""
    spans = sorted(
        (_instant(entry["startedAt"]), _instant(entry["finishedAt"]) if entry.get("finishedAt") else None)
        for entry in history
    )
    for (_, previous_end), (start, _) in itertools.pairwise(spans):
        if previous_end is None or start < previous_end:
            return True
    return False


def check_task(item: Mapping[str, Any], expected: Expected, max_attempts: int, findings: Findings) -> None:
    """Add `item`'s broken invariants to `findings`."""
    task_id, status = expected.task_id, item.get("status")
    history: list[Mapping[str, Any]] = list(item.get("history") or [])
    succeeded = sum(1 for entry in history if entry.get("outcome") == "succeeded")
    if status not in TERMINAL or "leaseOwner" in item:
        findings.stuck.append(task_id)
    if succeeded > 1:
        findings.double_run.append(task_id)
    if attempts_overlap(history):
        findings.overlaps.append(task_id)
    attempts = int(item.get("attempts", 0))
    if attempts > max_attempts or len(history) > max_attempts or int(item.get("maxAttempts", 0)) > max_attempts:
        findings.over_attempts.append(task_id)
    if status == "FAILED" and not str(item.get("lastError") or "").strip():
        findings.unexplained.append(task_id)
    if (status == "COMPLETED") != (succeeded == 1) and status in TERMINAL:
        findings.inconsistent.append(task_id)
    if status == "COMPLETED" and expected.always_fails:
        findings.wrong_success.append(task_id)
    if expected.payload is not None and item.get("payload") is not None and item["payload"] != expected.payload:
        findings.payload_changed.append(task_id)


def check_tasks(items: Mapping[str, Mapping[str, Any]], expected: Iterable[Expected], max_attempts: int) -> Findings:
    """Check every accepted task against the items the table holds, keyed by id.

    Items' `payload` must already be parsed from its stored JSON string.
    """
    findings = Findings()
    for task in expected:
        item = items.get(task.task_id)
        if item is None:
            findings.lost.append(task.task_id)
            continue
        check_task(item, task, max_attempts, findings)
    return findings


def poison_recorded_by_id(item: Mapping[str, Any] | None) -> bool:
    """Whether the DLQ handler recorded a poison message that carried this id as a FAILED task."""
    return (
        item is not None
        and item.get("status") == "FAILED"
        and str(item.get("lastError") or "").startswith(POISON_ERROR_PREFIX)
    )
