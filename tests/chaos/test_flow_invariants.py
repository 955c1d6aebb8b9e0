"""The flow-control invariants on hand-made handler runs: each catches what it names and nothing else."""

from __future__ import annotations

from tools.chaos.flow_invariants import (
    ADMISSION_TO_START_MS,
    PAUSE_TO_START_MS,
    HandlerRun,
    PauseSpan,
    Rate,
    UniqueHold,
    attempts_spent_waiting,
    most_at_once,
    most_in_window,
    over_cap,
    over_rate,
    started_while_paused,
    unique_admitted_twice,
)


def _run(task: str, start: int, end: int | None, key: str | None = None, kind: str = "capped") -> HandlerRun:
    return HandlerRun(task, kind, key, start, deadline_ms=start + 500, ended_ms=end)


def test_runs_that_touch_end_to_start_are_not_at_once_but_overlapping_ones_are() -> None:
    assert most_at_once([_run("a", 0, 100), _run("b", 100, 200)]) == 1
    assert most_at_once([_run("a", 0, 100), _run("b", 99, 200)]) == 2


def test_a_killed_run_holds_its_place_until_its_deadline() -> None:
    killed = _run("a", 0, None)  # deadline 500
    assert most_at_once([killed, _run("b", 400, 450)]) == 2
    assert most_at_once([killed, _run("b", 500, 600)]) == 1


def test_over_cap_names_the_type_and_the_key_that_ran_over_and_only_them() -> None:
    runs = [_run("a", 0, 100, "k1"), _run("b", 50, 150, "k1"), _run("c", 60, 70, "k2")]
    assert over_cap(runs, {"capped": 3}, {"capped": 2}) == []
    assert over_cap(runs, {"capped": 2}, {"capped": 2}) == ["capped ran 3 at once, cap 2"]
    assert over_cap(runs, {}, {"capped": 1}) == ["capped#k1 ran 2 at once, cap 1"]


def test_starts_are_counted_in_every_half_open_window() -> None:
    assert most_in_window([0, 999, 1000, 1999], 1000) == 2
    assert most_in_window([0, 1, 2, 3000], 1000) == 3
    assert most_in_window([], 1000) == 0


def test_over_rate_allows_rate_plus_burst_in_a_window_less_the_admission_allowance() -> None:
    window = 10_000
    span = window - ADMISSION_TO_START_MS
    runs = [_run(str(i), i * (span // 5), i * (span // 5) + 1, kind="throttled") for i in range(5)]
    assert over_rate(runs, {"throttled": Rate(4, window, burst=1)}, {}) == []
    assert over_rate(runs, {"throttled": Rate(4, window)}, {}) == [
        "throttled started 5 in one window of 10000 ms, allowed 4"
    ]


def test_a_start_after_the_pause_took_effect_and_before_the_resume_is_found() -> None:
    pause = PauseSpan("capped", effective_ms=10_000, resumed_ms=20_000)
    before = _run("before", 10_000 + PAUSE_TO_START_MS - 1, None)
    during = _run("during", 15_000, 15_100)
    after = _run("after", 20_000, 20_100)
    other = _run("other", 15_000, 15_100, kind="plain")
    assert started_while_paused([before, during, after, other], [pause]) == ["during"]


def test_a_flow_task_with_more_attempts_than_runs_or_not_completed_spent_its_wait() -> None:
    items = {
        "ok": {"type": "capped", "status": "COMPLETED", "attempts": 1},
        "killed-once": {"type": "capped", "status": "COMPLETED", "attempts": 2},
        "killed-before-it-ran": {
            "type": "capped",
            "status": "COMPLETED",
            "attempts": 2,
            "history": [{"kind": "attempt", "attempt": 1, "outcome": "expired"}],
        },
        "spent": {"type": "capped", "status": "COMPLETED", "attempts": 2},
        "dead": {"type": "capped", "status": "FAILED", "attempts": 0},
        "plain": {"type": "simulate", "status": "FAILED", "attempts": 3},
    }
    runs = [_run("ok", 0, 1), _run("killed-once", 0, None), _run("killed-once", 600, 700), _run("spent", 0, 1)]
    runs.append(_run("killed-before-it-ran", 600, 700))
    assert attempts_spent_waiting(items, runs, ["capped"]) == ["dead", "spent"]


def test_a_unique_key_admitted_inside_its_holders_window_is_found() -> None:
    holds = [
        UniqueHold("u1", "first", created_ms=0, ends_ms=1000),
        UniqueHold("u1", "second", created_ms=1000, ends_ms=2000),
        UniqueHold("u2", "a", created_ms=0, ends_ms=None),
        UniqueHold("u2", "b", created_ms=5000, ends_ms=None),
    ]
    assert unique_admitted_twice(holds) == ["u2: b admitted while a held it"]


def test_without_a_burst_two_starts_closer_than_the_interval_less_the_allowance_are_found() -> None:
    rate = Rate(30, 60_000)  # one start every 2 s; 1 s of allowance leaves 1 s
    spaced = [_run(str(i), i * 1000, i * 1000 + 1, kind="throttled") for i in range(3)]
    assert over_rate(spaced, {"throttled": rate}, {}) == []
    bunched = [*spaced, _run("late", 2500, 2501, kind="throttled")]
    assert over_rate(bunched, {"throttled": rate}, {}) == [
        "throttled started twice 500 ms apart, spaced at least 1000 ms"
    ]
