"""What `POST /workflows` and `GET /workflows/{id}` do: check, store, publish the children; read the view.

The publish keeps the never-lost order of every task (docs/architecture.md, "Nothing is stranded"),
one level up: the workflow item first, then each child by the publish path (its message, then its
item written only if absent), the children's messages in SendMessageBatch calls and their items in
PutItems side by side, as `POST /publish/batch` does. A death or a 503 between the two leaves a
workflow whose children are partly published: the same POST again finds the item, sends and stores
only the children not stored yet, and answers 201 (a POST with the same id and another definition
is a 409). A child whose message was sent and whose put was lost is stored by the consumer that
receives the message, with its workflow mark (the message carries it), so it is counted all the same.

A child's id that is already another task's can never be counted, and would leave the workflow
RUNNING for ever. So the children's ids are read before the workflow item is written, and a POST
naming another task's id is a 409 that writes nothing. A task that takes such an id after that read
(its publish racing this one), or between a first POST and its repeat, is found by the child's put;
the workflow is then ended visibly (fan_in.refuse: FAILED, its other children cancelled, its
callback published) and the answer is the same 409.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.errors import (
    Conflict,
    FieldProblem,
    QueueError,
    ServiceUnavailable,
    StoreError,
    TaskNotFound,
    ValidationFailed,
)
from chalicelib.logs import log_event
from chalicelib.models import TASK_ID_RULE, Task, WorkflowRef, callback_task_id, task_id_problem
from chalicelib.publish import api
from chalicelib.runtime import Runtime
from chalicelib.tasks.queue import Outgoing
from chalicelib.workflows.definition import (
    CHILD_IDS_RULE,
    MAX_CHILD_ID_BYTES,
    MAX_THEN_PAYLOAD_BYTES,
    ThenIn,
    ThenView,
    Workflow,
    WorkflowIn,
    WorkflowView,
    default_child_id,
    then_task_id,
)
from chalicelib.workflows.fan_in import THEN_NOT_RUN, THEN_WAITING, refuse, workflow_status
from chalicelib.workflows.store import WorkflowItem, workflow_store

PUBLISHERS = 16


def parse(body: dict[str, Any], rt: Runtime) -> Workflow:
    """The workflow a body describes, each child checked as `POST /publish` checks a task.

    Raises:
        ValidationFailed: a broken rule, each detail naming its field (`children[3].payload.x`).
    """
    try:
        given = WorkflowIn.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the workflow is not valid", api.field_problems(exc)) from exc
    workflow_id = given.id
    derived = (callback_task_id(workflow_id), then_task_id(workflow_id), default_child_id(workflow_id, 1000))
    if any(task_id_problem(task_id) is not None for task_id in derived):
        rule = f"must leave room for the ids made from it (`<id>/callback`, `<id>/1000`): those must be {TASK_ID_RULE}"
        raise ValidationFailed("the workflow is not valid", [FieldProblem("id", rule)])
    children: list[Task] = []
    seen: dict[str, int] = {}
    for index, child in enumerate(given.children):
        field = f"children[{index}]"
        child_id = child.id if child.id is not None else default_child_id(workflow_id, index + 1)
        if child_id in seen:
            rule = f"must be unique in the workflow; children[{seen[child_id]}] has it"
            raise ValidationFailed("the workflow is not valid", [FieldProblem(f"{field}.id", rule)])
        if child_id in (then_task_id(workflow_id), callback_task_id(workflow_id)):
            rule = "must not be the id of the workflow's then or callback task"
            raise ValidationFailed("the workflow is not valid", [FieldProblem(f"{field}.id", rule)])
        seen[child_id] = index
        if child.type == CALLBACK_TYPE:
            rule = "must not be callback: taskproc publishes that type itself, for a task's `callback`"
            raise ValidationFailed("the workflow is not valid", [FieldProblem(f"{field}.type", rule)])
        raw = {"id": child_id, "type": child.type, "payload": body["children"][index]["payload"]}
        try:
            task, _ = api.validated_task(raw, rt.registry)
            api.checked_message(task)
        except ValidationFailed as refused:
            details = [FieldProblem(f"{field}.{problem.field}", problem.message) for problem in refused.details]
            raise ValidationFailed(f"{field} is not valid: {refused.message}", details) from None
        children.append(task.model_copy(update={"workflow": WorkflowRef(workflow_id, index + 1)}))
    if sum(len(task.id.encode("utf-8")) for task in children) > MAX_CHILD_ID_BYTES:
        raise ValidationFailed("the workflow is too large", [FieldProblem("children", CHILD_IDS_RULE)])
    then_payload = body["then"].get("payload", {})
    _check_then(given.then, then_payload, rt)
    callback = given.callback.url if given.callback is not None else None
    if callback is not None:
        api.check_callback(Task(id=workflow_id, payload={}, callback=callback), rt)
    return Workflow(workflow_id, tuple(children), given.then.type, then_payload, given.onChildFailure, callback)


def _check_then(then: ThenIn, payload: dict[str, Any], rt: Runtime) -> None:
    task_type = rt.registry.get(then.type)
    if task_type is None:
        rule = f"must be one of the registered types: {', '.join(rt.registry.names())}"
        raise ValidationFailed(f"unknown task type {then.type!r}", [FieldProblem("then.type", rule)])
    if then.type == CALLBACK_TYPE:
        rule = "must not be callback: taskproc publishes that type itself"
        raise ValidationFailed("the workflow is not valid", [FieldProblem("then.type", rule)])
    for added in ("children", "childrenOf"):
        if added in payload:
            rule = "must not be given: the fan-in adds it"
            raise ValidationFailed("the workflow is not valid", [FieldProblem(f"then.payload.{added}", rule)])
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_THEN_PAYLOAD_BYTES:
        rule = f"may be at most {MAX_THEN_PAYLOAD_BYTES:,} bytes of JSON; it has {size:,}"
        raise ValidationFailed("the workflow is too large", [FieldProblem("then.payload", rule)])
    try:
        task_type.parse({**payload, "children": []})
    except ValidationError as exc:
        raise ValidationFailed(
            f"the then payload does not fit task type {then.type!r}", api.field_problems(exc, ("then", "payload"))
        ) from exc


def create(body: dict[str, Any], rt: Runtime) -> WorkflowView:
    """Store the workflow, then publish each child not stored yet; its view.

    Raises:
        ValidationFailed, Conflict (the id has another definition, or a child's id is another task's),
        ServiceUnavailable (some children are not published: the same POST again completes them).
    """
    workflow = parse(body, rt)
    store = workflow_store(rt)
    try:
        # The children that exist: another task's id refuses the workflow before its item is written.
        existing = store.items((task.id for task in workflow.children), ("workflow",))
        foreign = [task.id for task in workflow.children if task.id in existing and not _ours(existing[task.id], task)]
        if foreign and store.read(workflow.id) is None:
            raise _taken(workflow, foreign, ended=False)
        stored, created = store.create(workflow)
        if not created and not stored.same_definition(workflow):
            raise Conflict(f"workflow {workflow.id!r} exists with another definition")
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; the workflow was not accepted, try again") from exc
    if foreign or stored.refused is not None:  # ended already, or to end now: no child is published
        _refuse(workflow, foreign, rt)
    pending = [task for task in workflow.children if task.id not in existing]
    foreign += _publish_children(pending, rt)
    log_event(
        "workflow_accepted",
        workflowId=workflow.id,
        children=len(workflow.children),
        published=len(pending),
        repeat=not created,
    )
    if foreign:
        _refuse(workflow, foreign, rt)
    return view(stored, rt)


def _taken(workflow: Workflow, foreign: list[str], ended: bool) -> Conflict:
    """The 409 naming each child whose id is another task's."""
    ids = [task.id for task in workflow.children]
    rule = "must not be the id of a task outside this workflow"
    problems = [FieldProblem(f"children[{ids.index(task_id)}].id", rule) for task_id in foreign]
    outcome = f"; workflow {workflow.id!r} is FAILED" if ended else "; nothing was stored"
    return Conflict(f"{len(foreign)} children's ids are other tasks' ids{outcome}", problems)


def _refuse(workflow: Workflow, foreign: list[str], rt: Runtime) -> None:
    """End the stored workflow FAILED (fan_in.refuse) and answer the 409.

    Raises:
        Conflict: always, once the workflow is ended. ServiceUnavailable: it may not be; the same POST again.
    """
    reason = "refused: a child's id was another task's"
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if foreign[1:] else ""
        reason = f"refused: the id of child {foreign[0]!r} is another task's{more}"
    try:
        refuse(rt, workflow.id, reason, set(foreign), workflow.children[0].priority)
    except (StoreError, QueueError) as exc:
        raise ServiceUnavailable(
            f"{len(foreign)} children's ids are other tasks' ids, and the task table or queue did not answer while"
            f" workflow {workflow.id!r} was being ended: POST the same workflow again to end it"
        ) from exc
    if not foreign:  # refused by an earlier POST; the task that held the id has gone since
        raise Conflict(f"workflow {workflow.id!r} is FAILED: a child's id was another task's")
    raise _taken(workflow, foreign, ended=True)


def _ours(item: dict[str, Any], task: Task) -> bool:
    mark = item.get("workflow") or {}
    return (
        task.workflow is not None
        and mark.get("id") == task.workflow.id
        and int(mark.get("child", -1)) == task.workflow.child
    )


def _publish_children(children: list[Task], rt: Runtime) -> list[str]:
    """Send the children's messages in batches, then store each sent child, side by side; the ids among them
    that a task outside this workflow holds.

    Raises:
        ServiceUnavailable: a send or a put failed; those children are published by the same POST again.
    """
    if not children:
        return []
    queue = rt.queue_for(children[0].priority)
    with ThreadPoolExecutor(max_workers=PUBLISHERS) as pool:
        message_ids = queue.send_batch([Outgoing(task.message_body()) for task in children], pool)
        sent = [(task, message_id) for task, message_id in zip(children, message_ids, strict=True) if message_id]

        def put(entry: tuple[Task, str]) -> tuple[str, bool] | None:
            task, message_id = entry
            try:
                record, _ = rt.store.create(task, api.max_attempts_of(task, rt), 0, message_id)
            except StoreError:
                return None
            return task.id, record.workflow == task.workflow

        stored = list(pool.map(put, sent))
    unsent = len(children) - len(sent) + sum(1 for outcome in stored if outcome is None)
    if unsent:
        raise ServiceUnavailable(
            f"{unsent} of the workflow's {len(children)} children were not published; POST the same workflow"
            " again to publish them"
        )
    return [outcome[0] for outcome in stored if outcome is not None and not outcome[1]]


def read(workflow_id: str, rt: Runtime) -> WorkflowView:
    """The workflow's view.

    Raises:
        TaskNotFound: no workflow has the id. ServiceUnavailable: the table did not answer.
    """
    try:
        workflow = workflow_store(rt).read(workflow_id)
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc
    if workflow is None:
        raise TaskNotFound(f"no workflow has the id {workflow_id!r}")
    return view(workflow, rt)


def view(workflow: WorkflowItem, rt: Runtime) -> WorkflowView:
    try:
        items = workflow_store(rt).items(workflow.children, ("status",))
        then = rt.store.get(then_task_id(workflow.id))
    except StoreError as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc
    counts: dict[str, int] = {}
    for item in items.values():
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    status = workflow_status(workflow, then)
    waiting = THEN_WAITING if status == "RUNNING" else THEN_NOT_RUN
    then_status = then.status.value if then is not None else waiting
    return WorkflowView(
        id=workflow.id,
        status=status,
        counts=dict(sorted(counts.items())),
        children=list(workflow.children),
        then=ThenView(id=then_task_id(workflow.id), status=then_status),
    )
