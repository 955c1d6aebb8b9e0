"""The publish routes' answers, and the batch's body: what a client is told when it publishes.

Only the API builds these, so they live apart from the domain model in chalicelib/models.py, which every
function imports: a consumer's cold start does not define them (tests/unit/test_cold_start.py).
"""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.models import MAX_BATCH_TASKS, ErrorDetail, Status


def _present_only_as_string(schema: dict[str, Any]) -> None:
    """A field left out when None: where it is present, it is a string."""
    schema.pop("default", None)
    schema.pop("anyOf", None)
    schema["type"] = "string"


class PublishAccepted(Model):
    """The answer to `POST /publish`."""

    id: str
    status: Status | None = Field(
        description="Where the task stood when the answer was made: usually PENDING, but a consumer that received"
        " its message first may have started it already; null for a publish held back by its `uniqueKey`."
    )
    duplicate: bool = Field(
        description="True when a task with this id already existed (it is not run again), or when another"
        " task holds the `uniqueKey` (`existingId` names it; this one is not stored or queued)."
    )
    existingId: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Present only when another task holds the `uniqueKey`: that task's id. `status` is then"
        " null (this id was not stored) and `Location` names the existing task.",
        json_schema_extra=_present_only_as_string,
    )


class TaskCreated(Model):
    """The answer to `POST /tasks`."""

    taskId: str
    id: str
    status: Status


class Health(Model):
    status: Literal["ok", "unavailable"]
    reason: str | None = Field(default=None, description="Which dependency failed, in a fixed phrase.")
    correlationId: str | None = Field(default=None, description="Finds the log line that holds the error.")


class PublishBatchIn(Model):
    """The body of `POST /publish/batch`; each entry is checked on its own, as `POST /publish` checks its body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tasks: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH_TASKS,
        description=f"1 to {MAX_BATCH_TASKS} publish bodies; a refused one does not stop the others.",
    )


class BatchEntryRefused(Model):
    """A batch entry that was not accepted, with the error `POST /publish` would have answered."""

    id: str | None = Field(description="The entry's id, or null when it has no usable one.")
    error: ErrorDetail


class PublishBatchAnswer(Model):
    """The answer to `POST /publish/batch`: one result per entry, in request order."""

    results: list[PublishAccepted | BatchEntryRefused]
