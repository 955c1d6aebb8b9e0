"""The offline worker's scheduled functions: app.py's `@app.schedule` handlers found, their rates scaled."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from chalice.app import Cron, Rate

from chalicelib.tick.clock import ScheduleClock
from local.scheduled import ScheduledFunction, ScheduleRunner, rate_seconds, scheduled_functions


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        (Rate(1, unit=Rate.MINUTES), 60),
        (Rate(2, unit=Rate.HOURS), 7200),
        (Rate(1, unit=Rate.DAYS), 86_400),
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        (Cron(0, 9, "*", "*", "?", "*"), None),
        ("cron(0 9 * * ? *)", None),
    ],
)
def test_a_rate_expression_has_its_period_and_a_cron_has_none(expression: Any, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_the_app_s_tick_is_found_and_runs_every_wall_second_at_a_scale_of_60() -> None:
    import app

    clock = ScheduleClock(scale=60, origin=0.0)

    [tick] = scheduled_functions(app, "taskproc-local", clock.wall_seconds_for, lambda name: 50, "us-east-1")

    assert (tick.function_name, tick.period_seconds, tick.timeout_seconds) == ("taskproc-local-tick", 1.0, 50)
    assert tick.handler is app.tick


def test_a_runner_invokes_its_function_on_its_period_with_a_scheduled_event_until_stopped() -> None:
    stop = threading.Event()
    events: list[dict[str, Any]] = []
    enough = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> None:
        events.append(event)
        if len(events) == 2:
            raise RuntimeError("one failed run does not stop the next")
        if len(events) == 3:
            enough.set()

    runner = ScheduleRunner(ScheduledFunction("fn", handler, 0.05, 5, "us-east-1"), stop)
    runner.start()
    assert enough.wait(5), "three runs within the deadline"
    stop.set()

    assert runner.join(5)
    assert {event["detail-type"] for event in events} == {"Scheduled Event"}
    assert events[0]["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/fn"]


def test_make_run_gives_every_piece_one_clock_origin_when_a_time_scale_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from local.config import load_config
    from local.runner import child_environment

    config = load_config({}, stage="local")
    monkeypatch.delenv("SCHEDULE_CLOCK_ORIGIN", raising=False)
    monkeypatch.delenv("SCHEDULE_TIME_SCALE", raising=False)
    assert "SCHEDULE_CLOCK_ORIGIN" not in child_environment(config)

    monkeypatch.setenv("SCHEDULE_TIME_SCALE", "60")
    before = time.time()
    origin = float(child_environment(config)["SCHEDULE_CLOCK_ORIGIN"])

    assert before <= origin <= time.time()
    monkeypatch.setenv("SCHEDULE_CLOCK_ORIGIN", "1000.5")
    assert child_environment(config)["SCHEDULE_CLOCK_ORIGIN"] == "1000.5"  # given: kept
