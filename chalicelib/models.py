"""The domain model and the API's bodies. Imports no infrastructure."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from chalicelib.consume.expiry import MAX_EXPIRY_SECONDS
from chalicelib.deferred import Model
from chalicelib.publish.tags import MAX_TAGS, TAG_RULE, Tags
from chalicelib.tasks.priority import Priority

MAX_TASK_ID_LENGTH = 256
# An id is a key: the table's partition key (DynamoDB: at most 2,048 bytes) and the tail of
# the listing index's sort key `<updatedAt>#<id>` (at most 1,024 bytes, 25 of them before the
# id). 768 bytes keeps every 256-character id of the Basic Multilingual Plane (3 bytes a
# character at most in UTF-8) and leaves the sort key 231 bytes of room.
MAX_TASK_ID_BYTES = 768
# C0 controls, DEL, C1 controls and the bidirectional embeddings, overrides and isolates:
# an id is shown in terminals, logs and pages, where these rewrite what an operator reads.
FORBIDDEN_ID_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
TASK_ID_PATTERN = f"^[^{FORBIDDEN_ID_CHARACTERS}]*$"
TASK_ID_RULE = (
    f"1 to {MAX_TASK_ID_LENGTH} characters and at most {MAX_TASK_ID_BYTES} bytes of UTF-8, "
    "without control characters or bidirectional formatting characters"
)
_forbidden_in_id = re.compile(f"[{FORBIDDEN_ID_CHARACTERS}]")
# The serialized task ({"id", "payload"}) travels as the SQS message body and is
# stored in the task item; DynamoDB's 400 KB item limit binds first, and the item
# also holds the attempt history, so a task stays well below it.
MAX_TASK_BYTES = 128 * 1024
# JSON nested deeper than this is refused: nothing a task needs, and serializers
# (pydantic's among them) give up a few hundred levels down.
MAX_PAYLOAD_DEPTH = 128
MAX_TYPE_NAME_LENGTH = 64
# SQS delays a message by 15 minutes at most; longer delays need a scheduler.
MAX_DELAY_SECONDS = 900
# `runAt` at publish: at most this far ahead (further than MAX_DELAY_SECONDS, a timer holds
# the task's message until it is due: chalicelib/tick/timers.py).
MAX_RUN_AT_DAYS = 365
RUN_AT_RULE = (
    "must be an RFC 3339 date-time with an offset (Z or +hh:mm), e.g. 2026-11-25T09:00:00+01:00,"
    f" at most {MAX_RUN_AT_DAYS} days ahead"
)
# The message attribute of an operator's retry: the task version its restart writes. A
# consumer that receives it before the restart has landed holds the message back.
RETRY_VERSION_ATTRIBUTE = "retryOfVersion"
# The type of a task that names none: the seeds' simulated work.
DEFAULT_TYPE = "simulate"


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
# The lastError of a task recorded from a poison message: it has no payload a handler can run.
POISON_ERROR_PREFIX = "poison message:"


class Outcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # an operator's cancel stopped it through its heartbeat


def task_id_problem(value: str) -> str | None:
    """What keeps `value` from being a task id, or None when it is one: the rule of a body's
    `id` and of a path's `{task_id}` alike."""
    if not 1 <= len(value) <= MAX_TASK_ID_LENGTH:
        return f"must have 1 to {MAX_TASK_ID_LENGTH} characters"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogate escapes)"
    if size > MAX_TASK_ID_BYTES:
        return f"must be at most {MAX_TASK_ID_BYTES} bytes in UTF-8 (this one is {size})"
    return _forbidden_character_problem(value)


def _forbidden_character_problem(value: str) -> str | None:
    found = _forbidden_in_id.search(value)
    if found:
        return (
            "must not contain control characters or bidirectional formatting characters "
            f"(U+{ord(found.group()):04X} at position {found.start()})"
        )
    return None


def _refusing(problem_of: Callable[[str], str | None]) -> Callable[[str], str]:
    """A pydantic after-validator raising the problem `problem_of` finds."""

    def validate(value: str) -> str:
        problem = problem_of(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return validate


TaskId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_TASK_ID_LENGTH),
    AfterValidator(_refusing(task_id_problem)),
    Field(json_schema_extra={"pattern": TASK_ID_PATTERN}),
]

# A flow key (`key` at publish) names whose turn a per-key cap or rate counts the task in
# (chalicelib/flow/keys.py); it is part of a flow item's key, so it is short.
MAX_KEY_BYTES = 128
KEY_RULE = f"1 to {MAX_KEY_BYTES} bytes of UTF-8, without control characters or bidirectional formatting characters"


def _text_key_problem(value: str, max_bytes: int, too_long: str) -> str | None:
    """What keeps `value` from being a key of at most `max_bytes` of UTF-8 shown like an id, or None;
    `too_long` words a wrong size, given it as `{size}`."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogate escapes)"
    if not 1 <= size <= max_bytes:
        return too_long.format(size=size)
    return _forbidden_character_problem(value)


def key_problem(value: str) -> str | None:
    """What keeps `value` from being a flow key, or None when it is one."""
    return _text_key_problem(value, MAX_KEY_BYTES, f"must be {KEY_RULE} (this one has {{size}} bytes)")


FlowKey = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=MAX_KEY_BYTES), AfterValidator(_refusing(key_problem))
]


# A unique key names the flow item `unique#<key>` (chalicelib/flow/unique.py); shown like an id.
MAX_UNIQUE_KEY_BYTES = 256
MAX_UNIQUE_SECONDS = 86_400
UNIQUE_UNTIL_TERMINAL = "terminal"
UNIQUE_KEY_RULE = (
    f"1 to {MAX_UNIQUE_KEY_BYTES} bytes of UTF-8, without control characters or bidirectional formatting characters"
)


def unique_key_problem(value: str) -> str | None:
    """What keeps `value` from being a unique key, or None when it is one."""
    return _text_key_problem(
        value, MAX_UNIQUE_KEY_BYTES, f"must be 1 to {MAX_UNIQUE_KEY_BYTES} bytes in UTF-8 (this one is {{size}})"
    )


UniqueKey = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_UNIQUE_KEY_BYTES),
    AfterValidator(_refusing(unique_key_problem)),
]


def _unique_key_schema(schema: dict[str, Any]) -> None:
    """No default shown, and the characters a key may not hold, as an id's."""
    schema.pop("default", None)
    schema["pattern"] = TASK_ID_PATTERN


def json_depth(value: Any) -> int:
    """How deeply a JSON value nests objects and arrays (a scalar is 0), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict):
            children = list(current.values())
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _not_too_deep(value: dict[str, Any]) -> dict[str, Any]:
    if json_depth(value) > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"must not nest objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep")
    return value


def _whole_number(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees); 5.5 and "5" stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _date_time_text(value: Any) -> Any:
    """A time comes as RFC 3339 text; pydantic's lax mode would also take a number of seconds."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with a zone, e.g. 2026-11-25T12:00:00Z")
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number), Field(strict=True)]

# RFC 3339's date-time: a date, `T` (or a space, which RFC 3339 allows), a time, and an offset.
_RFC_3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$")


def parse_moment(value: Any) -> datetime:
    """An RFC 3339 date-time with its offset; a time without one (naive) is refused, as is a number.

    Raises:
        ValueError: the value is not such a time; the message says why and gives RUN_AT_RULE.
    """
    if not isinstance(value, str) or (shape := _RFC_3339.match(value)) is None:
        raise ValueError(RUN_AT_RULE)
    if shape.group("offset") is None:
        raise ValueError(f"has no offset: a time without one is refused; {RUN_AT_RULE}")
    try:
        return datetime.fromisoformat(value.replace(" ", "T").replace("t", "T").replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"is not a date-time ({exc}); {RUN_AT_RULE}") from exc


def _moment_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema.pop("anyOf", None)
    schema.update(type="string", format="date-time")


Moment = Annotated[datetime, PlainValidator(parse_moment)]


# A payload is any JSON object; its task type's model checks the rest.
JsonObject = Annotated[dict[str, Any], AfterValidator(_not_too_deep)]
TaskTypeName = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TYPE_NAME_LENGTH)]
# A Literal rather than the enum: strict validation takes the JSON string, and its error names the values.
PriorityName = Literal["high", "default", "low"]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _flow_key_schema(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema["pattern"] = TASK_ID_PATTERN


def _expires_in_seconds(which: str) -> Any:
    """The `expiresInSeconds` field. Left out, the task never expires; it is not nullable: a default
    is not validated, so None stands for "left out", and an explicit null is refused like any other
    value that is not a whole number."""
    return Field(
        default=None,
        ge=1,
        le=MAX_EXPIRY_SECONDS,
        description=f"Seconds, 1 to {MAX_EXPIRY_SECONDS:,} (30 days), by which {which} must start; a task not"
        " started by then is never run and ends CANCELLED (`lastError` `expired before it started`). Leave it"
        " out for no expiry.",
        json_schema_extra=_no_default,
    )


# A completion callback (chalicelib/callbacks/): where taskproc POSTs the task's outcome. The model
# checks only the URL's shape; the stage's rules (https, allowlist, addresses) are checked at publish.
MAX_CALLBACK_URL_LENGTH = 2048
CALLBACK_TASK_SUFFIX = "/callback"


class CallbackIn(Model):
    """`callback` at publish: the URL told of the task's outcome once it is terminal."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_CALLBACK_URL_LENGTH)] = Field(
        description="An absolute http(s) URL without credentials; on deployed stages `https`, its host on the"
        " stage's `CALLBACK_ALLOWED_HOSTS`, resolving to a public address (docs/workflows.md)."
    )


# A task is called back once per end: each operator retry starts a run whose end has a delivery of its
# own. A retry adds at least two entries to a task's history (the retry and an attempt), which holds at
# most 200 (operations.MAX_HISTORY_ENTRIES), so no task ends more often than this.
MAX_CALLBACK_GENERATION = 200


def callback_task_id(task_id: str, generation: int = 1) -> str:
    """The id of the task that delivers the callback of `task_id`'s `generation`-th end: `<id>/callback` for
    the first, `<id>/callback/<n>` for the end after the (n-1)-th operator retry. Fixed by the end, so a
    repeat of one end never makes two deliveries."""
    if generation == 1:
        return task_id + CALLBACK_TASK_SUFFIX
    return f"{task_id}{CALLBACK_TASK_SUFFIX}/{generation}"


# Chains (chalicelib/chains.py): steps published one after another, each when the one before it
# COMPLETES, as the tasks `<id>/then/<n>` (n from 1), each given the result before it as `previous`.
MAX_CHAIN_STEPS = 10
CHAIN_STEP_INFIX = "/then/"
PREVIOUS_FIELD = "previous"


class ChainStepIn(Model):
    """One step of `then`: a task of `type` published with `payload` once the task before it completes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: TaskTypeName = Field(description="The registered task type that runs the step.")
    payload: JsonObject = Field(
        default_factory=dict,
        description="The step's data, checked against its type's payload model at publish; taskproc adds"
        f" `{PREVIOUS_FIELD}` (the result before it) where the model keeps it (docs/workflows.md, Chains).",
    )


class ChainPosition(Model):
    """Where a step task stands in its chain: the task that was published with the chain, and its step number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    root: TaskId
    step: WholeNumber = Field(ge=1, le=MAX_CHAIN_STEPS)


def chain_step_id(root: str, step: int) -> str:
    """The id of step `step` (from 1) of the chain published with task `root`: fixed, so a repeat never makes two."""
    return f"{root}{CHAIN_STEP_INFIX}{step}"


class TaskIn(Model):
    """The body of `POST /publish`, and of every message on the task queue."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: TaskId = Field(description=f"A unique id: {TASK_ID_RULE}.")
    type: TaskTypeName = Field(default=DEFAULT_TYPE, description="The registered task type that runs it.")
    payload: JsonObject = Field(description="The task's data, checked against its type's payload model.")
    delaySeconds: WholeNumber = Field(
        default=0, ge=0, le=MAX_DELAY_SECONDS, description="Seconds before the first attempt may start."
    )
    # Left out, None (not nullable: a default is not validated, as for expiresInSeconds).
    runAt: Moment = Field(
        default=None,
        description="When the first attempt may start: RFC 3339 with an offset (`Z` or `+hh:mm`; a time"
        f" without one is refused), at most {MAX_RUN_AT_DAYS} days ahead; a time past or now runs at once."
        " Instead of `delaySeconds` (giving both is refused). The task is stored at once, PENDING with"
        " `notBefore`, and can be read and cancelled until it starts (docs/architecture.md, Time).",
        json_schema_extra=_moment_schema,
    )
    expiresInSeconds: WholeNumber = _expires_in_seconds("the first attempt")
    key: FlowKey = Field(
        default=None,
        description=f"The flow key whose per-key caps and rates the task counts in ({KEY_RULE}); it wins"
        " over the key its type reads from the payload (`concurrency_key`). Leave it out for none.",
        json_schema_extra=_flow_key_schema,
    )
    callback: CallbackIn = Field(
        default=None,
        description="Where to POST the task's outcome, signed, once it is COMPLETED, FAILED or CANCELLED"
        " (docs/workflows.md); delivered by the task `<id>/callback`. Leave it out for none.",
        json_schema_extra=_no_default,
    )
    then: list[ChainStepIn] = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHAIN_STEPS,
        description=f"1 to {MAX_CHAIN_STEPS} steps run one after another once this task COMPLETES: step n is"
        " published as the task `<id>/then/<n>` when the one before it completes, its payload given"
        f" `{PREVIOUS_FIELD}`: that task's result. A FAILED or CANCELLED task ends the chain. The steps count"
        " toward the task's size (docs/workflows.md, Chains). Leave it out for none.",
        json_schema_extra=_no_default,
    )
    priority: PriorityName = Field(
        default=Priority.DEFAULT.value,
        description="The task's class: `high` never waits behind a backlog of `default` or `low` tasks, each"
        " class having a queue and a consumer of its own (docs/architecture.md, Priorities).",
    )
    # Left out, each is None (not nullable: a default is not validated, as for expiresInSeconds).
    uniqueKey: UniqueKey = Field(
        default=None,
        description=f"A key ({UNIQUE_KEY_RULE}) that admits one task at a time: while the task holding it is"
        " inside its window (`uniqueFor`) or not yet ended (`uniqueUntil`), a publish with the same key and"
        " another id answers `duplicate: true` with `existingId` and is not queued. Needs exactly one of"
        " `uniqueFor` or `uniqueUntil`.",
        json_schema_extra=_unique_key_schema,
    )
    uniqueFor: WholeNumber = Field(
        default=None,
        ge=1,
        le=MAX_UNIQUE_SECONDS,
        description=f"Seconds, 1 to {MAX_UNIQUE_SECONDS:,}, for which the `uniqueKey` admits no other task,"
        " counted from this publish; the window ends then whatever the task's status. Only with `uniqueKey`.",
        json_schema_extra=_no_default,
    )
    uniqueUntil: Literal["terminal"] = Field(
        default=None,
        description="`terminal`: the `uniqueKey` admits no other task until this one is COMPLETED, FAILED or"
        " CANCELLED. Only with `uniqueKey`, instead of `uniqueFor`.",
        json_schema_extra=_no_default,
    )
    tags: Tags = Field(
        default_factory=list,
        description=f"Up to {MAX_TAGS} labels, each {TAG_RULE}, each once: shown in the task's view and"
        " summaries, and what `GET /tasks?tag=` finds it by.",
    )

    @model_validator(mode="after")
    def _one_start_time(self) -> Self:
        """`runAt` and `delaySeconds` say the same thing two ways: giving both is refused, naming both."""
        if self.runAt is not None and "delaySeconds" in self.model_fields_set:
            message = "runAt and delaySeconds exclude each other: give one"
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("one_start_time", message), loc=(name,), input=getattr(self, name)
                    )
                    for name in ("runAt", "delaySeconds")
                ],
            )
        return self

    @model_validator(mode="after")
    def _unique_fields_go_together(self) -> Self:
        """`uniqueKey` takes exactly one of `uniqueFor` and `uniqueUntil`; neither comes without it."""
        problems: list[tuple[str, str]] = []
        given = [name for name in ("uniqueFor", "uniqueUntil") if getattr(self, name) is not None]
        if self.uniqueKey is None:
            problems += [(name, "may only be given with uniqueKey") for name in given]
        elif not given:
            problems.append(("uniqueKey", 'needs exactly one of uniqueFor (seconds) or uniqueUntil ("terminal")'))
        elif len(given) == 2:
            problems += [(name, "uniqueFor and uniqueUntil exclude each other: give one") for name in given]
        if problems:
            # Raised as a ValidationError so that each problem names its field, as a field's own rule does.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("unique_fields", message), loc=(name,), input=getattr(self, name)
                    )
                    for name, message in problems
                ],
            )
        return self


@dataclass(frozen=True)
class WorkflowRef:
    """The workflow a task belongs to (chalicelib/workflows/): its id, and the task's place in it.

    `child` is the child's position, from 1 in the order given; 0 is the workflow's `then` task.
    Set by taskproc only: it travels in the message and on the item, never in a client's body.
    """

    id: str
    child: int

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "child": self.child}


class Task(Model):
    """A validated task: the client's id, its type and its payload exactly as sent."""

    model_config = ConfigDict(frozen=True)

    id: str
    payload: dict[str, Any]
    type: str = DEFAULT_TYPE
    # Not in the message body: the queue a message sits in is its class (chalicelib/tasks/priority.py).
    priority: Priority = Priority.DEFAULT
    key: str | None = None  # the explicit flow key, if the publish gave one
    callback: str | None = None  # the callback URL, if the publish gave one
    tags: tuple[str, ...] = ()
    then: tuple[ChainStepIn, ...] = ()  # the chain's steps still to come after this task
    chain: ChainPosition | None = None  # set on a chain's step task: its chain and step number
    workflow: WorkflowRef | None = None  # a workflow's child or `then` (chalicelib/workflows/)

    def message_body(self) -> str:
        """The task as it travels on the queue: the same document `POST /publish` takes.

        SQS refuses a message holding U+FFFE or U+FFFF (outside XML's characters); JSON
        escapes them, as it escapes the control characters SQS refuses.
        """
        body: dict[str, Any] = {"id": self.id, "type": self.type, "payload": self.payload}
        if self.key is not None:
            body["key"] = self.key
        if self.callback is not None:
            body["callback"] = {"url": self.callback}
        if self.tags:  # a consumer that stores the task from its message keeps them
            body["tags"] = list(self.tags)
        if self.then:  # and its chain
            body["then"] = [step.model_dump() for step in self.then]
        if self.chain is not None:
            body["chain"] = self.chain.model_dump()
        if self.workflow is not None:
            body["workflow"] = self.workflow.document()
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return text.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


class Action(StrEnum):
    """What an operator did to a task."""

    RETRY = "retry"
    CANCEL = "cancel"
    CANCEL_REQUESTED = "cancel_requested"


class FieldError(Model):
    field: str
    message: str


class ErrorDetail(Model):
    code: str
    message: str
    details: list[FieldError] = Field(default_factory=list)


class ErrorResponse(Model):
    """Every error answer has this shape."""

    error: ErrorDetail


class BulkRetryIn(Model):
    """The body of `POST /retries`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["FAILED", "CANCELLED"] = Field(description="Which tasks to retry.")
    limit: WholeNumber = Field(default=100, ge=1, le=1000, description="At most this many tasks.")
    dryRun: bool = Field(default=False, description="Say what would be retried and retry nothing.")
    type: TaskTypeName | None = Field(default=None, description="Only tasks of this type.")
    updatedSince: Annotated[AwareDatetime, BeforeValidator(_date_time_text)] | None = Field(
        default=None,
        strict=False,
        description="Only tasks last updated at or after this time (RFC 3339 with a zone, e.g. 2026-11-25T12:00:00Z).",
    )


class RetryIn(Model):
    """The optional body of `POST /tasks/{id}/retry`; none, or `{}`, retries the task without an expiry."""

    model_config = ConfigDict(extra="forbid", strict=True)

    expiresInSeconds: WholeNumber = _expires_in_seconds("the retried task's first attempt")


# A batch publish (chalicelib/publish/answers.py, `PublishBatchIn`).
MAX_BATCH_TASKS = 100
# The whole `POST /publish/batch` body. API Gateway takes bodies up to 10 MB, Lambda a
# synchronous invocation payload of 6 MB (6,291,456 bytes); the body travels inside the
# Lambda event as a JSON string, where every quote and backslash it holds is escaped again,
# so in the worst case it doubles. 3,000,000 bytes doubled, plus the event's headers and
# context, stays below Lambda's limit.
MAX_BATCH_BYTES = 3_000_000
