from datetime import UTC, datetime

import pytest

from chalicelib.settings import Settings
from chalicelib.tick.clock import ScheduleClock

NAMES = {"TASKS_TABLE": "tasks", "FLOW_TABLE": "flow", "SCHEDULES_TABLE": "schedules", "TASKS_QUEUE": "t"}


def test_an_unscaled_clock_is_the_wall_clock() -> None:
    clock = ScheduleClock(wall=lambda: 1_800_000_000.5)
    assert clock.seconds() == 1_800_000_000.5
    assert clock.now() == datetime.fromtimestamp(1_800_000_000.5, UTC)


def test_a_scaled_clock_runs_faster_from_its_origin_only() -> None:
    wall = [1_000.0]
    clock = ScheduleClock(scale=60, origin=1_000.0, wall=lambda: wall[0])
    assert clock.seconds() == 1_000.0
    wall[0] = 1_005.0
    assert clock.seconds() == 1_000.0 + 300.0
    assert clock.wall_seconds_for(60) == 1.0


def test_a_deployed_stage_refuses_a_scaled_schedule_clock() -> None:
    with pytest.raises(ValueError, match="SCHEDULE_TIME_SCALE must be 1"):
        Settings(**NAMES, DEAD_LETTER_QUEUE="d", SCHEDULE_TIME_SCALE=60, AWS_LAMBDA_FUNCTION_NAME="f")
    assert Settings(**NAMES, DEAD_LETTER_QUEUE="d", SCHEDULE_TIME_SCALE=60).SCHEDULE_TIME_SCALE == 60
