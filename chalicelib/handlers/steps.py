"""`steps`: long work to copy. A handler that heartbeats, reports its progress and stops when cancelled.

Each step sleeps `stepMs` and then heartbeats with `{"done", "total"}`, which
`GET /tasks/{id}` shows as `progress` while it runs. Its lease is three
heartbeats (6 s), not the stage's: a consumer that dies mid-task is taken over
seconds after its last heartbeat (docs/task-types.md, "Long work").
"""

import time

from pydantic import ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.models import WholeNumber
from chalicelib.registry import TaskContext, task_type

# The whole run (at most MAX_STEPS x MAX_STEP_MS) stays inside its timeout, which fits every
# stage's consumer function. Each limit is a field's own, so the OpenAPI schema states them.
MAX_STEPS = 10
MAX_STEP_MS = 1000
MAX_TOTAL_MS = MAX_STEPS * MAX_STEP_MS
TIMEOUT_SECONDS = 12
HEARTBEAT_SECONDS = 2


class StepsPayload(Model):
    model_config = ConfigDict(extra="forbid", strict=True)

    # Whole numbers as JSON has them: 7.0 is 7, as for the API's own fields.
    steps: WholeNumber = Field(ge=1, le=MAX_STEPS, description="How many steps; a heartbeat follows each.")
    stepMs: WholeNumber = Field(default=1000, ge=0, le=MAX_STEP_MS, description="Milliseconds each step sleeps.")


@task_type("steps", payload=StepsPayload, timeout_seconds=TIMEOUT_SECONDS, heartbeat_seconds=HEARTBEAT_SECONDS)
def steps(payload: StepsPayload, context: TaskContext) -> dict[str, int]:
    """Sleep step by step, heartbeating after each; a cancel stops it at the next heartbeat."""
    for done in range(1, payload.steps + 1):
        time.sleep(payload.stepMs / 1000)
        context.heartbeat({"done": done, "total": payload.steps})
    return {"steps": payload.steps}
