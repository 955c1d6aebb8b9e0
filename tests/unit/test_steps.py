"""`steps`, the long built-in type: it heartbeats after each step, with its progress."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from chalicelib.handlers.steps import MAX_TOTAL_MS, StepsPayload, steps
from chalicelib.registry import REGISTRY, TaskCancelled, TaskContext


class Beats:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.progress: list[Any] = []
        self._cancel_after = cancel_after

    def beat(self, progress: Any = None) -> None:
        if self._cancel_after is not None and len(self.progress) == self._cancel_after:
            raise TaskCancelled("cancelled")
        self.progress.append(progress)

    def cancel_requested(self) -> bool:
        return False


def context(keeper: Beats) -> TaskContext:
    return TaskContext("t", "steps", 1, 3, 1e12, logging.LoggerAdapter(logging.getLogger("t"), {}), keeper=keeper)


def test_it_heartbeats_its_progress_after_every_step() -> None:
    beats = Beats()
    assert steps(StepsPayload(steps=3, stepMs=0), context(beats)) == {"steps": 3}
    assert beats.progress == [{"done": 1, "total": 3}, {"done": 2, "total": 3}, {"done": 3, "total": 3}]


def test_a_cancel_stops_it_at_the_next_heartbeat() -> None:
    beats = Beats(cancel_after=1)
    with pytest.raises(TaskCancelled):
        steps(StepsPayload(steps=5, stepMs=0), context(beats))
    assert beats.progress == [{"done": 1, "total": 5}]


def test_its_whole_run_is_capped_below_its_timeout() -> None:
    with pytest.raises(ValidationError, match="less than or equal"):
        StepsPayload(steps=11, stepMs=1000)
    task_type = REGISTRY.get("steps")
    assert task_type is not None and task_type.timeout_seconds is not None
    assert task_type.timeout_seconds > MAX_TOTAL_MS / 1000
    assert task_type.lease(60) == 3 * task_type.heartbeat_seconds  # type: ignore[operator]
