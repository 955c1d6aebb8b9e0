"""`simulate`: the seeds' simulated work. Sleep `executionTime` ms, then fail with `failureChance`."""

import random
import time
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from chalicelib.deferred import Model
from chalicelib.models import MAX_PAYLOAD_DEPTH, json_depth
from chalicelib.registry import PermanentError, TaskContext, TaskFailed, task_type

# The fault-tolerant-system seed's contract: this message always fails.
ALWAYS_FAILING_MESSAGE = "ERROR"

# Absent means "the default"; null is not a number and is refused, as seed 000's schema does.
ExecutionTime = Annotated[float, Field(strict=True, ge=0, le=1000, allow_inf_nan=False)]
FailureChance = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]


def _number_only(schema: dict[str, Any]) -> None:
    """Document failureChance as the number it must be: None only stands for "absent"."""
    schema.pop("anyOf", None)
    schema.pop("default", None)
    schema.update(type="number", minimum=0, maximum=1)


class Simulation(Model):
    """How the simulated work behaves for one task."""

    model_config = ConfigDict(extra="forbid")

    executionTime: ExecutionTime = Field(default=0, description="Simulated execution time in milliseconds, 0 to 1000.")
    failureChance: FailureChance | None = Field(
        default=None,
        description="Probability that an attempt fails, 0 to 1; absent means the stage's default.",
        json_schema_extra=lambda schema: _number_only(schema),
    )
    permanentFailure: bool = Field(
        default=False, strict=True, description="A failing attempt fails the task at once, without retries."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, value: Any) -> Any:
        if isinstance(value, dict):
            nulls = [name for name, given in value.items() if given is None]
            if nulls:
                raise ValueError(f"{nulls[0]} must be a number, not null; leave it out for the default")
        return value


class SimulatePayload(Model):
    """Task-specific data, passed through as given; only `simulation` has rules."""

    model_config = ConfigDict(extra="allow", strict=True)

    simulation: Simulation = Field(default_factory=Simulation)

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, value: Any) -> Any:
        if isinstance(value, dict) and json_depth(value) > MAX_PAYLOAD_DEPTH:
            raise ValueError(f"must not nest objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep")
        return value


_rng = random.Random()


def run_simulation(
    payload: SimulatePayload,
    default_chance: float,
    rng: random.Random | None = None,
    sleep: Any = time.sleep,
) -> dict[str, float]:
    """Sleep, then fail with the payload's chance (or `default_chance`). Returns what was slept.

    Raises:
        TaskFailed: the attempt failed (PermanentError when `permanentFailure` is set).
    """
    simulation = payload.simulation
    if simulation.executionTime:
        sleep(simulation.executionTime / 1000)
    failure: str | None = None
    if (payload.model_extra or {}).get("message") == ALWAYS_FAILING_MESSAGE:
        failure = 'payload.message is "ERROR", which always fails'
    else:
        chance = default_chance if simulation.failureChance is None else simulation.failureChance
        if (rng or _rng).random() < chance:
            failure = f"simulated failure (failureChance {chance:g})"
    if failure is not None:
        raise PermanentError(failure) if simulation.permanentFailure else TaskFailed(failure)
    return {"sleptMs": simulation.executionTime}


@task_type("simulate", payload=SimulatePayload)
def simulate(payload: SimulatePayload, context: TaskContext) -> dict[str, float]:
    """The seeds' work; its result is how long it slept."""
    # The stage's DEFAULT_FAILURE_CHANCE and the runtime's random source (seeded in tests).
    from chalicelib.runtime import get_runtime  # the runtime imports this package: no cycle at import

    runtime = get_runtime()
    return run_simulation(payload, runtime.settings.DEFAULT_FAILURE_CHANCE, runtime.rng)
