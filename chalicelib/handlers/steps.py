"""`steps`: long work to copy. A handler that heartbeats, reports its progress and stops when cancelled.

Each step sleeps `stepMs` and then heartbeats with `{"done", "total"}`, which
`GET /tasks/{id}` shows as `progress` while it runs. Its lease is three
heartbeats (6 s), not the stage's: a consumer that dies mid-task is taken over
seconds after its last heartbeat (docs/task-types.md, "Long work").
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.registry import TaskContext, task_type

# The whole run stays well inside its timeout, which fits every stage's consumer function.
MAX_TOTAL_MS = 10_000
TIMEOUT_SECONDS = 12
HEARTBEAT_SECONDS = 2


class StepsPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    steps: int = Field(ge=1, le=100, description="How many steps; a heartbeat follows each.")
    stepMs: int = Field(default=1000, ge=0, le=5000, description="Milliseconds each step sleeps.")

    @model_validator(mode="after")
    def _fits_its_timeout(self) -> StepsPayload:
        if self.steps * self.stepMs > MAX_TOTAL_MS:
            raise ValueError(f"steps x stepMs must be at most {MAX_TOTAL_MS} ms")
        return self


@task_type("steps", payload=StepsPayload, timeout_seconds=TIMEOUT_SECONDS, heartbeat_seconds=HEARTBEAT_SECONDS)
def steps(payload: StepsPayload, context: TaskContext) -> dict[str, int]:
    """Sleep step by step, heartbeating after each; a cancel stops it at the next heartbeat."""
    for done in range(1, payload.steps + 1):
        time.sleep(payload.stepMs / 1000)
        context.heartbeat({"done": done, "total": payload.steps})
    return {"steps": payload.steps}
