"""The one place where domain errors and models become HTTP responses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from chalice import Response
from pydantic import BaseModel

from chalicelib.errors import TaskprocError, error_detail
from chalicelib.models import ErrorResponse

logger = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=model.model_dump_json(),
        status_code=status_code,
        headers={**JSON_HEADERS, **(headers or {})},
    )


def error_response(error: TaskprocError) -> Response:
    return json_response(ErrorResponse(error=error_detail(error)), error.status_code)


def json_errors(view: Callable[..., Response]) -> Callable[..., Response]:
    """Answer domain errors with their status and every other failure with a JSON 500."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except TaskprocError as error:
            return error_response(error)
        except Exception:
            logger.exception("unhandled error in %s", view.__name__)
            return error_response(TaskprocError("an internal error occurred"))

    return wrapper
