"""The client's errors: one flat family, each built from the API's error shape.

The API answers every refusal as `{"error": {"code", "message", "details": [{"field", "message"}]}}`;
API Gateway's own refusals (a missing key, a bad signature) as `{"message": "..."}`. Each
HTTP status maps to one class here; a refused batch entry, which carries only the code, maps
by its code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskproc_client.models import TaskView


class TaskprocError(Exception):
    """Base of every error the client raises: `.status` (0 when no answer came), `.code`, `.message`,
    `.errors` (one `{"field", "message"}` per broken rule) and `.body` (the answer as sent)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "error",
        errors: list[dict[str, str]] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors = errors or []
        self.body = body

    def __str__(self) -> str:
        """The message and the fields it names, in one line."""
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in self.errors if e.get("field"))
        return f"{self.message} ({fields})" if fields else self.message


class ValidationFailed(TaskprocError):
    """400: the request broke one or more rules; `.errors` names each field and its rule."""


class Unauthorized(TaskprocError):
    """401 or 403: no or a wrong API key, an unsigned or badly signed operator call, or no permission."""


class NotFound(TaskprocError):
    """404: no task, type, schedule or route of that name."""


class Conflict(TaskprocError):
    """409: the task or schedule is not in a state the action applies to; the message says why."""


class PayloadTooLarge(TaskprocError):
    """413: the task, or the whole batch, is larger than the API takes."""


class Throttled(TaskprocError):
    """429: the API (API Gateway's throttle or usage plan) refused for rate, after the client's retries."""


class Unavailable(TaskprocError):
    """5xx, or the API could not be reached: a dependency failed; the call may be tried again later."""


class Unreachable(Unavailable):
    """No answer at all: refused connection, DNS failure, timeout, broken connection."""


class NoCredentials(TaskprocError):
    """An operator call must be signed and no AWS credentials were found (or a named profile is broken)."""


class NoRegion(TaskprocError):
    """Requests must be signed but neither the URL nor the AWS configuration names a region."""


class TaskFailed(TaskprocError):
    """`wait` found the task FAILED: `.view` is its view, `.last_error` its last attempt's error."""

    def __init__(self, view: TaskView) -> None:
        super().__init__(f"task {view.id!r} FAILED: {view.last_error}", code="task_failed")
        self.view = view
        self.last_error = view.last_error


class TaskCancelled(TaskprocError):
    """`wait` found the task CANCELLED (by an operator, or expired unrun): `.view`, `.last_error`."""

    def __init__(self, view: TaskView) -> None:
        super().__init__(f"task {view.id!r} CANCELLED: {view.last_error}", code="task_cancelled")
        self.view = view
        self.last_error = view.last_error


class WaitTimeout(TaskprocError, TimeoutError):
    """`wait` gave up: the task was not terminal within the timeout; `.view` is the last view read."""

    def __init__(self, view: TaskView | None, timeout: float) -> None:
        status = view.status if view is not None else "unknown"
        task = repr(view.id) if view is not None else "the task"
        super().__init__(f"{task} is still {status} after {timeout:g} s", code="wait_timeout")
        self.view = view


_BY_STATUS: dict[int, type[TaskprocError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: ValidationFailed,
    429: Throttled,
}
# A batch entry's refusal has a code and no status of its own.
_BY_CODE: dict[str, type[TaskprocError]] = {
    "validation_error": ValidationFailed,
    "malformed_json": ValidationFailed,
    "payload_too_large": PayloadTooLarge,
    "not_found": NotFound,
    "conflict": Conflict,
    "service_unavailable": Unavailable,
    "misconfigured": Unavailable,
}


def _details(error: dict[str, Any]) -> list[dict[str, str]]:
    found = error.get("details")
    if not isinstance(found, list):
        return []
    return [
        {"field": str(d.get("field")), "message": str(d.get("message"))}
        for d in found
        if isinstance(d, dict) and "field" in d
    ]


def error_from_answer(status: int, body: Any) -> TaskprocError:
    """The error for an answer of the API that is not a 2xx."""
    kind = _BY_STATUS.get(status) or (Unavailable if status >= 500 else TaskprocError)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("code") or "error")
        return kind(message, status=status, code=str(error.get("code") or "error"), errors=_details(error), body=body)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return kind(body["message"], status=status, code="gateway", body=body)  # API Gateway's own refusals
    text = str(body)[:300] if body is not None else "no body"
    return kind(f"HTTP {status}: {text}", status=status, code="http_error", body=body)


def error_from_entry(error: dict[str, Any]) -> TaskprocError:
    """The error of a refused batch entry (`{"code", "message", "details"}`)."""
    code = str(error.get("code") or "error")
    kind = _BY_CODE.get(code, TaskprocError)
    return kind(str(error.get("message") or code), code=code, errors=_details(error), body={"error": error})
