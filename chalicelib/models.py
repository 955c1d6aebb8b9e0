"""The domain model and the API's bodies. Imports no infrastructure."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_TASK_ID_LENGTH = 256
# The serialized task ({"id", "payload"}) travels as the SQS message body and is
# stored in the task item; DynamoDB's 400 KB item limit binds first, and the item
# also holds the attempt history, so a task stays well below it.
MAX_TASK_BYTES = 128 * 1024
# JSON nested deeper than this is refused: nothing a task needs, and serializers
# (pydantic's among them) give up a few hundred levels down.
MAX_PAYLOAD_DEPTH = 128


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED})


class Outcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode (no lone surrogate escapes)") from exc
    return value


TaskId = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_TASK_ID_LENGTH),
    AfterValidator(_encodable),
]
ExecutionTime = Annotated[float, Field(strict=True, ge=0, le=1000, allow_inf_nan=False)]
FailureChance = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]


class Simulation(BaseModel):
    """How the simulated work behaves for one task."""

    model_config = ConfigDict(extra="forbid")

    executionTime: ExecutionTime | None = Field(
        default=None, description="Simulated execution time in milliseconds, 0 to 1000."
    )
    failureChance: FailureChance | None = Field(default=None, description="Probability that an attempt fails, 0 to 1.")


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


class TaskPayload(BaseModel):
    """Task-specific data, passed through as given; only `simulation` has rules."""

    model_config = ConfigDict(extra="allow", strict=True)

    simulation: Simulation | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, value: Any) -> Any:
        if isinstance(value, dict) and json_depth(value) > MAX_PAYLOAD_DEPTH:
            raise ValueError(f"must not nest objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep")
        return value


class TaskIn(BaseModel):
    """The body of `POST /publish`, and of every message on the task queue."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: TaskId = Field(description=f"A unique, non-empty id of at most {MAX_TASK_ID_LENGTH} characters.")
    payload: TaskPayload


class Task(BaseModel):
    """A validated task: the client's id and its payload exactly as sent."""

    model_config = ConfigDict(frozen=True)

    id: str
    payload: dict[str, Any]

    @property
    def simulation(self) -> Simulation:
        return Simulation.model_validate(self.payload.get("simulation") or {})

    def message_body(self) -> str:
        """The task as it travels on the queue: the same document `POST /publish` takes."""
        return json.dumps({"id": self.id, "payload": self.payload}, ensure_ascii=False, separators=(",", ":"))


class PublishAccepted(BaseModel):
    """The answer to `POST /publish`."""

    id: str
    status: Status
    duplicate: bool = Field(description="True when a task with this id already existed; it is not run again.")


class TaskCreated(BaseModel):
    """The answer to `POST /tasks`."""

    taskId: str
    id: str
    status: Status


class AttemptView(BaseModel):
    attempt: int = Field(ge=1)
    startedAt: str
    finishedAt: str | None
    outcome: Outcome
    error: str | None


class TaskView(BaseModel):
    """Where a task stands: the answer to `GET /tasks/{id}`."""

    id: str
    status: Status
    attempts: int = Field(ge=0, description="Attempts started so far.")
    maxAttempts: int = Field(ge=1)
    payload: dict[str, Any]
    createdAt: str
    updatedAt: str
    finishedAt: str | None = Field(description="When the task reached COMPLETED or FAILED.")
    nextAttemptAt: str | None = Field(description="When a RETRYING task's next attempt is due.")
    lastError: str | None
    history: list[AttemptView]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[FieldError] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    reason: str | None = None
