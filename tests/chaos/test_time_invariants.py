"""The time invariants of a chaos run, on hand-made items: each catches the breach it names and passes a clean run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tools.chaos.invariants import Findings
from tools.chaos.time_invariants import (
    RunAtSeen,
    ScaledClock,
    ScheduleSeen,
    check_caught_up,
    check_firings,
    check_run_at,
    instants,
    missed_ticks,
    rate_interval,
    seen_before,
)

# Schedule time runs 60 times faster than the wall clock from this wall instant.
CLOCK = ScaledClock(origin=1_800_000_000.0, scale=60)
CREATED = 1_800_000_130  # schedule clock, between two 5-minute instants
RATE = 300


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def firing(instant: int, ran_for: float = 0.1, late: float = 0.3, status: str = "COMPLETED") -> dict[str, Any]:
    """A firing's task as the table holds it: created `late` wall seconds after its instant, run once."""
    created = CLOCK.wall_of(instant) + late
    attempt = {"attempt": 1, "startedAt": iso(created + 0.05), "finishedAt": iso(created + 0.05 + ran_for)}
    return {"status": status, "createdAt": iso(created), "history": [attempt]}


def schedule(cursor: int, overlap: str = "allow") -> ScheduleSeen:
    return ScheduleSeen("every-5", RATE, overlap, 3_600, CREATED, cursor)


def ticks_every_minute(until: int) -> list[float]:
    return [float(t) for t in range(CREATED, until + 61, 60)]


def test_a_rate_counts_its_instants_from_the_epoch() -> None:
    assert rate_interval("5 minutes") == 300 and rate_interval("1 hour") == 3_600
    assert instants(300, 1_800_000_130, 1_800_000_900) == [1_800_000_300, 1_800_000_600, 1_800_000_900]
    assert instants(300, 1_800_000_300, 1_800_000_599) == []


def test_a_schedule_with_one_task_per_due_firing_passes() -> None:
    due = instants(RATE, CREATED, CREATED + 1_500)
    items = {f"every-5@{utc(at)}": firing(at) for at in due} | {"every-5@x.manual": {"status": "COMPLETED"}}
    findings = Findings()

    figures = check_firings(schedule(due[-1]), items, CLOCK, ticks_every_minute(due[-1]), due[-1] + 30, findings)

    assert findings.broken() == {}
    assert (figures.checked, figures.missed, figures.skipped) == (len(due), 0, 0)
    assert [round(late, 3) for late in figures.lateness] == [0.3] * len(due)  # each task made 0.3 s after its time


def test_a_due_firing_without_its_task_is_unfired_and_one_off_the_grid_is_caught() -> None:
    due = instants(RATE, CREATED, CREATED + 1_500)
    items = {f"every-5@{utc(at)}": firing(at) for at in due[1:]}
    items[f"every-5@{utc(due[1] + 60)}"] = firing(due[1] + 60)  # not a multiple of the rate
    items[f"every-5@{utc(due[-1] + 2 * RATE)}"] = firing(due[-1] + 2 * RATE)  # after the pause
    findings = Findings()

    check_firings(schedule(due[-1]), items, CLOCK, ticks_every_minute(due[-1]), due[-1] + RATE, findings)

    assert findings.unfired == [f"every-5@{utc(due[0])}"]
    assert findings.fired_off_grid == sorted([f"every-5@{utc(due[1] + 60)}", f"every-5@{utc(due[-1] + 2 * RATE)}"])


def test_a_firing_after_the_cursor_but_before_the_pause_answered_is_allowed() -> None:
    due = instants(RATE, CREATED, CREATED + 900)
    after_cursor = due[-1] + RATE
    items = {f"every-5@{utc(at)}": firing(at) for at in [*due, after_cursor]}
    findings = Findings()

    check_firings(schedule(due[-1]), items, CLOCK, ticks_every_minute(after_cursor), after_cursor + 10, findings)

    assert findings.broken() == {}


def test_a_firing_no_tick_saw_inside_its_window_may_be_missed() -> None:
    due = instants(RATE, CREATED, CREATED + 900)
    items = {f"every-5@{utc(at)}": firing(at) for at in due[:-1]}
    ticks = [t for t in ticks_every_minute(due[-1]) if t < due[-1] or t > due[-1] + 3_600]
    findings = Findings()

    figures = check_firings(schedule(due[-1]), items, CLOCK, ticks, due[-1], findings)

    assert findings.unfired == [] and figures.missed == 1


def test_skip_may_leave_a_firing_out_while_the_previous_task_runs_but_not_fire_over_it() -> None:
    due = instants(RATE, CREATED, CREATED + 1_500)  # 5 instants, 5 wall seconds apart
    # The first runs 7 s: the second firing is skipped; the third fires after it ended.
    items = {f"every-5@{utc(due[0])}": firing(due[0], ran_for=7)}
    # The fourth fires although the third still runs (9 s): a breach; the fifth is due after both ended.
    items[f"every-5@{utc(due[2])}"] = firing(due[2], ran_for=9)
    items[f"every-5@{utc(due[3])}"] = firing(due[3])
    findings = Findings()

    figures = check_firings(schedule(due[-1], "skip"), items, CLOCK, ticks_every_minute(due[-1]), due[-1], findings)

    assert findings.skip_overlapped == [f"every-5@{utc(due[3])}"]
    assert findings.unfired == [f"every-5@{utc(due[4])}"]  # the fourth had ended by then
    assert figures.skipped == 1


def test_a_run_at_task_started_early_or_run_after_an_early_cancel_is_caught() -> None:
    run_at = 1_800_000_010_000
    on_time = {
        "status": "COMPLETED",
        "notBefore": iso(run_at / 1000),
        "history": [{"attempt": 1, "startedAt": iso(run_at / 1000 + 0.2)}],
    }
    early = {**on_time, "history": [{"attempt": 1, "startedAt": iso(run_at / 1000 - 0.2)}]}
    cancelled = {"status": "CANCELLED", "notBefore": iso(run_at / 1000), "history": [{"kind": "cancel"}]}
    ran = {**on_time, "status": "CANCELLED"}
    items = {"on-time": on_time, "early": early, "cancelled": cancelled, "ran": ran}
    planned = [
        RunAtSeen("on-time", run_at),
        RunAtSeen("early", run_at),
        RunAtSeen("cancelled", run_at, cancelled_before=True),
        RunAtSeen("ran", run_at, cancelled_before=True),
    ]
    findings = Findings()

    check_run_at(items, planned, findings)

    assert findings.started_early == ["early"]
    assert findings.ran_after_early_cancel == ["ran"]


def test_a_cursor_short_of_what_the_last_ticks_saw_by_more_than_the_allowance_is_behind() -> None:
    seen_by = CREATED + 1_000
    findings = Findings()

    # Due: ...300, ...600, ...900 (and ...1200 after); the last tick before the pause started after ...1130.
    check_caught_up(schedule(1_800_000_900), seen_by, 60, findings)
    check_caught_up(ScheduleSeen("late", RATE, "allow", 3_600, CREATED, 1_800_000_600), seen_by, 60, findings)

    assert findings.cursor_behind == ["late"]


def test_the_ticks_seen_before_a_pause_are_each_tickers_last_but_one() -> None:
    # The first ticker's last tick before the pause (at 10) started after 8; the second's after 9.
    assert seen_before([[5.0, 8.0, 9.5, 12.0], [7.0, 9.0, 9.9], [9.8]], 10.0) == 9.0
    assert seen_before([[9.8], []], 10.0) is None


def test_missed_ticks_count_the_periods_no_ticker_ran_in() -> None:
    assert missed_ticks([0.0, 1.0, 2.0, 2.5, 3.4], 1.0) == 0
    assert missed_ticks([0.0, 1.0, 4.0, 5.0], 1.0) == 2
