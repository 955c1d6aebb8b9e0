"""Publishing a task's callback: after its terminal write, as the task `<id>/callback`, exactly once.

The order, and why it cannot lose a callback. A callback is published *after* the task's terminal
write, the way any task is published (its message first, then the conditional write of its item
`attribute_not_exists(id)`: docs/architecture.md, "Nothing is stranded"), and every path that
finds the task terminal publishes it again if it is missing (chalicelib/consume/terminal.py):

- A consumer's terminal write (complete, a last or permanent failure, a cancel, an expiry, a dead
  attempt's end) is followed by the publish before the task's message is let go. A kill, or an
  SQS or DynamoDB error, between the two leaves that message in the queue: its next delivery finds
  the task terminal (the acquire is refused TERMINAL) and publishes the callback then; if its
  receives run out first, the dead-letter handler finds the task terminal and does the same.
- The dead-letter handler's own terminal writes are followed the same way: its message comes back
  until the publish has happened.
- An operator's cancel ends a PENDING or RETRYING task, and such a task always has a message on
  its way (sent before its item, or hidden for its backoff): the cancel publishes the callback at
  once, and if that dies, the task's message arrives later, finds the task terminal, and publishes.

Why it cannot make two. The callback task's id is fixed by its task's and by which end it reports
(`<id>/callback`, then `<id>/callback/<n>` for the end after the (n-1)-th operator retry, n counted
from the retries in the terminal item's history), and its item is written only if absent. A repeat
first reads whether it exists (one consistent read) and stops; two repeats racing past that read
each send a message, but one item is stored, and the other message is a duplicate the consumer
drops like any duplicate. The delivery's body is built from the task's terminal item, so every
repeat would build the same one; the first write wins.

Publishing before the terminal write instead was rejected: a callback would then exist for a
write that may never land (the attempt dies, and the task runs again), and its delivery would
have to wait on its task, spending its attempts while the task retries.

A task an operator retries is called back again when it ends again: each end is its own delivery,
with its own id, so the first end's delivery (and retrying it, which re-sends the first outcome) is
left as it was. An end whose callback was not published yet when an operator's retry overtook it
(a kill between the terminal write and the publish, the retry before the message came back) is
not called back: its message then finds the task running again, and the next end is called back.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from chalicelib.logs import log_event
from chalicelib.models import Task, callback_task_id
from chalicelib.tasks.record import TaskRecord

if TYPE_CHECKING:  # the runtime imports the handlers, which import this
    from chalicelib.runtime import Runtime

logger = logging.getLogger(__name__)

CALLBACK_TYPE = "callback"


def delivery_document(record: TaskRecord) -> dict[str, Any]:
    """What the receiver is sent about a terminal task: `{"id", "status", "result", "lastError", "finishedAt"}`."""
    return {
        "id": record.id,
        "status": record.status.value,
        "result": json.loads(record.result_json) if record.result_json is not None else None,
        "lastError": record.last_error,
        "finishedAt": record.finished_at,
    }


class CallbackFollowUp:
    """The follow-up of a task published with a `callback`: the `callback` task that delivers it."""

    def publish(self, rt: Runtime, record: TaskRecord) -> None:
        """Publish `record`'s callback task unless it exists; the message first, then the item.

        Raises:
            QueueError, StoreError: nothing may be assumed published; the caller's message must come back.
        """
        if record.callback is None:  # stored without one: its publish was voided before it stored the task
            return
        task_id = callback_task_id(record.id, record.generation)
        if rt.store.get(task_id) is not None:
            return
        task = Task(
            id=task_id,
            type=CALLBACK_TYPE,
            payload={"url": record.callback, "delivery": delivery_document(record)},
            priority=record.priority,
        )
        task_type = rt.registry.get(CALLBACK_TYPE)
        max_attempts = task_type.attempts(rt.settings.MAX_ATTEMPTS) if task_type else rt.settings.MAX_ATTEMPTS
        # The task's own class's queue: its consumer (which made the terminal write) may send there.
        message_id = rt.queue_for(record.priority).send(task.message_body())
        stored = rt.store.create_follow_up(task, max_attempts, message_id)
        log_event("callback_published", taskId=record.id, callbackTask=task_id, messageId=message_id, stored=stored)
