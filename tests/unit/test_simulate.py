from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from chalicelib.handlers.simulate import SimulatePayload, run_simulation
from chalicelib.registry import PermanentError, TaskFailed


def task(payload: dict[str, object]) -> SimulatePayload:
    return SimulatePayload.model_validate(payload)


def run_task(payload: SimulatePayload, chance: float, rng: random.Random | None = None, sleep=None) -> object:  # type: ignore[no-untyped-def]
    return run_simulation(payload, chance, rng, sleep=sleep or (lambda _: None))


def test_execution_time_is_slept_in_seconds_and_is_the_result() -> None:
    slept: list[float] = []
    result = run_task(task({"simulation": {"executionTime": 400, "failureChance": 0}}), 0.3, sleep=slept.append)
    assert slept == [0.4]
    assert result == {"sleptMs": 400}


def test_permanent_failure_raises_the_non_retryable_error() -> None:
    with pytest.raises(PermanentError, match="failureChance 1"):
        run_task(task({"simulation": {"failureChance": 1, "permanentFailure": True}}), 0.0)
    with pytest.raises(TaskFailed) as raised:
        run_task(task({"simulation": {"failureChance": 1}}), 0.0)
    assert not isinstance(raised.value, PermanentError)


@pytest.mark.parametrize("field", ["failureChance", "executionTime", "permanentFailure"])
def test_null_simulation_values_are_refused_because_null_is_not_a_number(field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field} must be a number, not null"):
        task({"simulation": {field: None}})


def test_failure_chance_one_always_fails_and_zero_never() -> None:
    rng = random.Random(3)
    for _ in range(50):
        with pytest.raises(TaskFailed):
            run_task(task({"simulation": {"failureChance": 1}}), 0.0, rng)
        run_task(task({"simulation": {"failureChance": 0}}), 1.0, rng)


def test_the_default_failure_chance_applies_when_none_is_given() -> None:
    rng = random.Random(11)
    failures = 0
    for _ in range(4_000):
        try:
            run_task(task({"message": "SUCCESS"}), 0.3, rng)
        except TaskFailed:
            failures += 1
    assert 0.27 < failures / 4_000 < 0.33


def test_message_error_always_fails_even_with_failure_chance_zero() -> None:
    with pytest.raises(TaskFailed, match="ERROR"):
        run_task(task({"message": "ERROR", "simulation": {"failureChance": 0}}), 0.0)
