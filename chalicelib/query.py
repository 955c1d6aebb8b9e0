"""Query strings, parsed by pydantic models like the bodies are.

A query parameter is text whatever it means, so a model field of a number type
would let pydantic's lax mode read `5.0`, ` 5` or `+5` as 5; the types here take
exactly the spelling the documentation gives (ASCII digits for a number) and
pydantic does the conversion and the range. A parameter named twice is refused
rather than one of its values picked, unless the model declares it a list (`tag`,
each value one more tag); an unknown one is refused by name: a misspelt `limt=5`
answered with a default page would look like a served request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar, get_origin

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from chalicelib.deferred import Model
from chalicelib.errors import FieldProblem, ValidationFailed, field_name
from chalicelib.models import Status, TaskTypeName
from chalicelib.operate.listing import FILTERED_READ_BUDGET
from chalicelib.publish.tags import MAX_TAGS, TAG_RULE, Tags
from chalicelib.publish.wait import MAX_WAIT_SECONDS
from chalicelib.tasks.index import LISTED_STATUSES, SHARDS

DEFAULT_PAGE = 50
MAX_PAGE = 100
# More digits than any limit needs: a longer number is refused before it is converted.
MAX_NUMBER_DIGITS = 9
_ASCII_DIGITS = re.compile(f"[0-9]{{1,{MAX_NUMBER_DIGITS}}}")


def _ascii_whole_number(value: Any) -> Any:
    """Digits 0-9 only: superscript two or Arabic-Indic three are digits to Unicode (and to
    `str.isdigit`) but not to this API, and a number longer than any limit is refused unread."""
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value) is None:
        raise PydanticCustomError(
            "whole_number_text",
            "must be a whole number written with the digits 0-9 (at most {digits} of them)",
            {"digits": MAX_NUMBER_DIGITS},
        )
    return value


# Why the statuses of the success path are not listed (docs/operations.md measures it).
UNLISTED_REASON = (
    "is not listed (the listed statuses are {allowed}): keeping PENDING and PROCESSING tasks in the index"
    " would write it at each step of every task's success path (about 8 WRU more per task); GET /stats"
    " counts them, and GET /stuck lists the ones stuck past their dispatch bound or their lease"
)


def _listed(value: Any) -> Any:
    listed = [status.value for status in LISTED_STATUSES]
    if value in (Status.PENDING.value, Status.PROCESSING.value):
        raise PydanticCustomError(
            "unlisted_status", "{status} " + UNLISTED_REASON, {"status": value, "allowed": ", ".join(listed)}
        )
    if value not in listed:
        raise PydanticCustomError(
            "listed_status",
            "must be one of {allowed} (other statuses are counted in the metrics)",
            {"allowed": ", ".join(listed)},
        )
    return value


QueryNumber = Annotated[int, BeforeValidator(_ascii_whole_number)]
ListedStatus = Annotated[
    Status,
    BeforeValidator(_listed),
    WithJsonSchema({"type": "string", "enum": [status.value for status in LISTED_STATUSES]}),
]


class QueryModel(Model):
    """The parameters one route takes; any other is refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskListQuery(QueryModel):
    """The query of `GET /tasks`."""

    status: ListedStatus = Field(description="The status to list.")
    limit: QueryNumber = Field(
        default=DEFAULT_PAGE,
        ge=1,
        le=MAX_PAGE,
        description=f"Tasks per page, 1 to {MAX_PAGE} (default {DEFAULT_PAGE}).",
    )
    cursor: str | None = Field(
        default=None, description="The previous page's nextCursor, unchanged; empty for the first page."
    )
    type: TaskTypeName | None = Field(default=None, description="Only tasks of this type.")
    tag: Tags = Field(
        default_factory=list,
        description=f"Only tasks carrying this tag ({TAG_RULE}); given again (up to {MAX_TAGS} times), only"
        f" tasks carrying every tag given. A filtered page reads at most {FILTERED_READ_BUDGET} index entries"
        f" per shard ({FILTERED_READ_BUDGET * SHARDS:,} in all) and may hold fewer than `limit` tasks, or none,"
        " with a `nextCursor` to go on.",
    )


class TaskReadQuery(QueryModel):
    """The query of `GET /tasks/{id}`."""

    waitSeconds: QueryNumber = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=f"Seconds, 0 to {MAX_WAIT_SECONDS}, to wait for the task to end: the answer comes as soon as"
        " it is COMPLETED, FAILED or CANCELLED (at once if it already is), or after this long with where it"
        " stands then. 0 (the default) answers at once.",
    )


Query = TypeVar("Query", bound=QueryModel)


def parse_query(model: type[Query], params: Mapping[str, Sequence[str]]) -> Query:
    """The query `params` (each name with every value it was given) as `model`.

    Raises:
        ValidationFailed: a parameter is unknown, repeated or breaks its rule; one detail per parameter.
    """
    lists = {name for name, field in model.model_fields.items() if get_origin(field.annotation) is list}
    problems = [
        FieldProblem(name, "must be given at most once")
        for name, values in params.items()
        if len(values) > 1 and name not in lists
    ]
    try:
        parsed = model.model_validate(
            {name: values if name in lists else values[-1] for name, values in params.items() if values}
        )
    except ValidationError as exc:
        problems += [_problem(error, model) for error in exc.errors(include_url=False)]
    else:
        if not problems:
            return parsed
    first = problems[0]
    raise ValidationFailed(f"{first.field}: {first.message}", problems)


def _problem(error: Any, model: type[QueryModel]) -> FieldProblem:
    name = field_name(error["loc"]) or "query"
    if error["type"] == "extra_forbidden":
        known = ", ".join(model.model_fields)
        return FieldProblem(name, f"is not a parameter of this route (it takes {known})")
    return FieldProblem(name, error["msg"])
