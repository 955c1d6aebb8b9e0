"""What follows a task's terminal write: its follow-ups, each published once, however often the write is seen.

A follow-up is work a task asked for at publish that starts when it ends: today its completion
callback (chalicelib/callbacks/follow_up.py); chain steps and a workflow's fan-in plug in the same
way. Each is an object with `wanted(task)`, read from the task as its message or item carries it,
and `publish(rt, record)`, which must be idempotent: deterministic ids, the message first, then a
write conditioned on the id being new.

`after_terminal` runs after every write that makes a task COMPLETED, FAILED or CANCELLED (the
consumer's, the dead-letter handler's, an operator's cancel, an expiry), and again wherever a
delivery finds its task already terminal. A caller whose message can come back lets it come back
when `after_terminal` raises, so a kill between a terminal write and its follow-ups delays them
and never loses them: the proof is in follow_up.py's docstring. A task that wants none costs
nothing here: no read, no write.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the runtime imports the handlers, which import this
    from chalicelib.models import Task
    from chalicelib.runtime import Runtime
    from chalicelib.tasks.record import TaskRecord

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, rt: Runtime, record: TaskRecord) -> None: ...


class FollowUp:
    """A follow-up named by the task field that asks for it and the class that publishes it.

    The class is imported the first time a task wants it: most tasks want none, and a consumer's
    cold start need not import chains, workflows and callbacks for them (tests/unit/test_cold_start.py).
    """

    def __init__(self, field: str, publisher: str) -> None:
        self.field, self.publisher = field, publisher
        self._loaded: Publisher | None = None

    def wanted(self, task: Task) -> bool:
        return bool(getattr(task, self.field))

    def publish(self, rt: Runtime, record: TaskRecord) -> None:
        if self._loaded is None:
            module, _, name = self.publisher.partition(":")
            self._loaded = getattr(importlib.import_module(module), name)()
        self._loaded.publish(rt, record)


FOLLOW_UPS = [
    FollowUp("callback", "chalicelib.callbacks.follow_up:CallbackFollowUp"),
    FollowUp("then", "chalicelib.chains:ChainFollowUp"),
    FollowUp("workflow", "chalicelib.workflows.fan_in:WorkflowFollowUp"),
]


def after_terminal(rt: Runtime, task: Task, record: TaskRecord | None = None) -> None:
    """Publish what `task` asked to follow its end; `record`, when given, is its terminal item as read.

    Without `record`, the task is read once (consistently), and only if some follow-up is wanted. A
    task no longer terminal (an operator retried it since) gets its follow-ups when it ends again.

    Raises:
        QueueError, StoreError: a follow-up may be unpublished; the caller's message must come back.
    """
    wanted = [follow_up for follow_up in FOLLOW_UPS if follow_up.wanted(task)]
    if not wanted:
        return
    if record is None or not record.is_terminal:
        record = rt.store.get(task.id)
    if record is None or not record.is_terminal:
        return
    for follow_up in wanted:
        follow_up.publish(rt, record)
