"""`capped`, `per-customer` and `throttled`: flow control to try with curl, and the chaos suite's proof.

Each sleeps `sleepMs` under a limit of its type (docs/task-types.md, "Flow control"):
at most 2 `capped` attempts run at once across every consumer, at most 1 per
`customer` of `per-customer`, and `throttled` starts at most 30 a minute. Each logs
its own start and end (`flow_run_started`, `flow_run_ended`, on its own clock), so
whoever checks the limits counts what the handlers did, not what the gate says.
"""

import time

from pydantic import ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.models import WholeNumber
from chalicelib.registry import TaskContext, task_type

MAX_SLEEP_MS = 1000
CAPPED_CONCURRENCY = 2
CUSTOMER_CONCURRENCY = 1
THROTTLED_RATE = "30/minute"


class LimitedPayload(Model):
    model_config = ConfigDict(extra="forbid", strict=True)

    sleepMs: WholeNumber = Field(default=100, ge=0, le=MAX_SLEEP_MS, description="Milliseconds the attempt sleeps.")
    customer: str = Field(
        default="anyone", min_length=1, max_length=64, description="Whose work it is: `per-customer`'s key."
    )


def _run(payload: LimitedPayload, context: TaskContext) -> dict[str, int]:
    started = time.time()
    context.logger.info(
        "flow_run_started",
        extra={
            "taskType": context.task_type,
            "customer": payload.customer,
            "startedMs": int(started * 1000),
            "deadlineMs": int(context.deadline * 1000),
        },
    )
    time.sleep(payload.sleepMs / 1000)
    context.logger.info("flow_run_ended", extra={"taskType": context.task_type, "endedMs": int(time.time() * 1000)})
    return {"sleptMs": payload.sleepMs}


@task_type("capped", payload=LimitedPayload, concurrency=CAPPED_CONCURRENCY)
def capped(payload: LimitedPayload, context: TaskContext) -> dict[str, int]:
    """At most CAPPED_CONCURRENCY at once, whoever runs them."""
    return _run(payload, context)


@task_type("per-customer", payload=LimitedPayload, concurrency_key="customer", key_concurrency=CUSTOMER_CONCURRENCY)
def per_customer(payload: LimitedPayload, context: TaskContext) -> dict[str, int]:
    """At most CUSTOMER_CONCURRENCY at once per customer; customers take turns."""
    return _run(payload, context)


@task_type("throttled", payload=LimitedPayload, rate_limit=THROTTLED_RATE)
def throttled(payload: LimitedPayload, context: TaskContext) -> dict[str, int]:
    """At most THROTTLED_RATE starts (plus the default burst, 0)."""
    return _run(payload, context)
