"""The delay before attempt n+1, after attempt n failed."""

from __future__ import annotations

import math
import random


def backoff_ceiling(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """min(max, base * 2**(attempt-1)): the exponential schedule before jitter."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    # 2**(attempt-1) overflows a float near attempt 1025; the cap is long reached by then.
    exponent = min(attempt - 1, 64)
    return min(max_seconds, base_seconds * 2.0**exponent)


def backoff_seconds(attempt: int, base_seconds: float, max_seconds: float, rng: random.Random | None = None) -> int:
    """The visibility timeout, in whole seconds as SQS takes it, after failed attempt `attempt`.

    Equal jitter: half the ceiling is kept and the other half is drawn at random.
    Tasks that fail together (a dependency went down) spread over half the window
    instead of returning as one burst, while every retry still waits at least half
    its backoff; full jitter could send a retry back almost at once.
    """
    ceiling = backoff_ceiling(attempt, base_seconds, max_seconds)
    draw = (rng or random).uniform(0.0, ceiling / 2)
    return max(1, math.ceil(ceiling / 2 + draw))
