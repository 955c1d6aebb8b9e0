"""A task's priority class: `high`, `default` or `low`, each with a queue and a consumer of its own.

SQS has no priorities, so a class is a queue: `taskproc-<stage>-tasks` (the default
class, as before), `taskproc-<stage>-tasks-high` and `taskproc-<stage>-tasks-low`,
each polled by its own function (`process_tasks`, `process_high_priority_tasks`,
`process_low_priority_tasks`) whose event source has its own maximum concurrency. A
high task never waits behind a default or low backlog because it is never in their
queue: its wait is its own class's backlog over its consumer's concurrency, plus the
event source's poll (docs/architecture.md, "Priorities").

The class is fixed at publish and stored on the item (`priority`); every message the
task gets after that (a retry, a redrive, a renewal) goes to its class's queue. A
consumer learns a record's class from the queue it came from (its `eventSourceARN`),
never from the body, so a message can never disagree with the queue it sits in.
"""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


PRIORITY_RULE = "must be one of high, default, low"


def queue_name_of_arn(arn: str | None) -> str | None:
    """The queue name an SQS ARN ends with (`arn:aws:sqs:<region>:<account>:<name>`), or None."""
    if not arn or not arn.startswith("arn:") or arn.count(":") < 5:
        return None
    return arn.rsplit(":", 1)[-1] or None
