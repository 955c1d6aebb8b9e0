from __future__ import annotations

import random

import pytest

from chalicelib.consume.backoff import backoff_ceiling, backoff_seconds


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 60), (2, 120), (3, 240), (4, 480), (5, 900), (40, 900)])
def test_the_ceiling_doubles_from_the_base_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt, base_seconds=60, max_seconds=900) == ceiling


def test_a_huge_attempt_number_stays_at_the_cap_without_overflow() -> None:
    assert backoff_ceiling(10_000, base_seconds=60, max_seconds=900) == 900


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_ceiling(0, 60, 900)


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_equal_jitter_keeps_at_least_half_and_never_exceeds_the_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = backoff_ceiling(attempt, 60, 900)
    delays = [backoff_seconds(attempt, 60, 900, rng) for _ in range(2_000)]
    assert min(delays) >= ceiling / 2
    assert max(delays) <= ceiling
    assert len(set(delays)) > 10  # it does spread


def test_delays_are_whole_seconds_of_at_least_one() -> None:
    rng = random.Random(1)
    delays = [backoff_seconds(1, 0.2, 0.2, rng) for _ in range(100)]
    assert set(delays) == {1}
    assert all(isinstance(d, int) for d in delays)
