"""What time must hold after chaos: schedules fired each due firing once, and no `runAt` task started early.

Computed from what the table holds (the schedule items' definition, creation and cursor; the
task items and their attempt history) and the pieces' own log lines (each tick's time), never
from the code's counters, and without the code's own firing arithmetic: a rate's instants are
counted here from the Unix epoch in UTC (docs/schedules.md, "When it fires"), and the scaled
clock of the offline stack is mapped back to the wall clock here as chalicelib/tick/clock.py states it.

Pure functions over plain values, tested without a stack.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tools.chaos.invariants import Findings, is_attempt

UTC_TEXT = "%Y-%m-%dT%H:%M:%SZ"
_RATE = re.compile(r"^([1-9][0-9]*) (minute|hour|day)s?$")
_UNIT_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400}
# Two clocks of one machine read a few ms apart: an end "after" a firing by less is not trusted.
CLOCK_SLACK_SECONDS = 0.05


@dataclass(frozen=True)
class ScaledClock:
    """The offline stack's schedule clock: schedule time = origin + (wall - origin) * scale."""

    origin: float
    scale: float = 1.0

    def schedule_of(self, wall: float) -> float:
        return self.origin + (wall - self.origin) * self.scale

    def wall_of(self, schedule: float) -> float:
        return self.origin + (schedule - self.origin) / self.scale


@dataclass(frozen=True)
class ScheduleSeen:
    """A rate schedule as its item holds it; times in schedule-clock epoch seconds."""

    schedule_id: str
    rate_seconds: int
    overlap: str
    catchup_seconds: int
    created: int
    cursor: int

    @classmethod
    def from_item(cls, definition: Mapping[str, Any], state: Mapping[str, Any]) -> ScheduleSeen:
        """From a schedule item's `definition` and `state` documents (parsed JSON).

        Raises:
            ValueError: the schedule has no rate (a cron line is not checked here).
        """
        return cls(
            schedule_id=str(definition["id"]),
            rate_seconds=rate_interval(str(definition.get("rate") or "")),
            overlap=str(definition.get("overlap", "allow")),
            catchup_seconds=int(definition.get("catchupWindowSeconds", 3_600)),
            created=epoch_of(str(state["createdAt"])),
            cursor=epoch_of(str(state["cursor"])),
        )


@dataclass(frozen=True)
class RunAtSeen:
    """A task the run published with a `runAt`; `cancelled_before` when a cancel was answered before its time."""

    task_id: str
    run_at_ms: int
    cancelled_before: bool = False


@dataclass(frozen=True)
class FiringFigures:
    checked: int  # firing instants that had to have exactly one task
    missed: int  # instants no tick saw inside their catch-up window (allowed to have none)
    skipped: int  # instants of `skip` schedules explained by the previous firing still running
    lateness: tuple[float, ...] = ()  # wall seconds from each firing's instant to its task's creation


def rate_interval(text: str) -> int:
    """The seconds a rate names ("5 minutes").

    Raises:
        ValueError: it is not a rate.
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def epoch_of(text: str) -> int:
    return int(datetime.strptime(text, UTC_TEXT).replace(tzinfo=UTC).timestamp())


def instants(rate_seconds: int, after: float, until: float) -> list[int]:
    """Every multiple of `rate_seconds` since the epoch strictly after `after` and at or before `until`."""
    first = (int(after) // rate_seconds + 1) * rate_seconds
    return list(range(first, int(until) + 1, rate_seconds)) if first <= until else []


def firing_instant(task_id: str, schedule_id: str) -> int | None:
    """The instant a ticker firing's task id names (`<schedule id>@<UTC>`); None for any other id (`.manual`)."""
    prefix = f"{schedule_id}@"
    if not task_id.startswith(prefix):
        return None
    try:
        return epoch_of(task_id[len(prefix) :])
    except ValueError:
        return None


def _ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def ended_at(item: Mapping[str, Any]) -> float | None:
    """When a terminal task ended (wall epoch s): its history's last finish or entry; None while it runs."""
    if item.get("status") not in {"COMPLETED", "FAILED", "CANCELLED"}:
        return None
    times = [_ms(str(entry.get("finishedAt") or entry.get("at"))) for entry in item.get("history") or []]
    times = [t for t in times if t]
    return max(times) / 1000 if times else None


def covered(instant: int, window: int, ticks: Sequence[float]) -> bool:
    """Whether a tick (schedule time) ran while `instant` was inside its catch-up window."""
    return any(instant <= tick <= instant + window for tick in ticks)


def check_firings(
    schedule: ScheduleSeen,
    items: Mapping[str, Mapping[str, Any]],
    clock: ScaledClock,
    ticks: Sequence[float],
    paused_by: float,
    findings: Findings,
) -> FiringFigures:
    """Every firing due between the schedule's creation and its cursor has exactly one task; no task fires
    any other instant.

    `ticks` are the ticks' times on the schedule clock; `paused_by` (schedule clock) is when the
    run's pause of the schedule was answered: a firing after the cursor but before then was due
    and published by a tick whose cursor write the pause refused, so it is no wrong firing. An
    instant no tick saw inside its catch-up window is missed and may have no task. A `skip`
    schedule's instant may have none while the previous firing's task had not ended at its time
    (the ticker read it later still running); a `skip` firing published while that task still ran
    (it ended after this task was created) is a finding.
    """
    fired = {
        instant: task_id for task_id in items if (instant := firing_instant(task_id, schedule.schedule_id)) is not None
    }
    due = instants(schedule.rate_seconds, schedule.created, schedule.cursor)
    allowed = set(due) | set(instants(schedule.rate_seconds, schedule.cursor, paused_by))
    findings.fired_off_grid += sorted(task_id for instant, task_id in fired.items() if instant not in allowed)
    checked = missed = skipped = 0
    lateness: list[float] = []
    previous: str | None = None
    for instant in sorted(set(due) | (set(fired) & allowed)):
        task_id = fired.get(instant)
        previous_end = ended_at(items[previous]) if previous is not None else None
        running_at = previous is not None and (previous_end is None or previous_end > clock.wall_of(instant))
        if task_id is None:
            if schedule.overlap == "skip" and running_at:
                skipped += 1
            elif not covered(instant, schedule.catchup_seconds, ticks):
                missed += 1
            else:
                checked += 1
                findings.unfired.append(f"{schedule.schedule_id}@{datetime.fromtimestamp(instant, UTC):{UTC_TEXT}}")
            continue
        checked += 1
        created = _ms(str(items[task_id]["createdAt"])) / 1000
        lateness.append(created - clock.wall_of(instant))
        still_running = previous_end is None or previous_end > created + CLOCK_SLACK_SECONDS
        if schedule.overlap == "skip" and previous is not None and still_running:
            findings.skip_overlapped.append(task_id)
        previous = task_id
    return FiringFigures(checked, missed, skipped, tuple(lateness))


def check_run_at(items: Mapping[str, Mapping[str, Any]], planned: Iterable[RunAtSeen], findings: Findings) -> None:
    """No attempt of a `runAt` task started before its time (nor before the `notBefore` its item shows), and
    none cancelled before its time ever ran."""
    for task in planned:
        item = items.get(task.task_id) or {}
        attempts = [entry for entry in item.get("history") or [] if is_attempt(entry)]
        not_before = _ms(str(item["notBefore"])) if item.get("notBefore") else task.run_at_ms
        if any(_ms(str(entry["startedAt"])) < max(task.run_at_ms, not_before) for entry in attempts):
            findings.started_early.append(task.task_id)
        if task.cancelled_before and (attempts or item.get("status") != "CANCELLED"):
            findings.ran_after_early_cancel.append(task.task_id)


def check_caught_up(schedule: ScheduleSeen, seen_by: float, allowance: float, findings: Findings) -> None:
    """After the pause, the cursor holds every firing due at least `allowance` before `seen_by` (schedule clock):
    a time every ticker's later tick, ended before the pause, had started after."""
    due = instants(schedule.rate_seconds, schedule.created, seen_by - allowance)
    if due and schedule.cursor < due[-1]:
        findings.cursor_behind.append(schedule.schedule_id)


def seen_before(ticks_by_ticker: Iterable[Sequence[float]], pause_sent: float) -> float | None:
    """The latest instant (wall s) some ticker had started a tick after, ended before `pause_sent`: each
    ticker's ticks run one after another and log when they end, so the last one it logged before the pause
    started after the one before it. None when no ticker logged two ticks before the pause."""
    seen = [ends[-2] for ticks in ticks_by_ticker if len(ends := sorted(t for t in ticks if t < pause_sent)) >= 2]
    return max(seen, default=None)


def missed_ticks(ticks: Iterable[float], period: float) -> int:
    """Tick periods in which no ticker ran, between the first tick and the last (wall s, every ticker's):
    each gap of more than a period and a half counts its whole periods less one."""
    times = sorted(ticks)
    return sum(round((b - a) / period) - 1 for a, b in itertools.pairwise(times) if b - a > 1.5 * period)
