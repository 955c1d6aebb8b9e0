"""The simulated work a task stands for."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from chalicelib.models import Task

# The fault-tolerant-system seed's contract: this message always fails.
ALWAYS_FAILING_MESSAGE = "ERROR"


class WorkFailed(Exception):
    """The task's work failed this attempt; the message says why."""


def run_task(
    task: Task,
    default_failure_chance: float,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Sleep `executionTime` ms, then fail with probability `failureChance`.

    Raises:
        WorkFailed: the attempt failed.
    """
    simulation = task.simulation
    if simulation.executionTime:
        sleep(simulation.executionTime / 1000)
    if task.payload.get("message") == ALWAYS_FAILING_MESSAGE:
        raise WorkFailed('payload.message is "ERROR", which always fails')
    chance = default_failure_chance if simulation.failureChance is None else simulation.failureChance
    if (rng or random).random() < chance:
        raise WorkFailed(f"simulated failure (failureChance {chance:g})")
