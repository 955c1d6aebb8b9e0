from __future__ import annotations

import random

import pytest

from chalicelib.models import Task
from chalicelib.work import WorkFailed, run_task


def task(payload: dict[str, object]) -> Task:
    return Task(id="t", payload=payload)


def test_execution_time_is_slept_in_seconds() -> None:
    slept: list[float] = []
    run_task(task({"simulation": {"executionTime": 400, "failureChance": 0}}), 0.3, sleep=slept.append)
    assert slept == [0.4]


def test_failure_chance_one_always_fails_and_zero_never() -> None:
    rng = random.Random(3)
    for _ in range(50):
        with pytest.raises(WorkFailed):
            run_task(task({"simulation": {"failureChance": 1}}), 0.0, rng)
        run_task(task({"simulation": {"failureChance": 0}}), 1.0, rng)


def test_the_default_failure_chance_applies_when_none_is_given() -> None:
    rng = random.Random(11)
    failures = 0
    for _ in range(4_000):
        try:
            run_task(task({"message": "SUCCESS"}), 0.3, rng)
        except WorkFailed:
            failures += 1
    assert 0.27 < failures / 4_000 < 0.33


def test_message_error_always_fails_even_with_failure_chance_zero() -> None:
    with pytest.raises(WorkFailed, match="ERROR"):
        run_task(task({"message": "ERROR", "simulation": {"failureChance": 0}}), 0.0)
