"""The flow-control invariants on hand-made handler runs: each catches what it names and nothing else."""

from __future__ import annotations

from tools.chaos.flow_invariants import (
    HandlerRun,
    PauseSpan,
    Rate,
    UniqueHold,
    attempts_spent_waiting,
    most_at_once,
    most_in_window,
    over_cap,
    over_rate,
    start_lag_ms,
    started_while_paused,
    unique_admitted_twice,
)


def _run(
    task: str, start: int, end: int | None, key: str | None = None, kind: str = "capped", lag: int | None = 0
) -> HandlerRun:
    """A run the gate admitted (and a rate counted) `lag` ms before its handler began; None: never admitted."""
    admitted = None if lag is None else start - lag
    return HandlerRun(task, kind, key, start, start + 500, end, admitted_ms=admitted, counted_ms=admitted)


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


def test_over_rate_allows_rate_plus_burst_counted_starts_in_any_window() -> None:
    window = 10_000
    runs = [_run(str(i), i * (window // 5), i * (window // 5) + 1, kind="throttled") for i in range(5)]
    assert over_rate(runs, {"throttled": Rate(4, window, burst=1)}, {}) == []
    assert over_rate(runs, {"throttled": Rate(4, window)}, {}) == [
        "throttled started 5 in one window of 10000 ms, allowed 4",
        "throttled started twice 2000 ms apart, spaced at least 2500 ms",
    ]


def test_over_rate_counts_where_the_rate_counted_not_where_the_handler_began() -> None:
    rate = Rate(30, 60_000)  # one start every 2 s
    # Counted 2 s apart; the first handler began 1.6 s late (its acquire was retried): not a breach.
    late_first = [_run("a", 1_600, 1_700, kind="throttled", lag=1_600), _run("b", 2_000, 2_100, kind="throttled")]
    assert over_rate(late_first, {"throttled": rate}, {}) == []
    assert start_lag_ms(late_first) == 1_600
    # Counted 400 ms apart though both handlers began on time: a breach.
    bunched = [_run("a", 0, 1, kind="throttled"), _run("b", 400, 401, kind="throttled")]
    assert over_rate(bunched, {"throttled": rate}, {}) == [
        "throttled started twice 400 ms apart, spaced at least 2000 ms"
    ]


def test_a_rate_limited_run_no_rate_counted_is_a_breach() -> None:
    runs = [_run("counted", 0, 1, kind="throttled"), _run("bypassed", 5_000, 5_001, kind="throttled", lag=None)]
    assert over_rate(runs, {"throttled": Rate(30, 60_000)}, {}) == ["bypassed ran without a counted start"]
    assert over_rate([_run("other", 0, 1, lag=None)], {"throttled": Rate(30, 60_000)}, {}) == []


def test_a_run_admitted_after_the_pause_took_effect_and_before_the_resume_is_found() -> None:
    pause = PauseSpan("capped", effective_ms=10_000, resumed_ms=20_000)
    admitted_before = _run("before", 13_000, None, lag=3_001)  # began 3 s after its admission at 9,999
    during = _run("during", 15_000, 15_100)
    after = _run("after", 20_000, 20_100)
    other = _run("other", 15_000, 15_100, kind="plain")
    unadmitted = _run("unadmitted", 25_000, 25_100, lag=None)
    runs = [admitted_before, during, after, other, unadmitted]
    assert started_while_paused(runs, [pause]) == ["during", "unadmitted"]


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


def test_without_a_burst_two_starts_closer_than_the_interval_are_found() -> None:
    rate = Rate(30, 60_000)  # one start every 2 s
    spaced = [_run(str(i), i * 2000, i * 2000 + 1, kind="throttled") for i in range(3)]
    assert over_rate(spaced, {"throttled": rate}, {}) == []
    bunched = [*spaced, _run("late", 4500, 4501, kind="throttled")]
    assert over_rate(bunched, {"throttled": rate}, {}) == [
        "throttled started twice 500 ms apart, spaced at least 2000 ms"
    ]
