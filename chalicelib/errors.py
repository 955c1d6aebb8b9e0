"""Domain errors. Each carries the HTTP status and code it maps to at the API edge."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.models import ErrorDetail, FieldError


@dataclass(frozen=True)
class FieldProblem:
    """One rule one field broke."""

    field: str
    message: str


def field_name(loc: tuple[str | int, ...]) -> str:
    """A field's path as errors name it: `payload.simulation.failureChance`, `tags[3]` (pydantic's `loc`)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


class TaskprocError(Exception):
    """Base of every error this package raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def error_detail(error: TaskprocError) -> ErrorDetail:
    """The error's body as the API shapes it: code, message and one detail per broken rule."""
    details = [FieldError(field=problem.field, message=problem.message) for problem in error.details]
    return ErrorDetail(code=error.code, message=error.message, details=details)


class ValidationFailed(TaskprocError):
    """The request body broke one or more rules."""

    status_code = 400
    code = "validation_error"


class MalformedJson(TaskprocError):
    """The request body is not a JSON document."""

    status_code = 400
    code = "malformed_json"


class UnsupportedMediaType(TaskprocError):
    """The request body is not declared as JSON."""

    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(TaskprocError):
    """The serialized task is larger than a task may be."""

    status_code = 413
    code = "payload_too_large"


class TaskNotFound(TaskprocError):
    """No task has this id."""

    status_code = 404
    code = "not_found"


class TypeNotFound(TaskprocError):
    """No task type of this deployment has this name."""

    status_code = 404
    code = "not_found"


class Conflict(TaskprocError):
    """The task is not in a status the action applies to; the message says why."""

    status_code = 409
    code = "conflict"


class ServiceUnavailable(TaskprocError):
    """A dependency (table or queue) did not answer; the client may try again."""

    status_code = 503
    code = "service_unavailable"


class SettingsError(TaskprocError):
    """An environment variable is missing or invalid."""

    status_code = 503
    code = "misconfigured"


class StoreError(TaskprocError):
    """The task table failed in a way retries did not cure."""

    status_code = 503
    code = "service_unavailable"


class LeaseLost(TaskprocError):
    """The lease this consumer held was taken over before it could record its outcome."""


class CancelRequested(TaskprocError):
    """A heartbeat found that an operator asked to cancel the task its attempt runs."""


class StaleRecord(TaskprocError):
    """The task changed between the read and the conditional write that relied on it."""


class QueueError(TaskprocError):
    """The queue failed in a way retries did not cure."""

    status_code = 503
    code = "service_unavailable"
