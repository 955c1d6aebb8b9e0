"""Chains: `then` at publish, each step published as a task of its own once the one before it COMPLETES.

    POST /publish
    {"id": "resize-42", "type": "resize", "payload": {...},
     "then": [{"type": "upload", "payload": {"bucket": "b"}}, {"type": "notify"}]}

When `resize-42` completes, step 1 is published as the task `resize-42/then/1` with its payload plus
`"previous": <resize-42's result>`; when that completes, step 2 as `resize-42/then/2`, and so on. A
task that ends FAILED or CANCELLED ends its chain there; a retry that completes it goes on.

The steps still to come travel with each step's task (its `then`, on its message and item), with
its place in the chain (`chain`: the root's id and its step number), so a step needs nothing of the
task before it but its own terminal item, and no read of the root however long after it runs.

Publishing a step is a follow-up (chalicelib/consume/terminal.py), ordered as the callback's
(chalicelib/callbacks/follow_up.py, whose docstring has the argument in full):

- It runs after the COMPLETED write, before the task's message is let go. A kill, or an SQS or
  DynamoDB error, between the two leaves that message in the queue: its next delivery finds the
  task terminal, and publishes the step then (or the dead-letter handler does, when its receives
  run out). So a step is delayed, never lost.
- The step's id is fixed by its chain (`<root>/then/<n>`), and its item is written only if absent
  (`attribute_not_exists(id)`), after its message is sent. A redelivered completion reads the step
  (one consistent read) and stops; two racing past that read each send, one item is stored, and the
  other message is a duplicate copy of a task that runs under one lease with its attempts counted
  on the item. Every repeat builds the same step from the same terminal item.

`previous` is added where the step type's payload model keeps it: the model declares a field
`previous`, or takes any field (`extra="allow"`, or no model at all). A model that would refuse or
drop it gets the payload as given; the result is still the `result` of the task before it.

A step whose payload with `previous` is larger than a task may be (MAX_TASK_BYTES) cannot be sent:
it is stored FAILED at once, with no attempt and with the sizes in its `lastError`, so the chain
ends visibly at that step. Its payload is kept as given, without `previous`: retrying it runs it so.

What it costs: per step, one consistent read and one conditional write of the step's item and one
SendMessage, all by the consumer that completed the task before it; nothing for a task that ended
otherwise, nor for one without a chain. A view with a chain reads one item per published step.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.errors import FieldProblem, field_name
from chalicelib.logs import log_event
from chalicelib.models import (
    CHAIN_STEP_INFIX,
    MAX_CHAIN_STEPS,
    MAX_TASK_BYTES,
    PREVIOUS_FIELD,
    TASK_ID_RULE,
    ChainPosition,
    ChainStepIn,
    Status,
    Task,
    chain_step_id,
    task_id_problem,
)
from chalicelib.registry import Registry
from chalicelib.tasks.record import TaskRecord

if TYPE_CHECKING:  # the runtime imports the handlers, which import the follow-ups
    from chalicelib.runtime import Runtime

logger = logging.getLogger(__name__)

CHAIN_FIELD = "chain"  # a step's place in its chain, in its message (never in a client's body)
ENDS_CHAIN = frozenset({Status.FAILED, Status.CANCELLED})
# With a chain, an id leaves room for the longest chain's last step, `/then/10`, however many steps
# it has: a rule of one length, which the OpenAPI document can state.
CHAIN_ID_ROOM = len(chain_step_id("", MAX_CHAIN_STEPS))
# The ids taskproc gives a chain's steps, which a client's task may not take: a chain would find its
# step published, and stop there.
STEP_ID_PATTERN = f"{re.escape(CHAIN_STEP_INFIX)}([1-9]|{MAX_CHAIN_STEPS})$"
STEP_ID = re.compile(STEP_ID_PATTERN.removesuffix("$") + "\\Z")
# Types taskproc publishes itself, never as a client's step.
RESERVED_TYPES = frozenset({CALLBACK_TYPE})


def keeps_previous(model: type[BaseModel] | None) -> bool:
    """Whether a step of a type with this payload model is given `previous`: the model declares it or
    takes any field."""
    if model is None:
        return True
    declared = PREVIOUS_FIELD in model.model_fields or any(
        field.alias == PREVIOUS_FIELD for field in model.model_fields.values()
    )
    return declared or model.model_config.get("extra") == "allow"


def check_chain(task_id: str, steps: list[ChainStepIn], registry: Registry) -> list[FieldProblem]:
    """What is wrong with a publish's id and `then`: each problem names `then[<i>].type`,
    `then[<i>].payload.<field>` or `id` (a step's own, or too long to name a tenth step: CHAIN_ID_ROOM).
    The payloads are checked against their types' models, all but the `previous` taskproc adds later."""
    if STEP_ID.search(task_id):
        rule = f"must not end in {CHAIN_STEP_INFIX}<1 to {MAX_CHAIN_STEPS}>: taskproc names a chain's steps so"
        return [FieldProblem("id", rule)]
    problems: list[FieldProblem] = []
    longest = chain_step_id(task_id, MAX_CHAIN_STEPS)
    if steps and task_id_problem(longest) is not None:
        rule = f"with a chain, must leave room for {longest[len(task_id) :]!r}: {longest!r} must be {TASK_ID_RULE}"
        problems.append(FieldProblem("id", rule))
    for index, step in enumerate(steps):
        where = f"then[{index}]"
        task_type = registry.get(step.type)
        if task_type is None or step.type in RESERVED_TYPES:
            known = ", ".join(name for name in registry.names() if name not in RESERVED_TYPES)
            problems.append(FieldProblem(f"{where}.type", f"must be one of the registered types: {known}"))
            continue
        keeps = keeps_previous(task_type.payload)
        if keeps and PREVIOUS_FIELD in step.payload:
            rule = "must be left out: taskproc sets it to the result of the task before the step"
            problems.append(FieldProblem(f"{where}.payload.{PREVIOUS_FIELD}", rule))
            continue
        try:
            task_type.parse(step.payload)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                if keeps and tuple(error["loc"]) == (PREVIOUS_FIELD,) and error["type"] == "missing":
                    continue  # taskproc gives it
                problems.append(FieldProblem(field_name(("then", index, "payload", *error["loc"])), error["msg"]))
    return problems


def steps_of_message(raw: dict[str, Any]) -> tuple[tuple[ChainStepIn, ...], ChainPosition | None]:
    """The chain a task's message carries: its steps (already checked as TaskIn's `then`) and, on a step's
    message, its place (`chain`, which the caller took out of `raw` before checking it as a TaskIn).

    Raises:
        ValueError: `chain` is not a place in a chain.
    """
    steps = tuple(ChainStepIn.model_validate(step) for step in raw.get("then") or ())
    position = raw.get(CHAIN_FIELD)
    if position is None:
        return steps, None
    try:
        return steps, ChainPosition.model_validate(position)
    except ValidationError as exc:
        raise ValueError(f"not a valid task: {CHAIN_FIELD}: {exc.errors()[0]['msg']}") from exc


def next_step(record: TaskRecord) -> tuple[str, int]:
    """The root of `record`'s chain and the number of the step after it."""
    if record.chain is None:
        return record.id, 1
    return record.chain.root, record.chain.step + 1


def step_payload(step: ChainStepIn, result: Any, registry: Registry) -> dict[str, Any]:
    """The payload step `step` is published with, after a task whose result was `result`."""
    task_type = registry.get(step.type)
    if task_type is not None and not keeps_previous(task_type.payload):
        return dict(step.payload)
    return {**step.payload, PREVIOUS_FIELD: result}


class ChainFollowUp:
    """The follow-up of a task published with `then`: its next step, published once it COMPLETES."""

    def publish(self, rt: Runtime, record: TaskRecord) -> None:
        """Publish the step after `record` unless it exists; the message first, then the item.

        Raises:
            QueueError, StoreError: nothing may be assumed published; the caller's message must come back.
        """
        if record.status is not Status.COMPLETED or not record.then:
            return  # FAILED or CANCELLED ends the chain: the view reads its steps not_run
        root, number = next_step(record)
        step_id = chain_step_id(root, number)
        if rt.store.get(step_id) is not None:
            return
        step = record.then[0]
        result = json.loads(record.result_json) if record.result_json is not None else None
        task = Task(
            id=step_id,
            type=step.type,
            payload=step_payload(step, result, rt.registry),
            priority=record.priority,  # its queue is the one this consumer reads and may send to
            then=record.then[1:],
            chain=ChainPosition(root=root, step=number),
        )
        task_type = rt.registry.get(step.type)
        max_attempts = task_type.attempts(rt.settings.MAX_ATTEMPTS) if task_type else rt.settings.MAX_ATTEMPTS
        message = task.message_body()
        size = len(message.encode("utf-8"))
        if size > MAX_TASK_BYTES:
            reason = (
                f"not published: step {number} with `{PREVIOUS_FIELD}` (the result of {record.id!r}) is {size}"
                f" bytes serialized, over the {MAX_TASK_BYTES} bytes a task may be"
            )
            stored = rt.store.create_failed_follow_up(
                task.model_copy(update={"payload": step.payload}), max_attempts, reason
            )
            log_event(
                "chain_step_too_large", logging.WARNING, taskId=record.id, stepTask=step_id, size=size, stored=stored
            )
            return
        message_id = rt.queue_for(record.priority).send(message)
        stored = rt.store.create_follow_up(task, max_attempts, message_id)
        log_event("chain_step_published", taskId=record.id, stepTask=step_id, messageId=message_id, stored=stored)


def openapi_schemas(registry: Registry, definitions: dict[str, Any], ref: str) -> dict[str, Any]:
    """The OpenAPI schemas of a step, one per type a client may name (its `type` a constant, its payload
    the type's model less the `previous` taskproc adds), and their union as `ChainStepIn`."""
    added: dict[str, Any] = {}
    variants = []
    for name in (name for name in registry.names() if name not in RESERVED_TYPES):
        task_type = registry.get(name)
        assert task_type is not None
        model = task_type.payload
        payload: dict[str, Any] = {"$ref": ref.format(model=model.__name__)} if model else {"type": "object"}
        if keeps_previous(model):
            declared = definitions.get(model.__name__, {}) if model else {}
            if PREVIOUS_FIELD in declared.get("properties", {}):
                payload = json.loads(json.dumps(declared))  # a copy, without what taskproc adds
                del payload["properties"][PREVIOUS_FIELD]
                payload["required"] = [field for field in payload.get("required", []) if field != PREVIOUS_FIELD]
            payload = {"allOf": [payload, {"not": {"required": [PREVIOUS_FIELD]}}]}
        variant = f"ChainStep{''.join(part.capitalize() for part in name.replace('-', '_').split('_'))}"
        added[variant] = {
            "type": "object",
            "title": variant,
            "properties": {
                "type": {"const": name, "description": "The registered task type that runs the step."},
                "payload": {
                    **payload,
                    "description": definitions["ChainStepIn"]["properties"]["payload"]["description"],
                },
            },
            # A type whose model refuses an empty payload needs one.
            "required": ["type", "payload"] if check_chain("x", [ChainStepIn(type=name)], registry) else ["type"],
            "additionalProperties": False,
        }
        variants.append({"$ref": ref.format(model=variant)})
    added["ChainStepIn"] = {
        "title": "ChainStepIn",
        "description": definitions["ChainStepIn"]["description"],
        "oneOf": variants,
    }
    return added
