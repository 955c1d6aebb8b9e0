"""The bench's flow section reads its figures right: attempts at once, starts per window, writes per attempt."""

from __future__ import annotations

import pytest

from chalicelib.logs import log_event
from tools.bench.flow import (
    BEFORE_FLOW_CONTROL,
    FlowEvents,
    Run,
    most_at_once,
    most_in_window,
    plain_comparison,
    spacing,
    writes_per_attempt,
)
from tools.bench.run import figures


def runs(*spans: tuple[float, float]) -> list[Run]:
    return [Run(f"t-{n}", 1, start, end) for n, (start, end) in enumerate(spans)]


def test_attempts_that_overlap_are_counted_at_once() -> None:
    assert most_at_once(runs((0, 10), (1, 3), (2, 4), (5, 6))) == 3


def test_an_attempt_starting_as_another_ends_is_not_counted_with_it() -> None:
    assert most_at_once(runs((0, 1), (1, 2), (2, 3))) == 1


def test_six_attempts_of_a_cap_of_five_would_show_as_six() -> None:
    assert most_at_once(runs(*[(n * 0.01, 1.0) for n in range(6)])) == 6


def test_no_attempts_were_none_at_once() -> None:
    assert most_at_once([]) == 0


def test_a_start_a_whole_window_after_the_first_falls_in_the_next_window() -> None:
    # 61 starts one second apart: any 60 s window [t, t + 60) holds at most 60 of them.
    starts = [float(n) for n in range(61)]
    assert most_in_window(starts, 60.0) == 60


def test_a_start_just_inside_the_window_is_counted_in_it() -> None:
    starts = [float(n) for n in range(60)] + [59.999]
    assert most_in_window(starts, 60.0) == 61


def test_the_busiest_window_is_found_wherever_it_lies_and_in_any_order() -> None:
    starts = [500.0, 0.0, 100.0, 130.0, 131.0, 189.0, 189.5, 400.0]
    assert most_in_window(starts, 60.0) == 4  # 130, 131, 189 and 189.5 (from 100: 100, 130 and 131)


def test_no_starts_make_an_empty_window() -> None:
    assert most_in_window([], 60.0) == 0


def test_the_spacing_of_starts_is_their_smallest_and_median_gap() -> None:
    assert spacing([3.0, 0.0, 1.0, 6.0]) == (1.0, 2.0)
    assert spacing([1.0]) is None


def test_a_flow_item_s_writes_are_read_per_admitted_attempt_and_its_refusals_per_deferral() -> None:
    row = {
        "runs": 10,
        "deferred_by": {"concurrency": 30, "paused": 10},
        "flow_writes": {"written": {"concurrency#x": 21}, "refused": {"concurrency#x": 42}},
    }
    assert writes_per_attempt(row, "concurrency#x") == (2.1, 42 / 40)
    assert writes_per_attempt(row, "rate#x") == (0.0, 0.0)


def test_a_plain_task_s_pause_reads_are_their_share_of_its_dynamodb_requests() -> None:
    plain = {
        "tasks": 100,
        "per_task": {"api_requests": 1.0, "sqs_requests": 3.2, "dynamodb_requests": 3.05},
        "requests": {"dynamodb.GetItem": 5, "dynamodb.PutItem": 100, "dynamodb.UpdateItem": 200},
    }
    compared = plain_comparison(plain)
    assert compared["before"] == BEFORE_FLOW_CONTROL
    assert compared["after"]["dynamodb.GetItem"] == 0.05
    assert compared["pause_view_share_of_dynamodb"] == pytest.approx(0.05 / 3.05, abs=1e-4)


def test_the_consumer_s_deferral_and_dead_letter_events_are_counted_per_task() -> None:
    with FlowEvents().listening() as events:
        log_event("flow_deferred", taskId="a", deferredBy="concurrency")
        log_event("flow_deferred", taskId="a", deferredBy="rate")
        log_event("flow_deferred", taskId="b", deferredBy="concurrency")
        log_event("dead_lettered", taskId="c")
        log_event("completed", taskId="a")
    log_event("flow_deferred", taskId="a", deferredBy="concurrency")  # after: not listened to
    assert events.deferrals == {"a": 2, "b": 1}
    assert events.deferred_by == {"concurrency": 2, "rate": 1}
    assert events.dead_letters == 1


def test_a_flow_only_run_replaces_the_flow_figures_and_keeps_the_cost_section_s() -> None:
    kept = {"date": "cost's date", "machine": "m", "scenarios": {"single": {}}, "flow": {"semaphore": 9.0}}
    section = {"capped": {"item_writes_per_attempt": 2.0}, "rated": {"item_writes_per_attempt": 1.25}}
    written = figures({"date": "flow's date", "machine": "m", "flow": section}, kept)
    assert written == {**kept, "flow": {"date": "flow's date", "semaphore": 2.0, "rate": 1.25}}
    assert kept["flow"] == {"semaphore": 9.0}
