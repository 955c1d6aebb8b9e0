"""The fan-in: after a child's terminal write, count its end on the workflow and do what follows.

A follow-up of chalicelib/consume/terminal.py, so it runs after every write that ends a child and again
wherever a delivery finds one ended; each run must be harmless to repeat, and is:

- the count is store.py's conditional map entry, one per child and version (its docstring is the
  argument that it neither double-counts nor misses);
- `then` is the task `<workflow id>/then`, published like a callback: its message first, then its
  item written only if absent, after a read that finds it missing (chalicelib/callbacks/follow_up.py);
- the workflow's callback is the task `<workflow id>/callback`, published the same way;
- cancelling the unfinished children (`onChildFailure: "fail"`) is the operator's cancel, which
  refuses a child already ended or already asked to stop.

What it decides, from the workflow as the count's write left it:

    refused (a child is another task)  FAILED: the refusal (service.py) cancelled the other children;
                                       the callback is published
    "fail", a child counts FAILED      the workflow is FAILED: the FAILED child's follow-up cancels
                                       the unfinished children; the callback is published
    "fail", all ended, one CANCELLED   CANCELLED; `then` does not run; the callback is published
    all ended otherwise                `then` is published with every child's outcome, in order
    else                               nothing yet

`then`'s own end (its WorkflowRef child is 0) publishes the workflow's callback, with its status.
Only a FAILED child's follow-up cancels, not a cancelled sibling's: the cancels' own follow-ups
(each sibling's end) therefore never cancel again, and a workflow of n children makes at most n
cancels per FAILED child.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.errors import Conflict, StoreError, TaskNotFound, TaskprocError
from chalicelib.logs import log_event
from chalicelib.models import MAX_TASK_BYTES, Status, Task, WorkflowRef, callback_task_id
from chalicelib.tasks.record import TaskRecord
from chalicelib.workflows.definition import then_task_id
from chalicelib.workflows.store import WorkflowItem, WorkflowStore, workflow_store

if TYPE_CHECKING:  # the runtime imports the handlers, which import this
    from chalicelib.runtime import Runtime

logger = logging.getLogger(__name__)

THEN_CHILD = 0
CANCELLERS = 16
# What a workflow's view says of its `then` before it is published, and when it never will be.
THEN_WAITING = "WAITING"
THEN_NOT_RUN = "NOT_RUN"
RUNNING = "RUNNING"


def workflow_status(workflow: WorkflowItem, then: TaskRecord | None) -> str:
    """RUNNING, COMPLETED, FAILED or CANCELLED, from the count and the `then` task, if published."""
    if workflow.refused is not None:
        return Status.FAILED.value  # a child is another task: it can never be counted, nor `then` run
    if then is not None:
        return then.status.value if then.is_terminal else RUNNING
    if workflow.on_child_failure == "fail":
        if workflow.ended_in(Status.FAILED):
            return Status.FAILED.value
        if workflow.all_ended and workflow.ended_in(Status.CANCELLED):
            return Status.CANCELLED.value
    return RUNNING


def children_of(rt: Runtime, workflow_id: str) -> list[dict[str, Any]]:
    """Each child's outcome, in the children's order: `{"id", "status", "result"}` for a COMPLETED child,
    `{"id", "status", "lastError"}` for any other. What `then` receives as `children`, or reads through
    this function when its payload carries `childrenOf` instead (the list was over the payload cap).

    Raises:
        StoreError: the table did not answer.
    """
    store = workflow_store(rt)
    workflow = store.read(workflow_id)
    if workflow is None:
        raise TaskNotFound(f"no workflow has the id {workflow_id!r}")
    return _outcomes(store, workflow)


def _outcomes(store: WorkflowStore, workflow: WorkflowItem) -> list[dict[str, Any]]:
    items = store.items(workflow.children, ("status", "result", "lastError"))
    outcomes: list[dict[str, Any]] = []
    for child in workflow.children:
        item = items.get(child, {})
        status = item.get("status", Status.PENDING.value)
        if status == Status.COMPLETED.value:
            result = item.get("result")
            outcomes.append({"id": child, "status": status, "result": json.loads(result) if result else None})
        else:
            outcomes.append({"id": child, "status": status, "lastError": item.get("lastError")})
    return outcomes


class WorkflowFollowUp:
    """The follow-up of a workflow's child (count it, then decide) and of its `then` (the callback)."""

    def publish(self, rt: Runtime, record: TaskRecord) -> None:
        """Count `record`'s end on its workflow and publish what follows, each at most once.

        Raises:
            QueueError, StoreError: something may be undone; the caller's message must come back.
        """
        ref = record.workflow
        if ref is None:
            return
        store = workflow_store(rt)
        if ref.child == THEN_CHILD:
            workflow = store.read(ref.id)
            if workflow is not None:
                _publish_callback(rt, store, workflow, record.priority)
            return
        workflow = store.count_end(ref.id, ref.child, record.status, record.version)
        if workflow is None:
            log_event("workflow_missing", logging.WARNING, taskId=record.id, workflowId=ref.id)
            return
        log_event(
            "workflow_child_ended",
            workflowId=ref.id,
            taskId=record.id,
            status=record.status.value,
            ended=len(workflow.ended),
            children=len(workflow.children),
        )
        if workflow.refused is not None:  # its refusal cancelled this child; the callback may still be missing
            _publish_callback(rt, store, workflow, record.priority)
            return
        if workflow.on_child_failure == "fail" and workflow.ended_in(Status.FAILED):
            if record.status is Status.FAILED:
                _cancel_unfinished(rt, workflow, record.id)
            _publish_callback(rt, store, workflow, record.priority)
            return
        if not workflow.all_ended:
            return
        if workflow.on_child_failure == "fail" and workflow.ended_in(Status.CANCELLED):
            _publish_callback(rt, store, workflow, record.priority)
            return
        _publish_then(rt, store, workflow, record)


def _publish_then(rt: Runtime, store: WorkflowStore, workflow: WorkflowItem, record: TaskRecord) -> None:
    """Publish `<id>/then` with every child's outcome, unless it exists; the message first, then the item."""
    task_id = then_task_id(workflow.id)
    if rt.store.get(task_id) is not None:
        return
    ref = WorkflowRef(workflow.id, THEN_CHILD)
    task = Task(
        id=task_id,
        type=workflow.then_type,
        payload={**workflow.then_payload, "children": _outcomes(store, workflow)},
        priority=record.priority,
        workflow=ref,
    )
    if len(task.message_body().encode("utf-8")) > MAX_TASK_BYTES:
        # Over the cap: `then` reads the outcomes itself, through children_of(rt, childrenOf).
        task = task.model_copy(update={"payload": {**workflow.then_payload, "childrenOf": workflow.id}})
    _publish_own(rt, task)
    log_event("workflow_then_published", workflowId=workflow.id, taskId=task_id, children=len(workflow.children))


def _publish_callback(rt: Runtime, store: WorkflowStore, workflow: WorkflowItem, priority: Any) -> None:
    """Publish the workflow's callback task once it is terminal, unless it exists."""
    if workflow.callback is None:
        return
    task_id = callback_task_id(workflow.id)
    if rt.store.get(task_id) is not None:
        return
    then = rt.store.get(then_task_id(workflow.id))
    status = workflow_status(workflow, then)
    if status == RUNNING:
        return
    if workflow.refused is not None:
        result, last_error, finished_at = None, workflow.refused.reason, workflow.refused.at
    elif then is not None:
        result = json.loads(then.result_json) if then.result_json is not None else None
        last_error, finished_at = then.last_error, then.finished_at
    else:
        # Ended by its policy: the first child (in order) that counts FAILED, else CANCELLED, says why.
        first = (workflow.ended_in(Status.FAILED) or workflow.ended_in(Status.CANCELLED))[0]
        child = rt.store.get(workflow.children[first - 1])
        result = None
        last_error = f"child {workflow.children[first - 1]!r} ended {status}: {child.last_error if child else None}"
        finished_at = child.finished_at if child else None
    delivery = {
        "id": workflow.id,
        "status": status,
        "result": result,
        "lastError": last_error,
        "finishedAt": finished_at,
    }
    task = Task(
        id=task_id, type=CALLBACK_TYPE, payload={"url": workflow.callback, "delivery": delivery}, priority=priority
    )
    _publish_own(rt, task)
    log_event("callback_published", taskId=workflow.id, callbackTask=task_id)


def _publish_own(rt: Runtime, task: Task) -> None:
    """A task taskproc publishes itself: its message to its class's queue, then its item if absent."""
    task_type = rt.registry.get(task.type)
    max_attempts = task_type.attempts(rt.settings.MAX_ATTEMPTS) if task_type else rt.settings.MAX_ATTEMPTS
    message_id = rt.queue_for(task.priority).send(task.message_body())
    rt.store.create_follow_up(task, max_attempts, message_id)


def refuse(rt: Runtime, workflow_id: str, reason: str, foreign: set[str], priority: Any) -> None:
    """End a stored workflow some of whose children's ids are other tasks' (`foreign`): those can never be
    counted, so it would stay RUNNING. It is FAILED from the refusal's write on (the first `reason` stays);
    its other unfinished children are cancelled and its callback is published, as `fail` does for a FAILED
    child. Each step is harmless to repeat.

    Raises:
        StoreError, QueueError: the refusal or what follows it may be undone; the same POST again redoes it
            (a cancelled child's own follow-up also publishes the callback).
    """
    store = workflow_store(rt)
    workflow = store.refuse(workflow_id, reason)
    if workflow is None:
        return
    log_event("workflow_refused", logging.WARNING, workflowId=workflow_id, foreign=len(foreign), reason=reason)
    _cancel_unfinished(rt, workflow, "", spared=foreign)
    _publish_callback(rt, store, workflow, priority)


def _cancel_unfinished(rt: Runtime, workflow: WorkflowItem, failed_id: str, spared: set[str] | None = None) -> None:
    """Cancel every child whose end is not counted, but `failed_id` and `spared`: the operator's cancel,
    by `workflow <id>`.

    Raises:
        StoreError: a cancel got no answer; the FAILED child's message comes back to try again.
    """
    # A lazy import: operations runs the follow-ups (chalicelib/consume/terminal.py), which run this.
    from chalicelib.operate import operations

    by = f"workflow {workflow.id}"
    skipped = {failed_id, *(spared or ())}
    targets = [child for child in workflow.unfinished() if child not in skipped]

    def cancel(child: str) -> str | None:
        try:
            operations.cancel(child, by, rt)
        except (Conflict, TaskNotFound):
            return None  # ended meanwhile, asked to stop already, or never stored (its message brings it)
        except TaskprocError as exc:
            return f"{child}: {exc.message}"
        return None

    if not targets:
        return
    with ThreadPoolExecutor(max_workers=min(CANCELLERS, len(targets))) as pool:
        problems = [problem for problem in pool.map(cancel, targets) if problem]
    log_event(
        "workflow_failed",
        logging.WARNING,
        workflowId=workflow.id,
        failedChild=failed_id,
        cancelled=len(targets) - len(problems),
        unanswered=len(problems),
    )
    if problems:
        raise StoreError(f"{len(problems)} children of workflow {workflow.id!r} were not cancelled: {problems[0]}")


def reopen_after_retry(rt: Runtime, retried: TaskRecord) -> None:
    """Take a retried child's end out of its workflow's count (`retried` is the child as it stood before).

    A FAILED workflow reads RUNNING again from this write on, unless another child still counts FAILED.
    Not taking it out does not fail the retry: the child's next end, at a higher version, replaces it.
    """
    ref = retried.workflow
    if ref is None or ref.child == THEN_CHILD:
        return
    try:
        removed = workflow_store(rt).uncount(ref.id, ref.child, retried.version)
    except StoreError as exc:
        log_event("workflow_reopen_failed", logging.WARNING, workflowId=ref.id, taskId=retried.id, error=str(exc))
        return
    log_event("workflow_child_retried", workflowId=ref.id, taskId=retried.id, uncounted=removed)
