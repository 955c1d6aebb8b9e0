"""`POST /workflows`: the body, its checks, and the limits that keep the workflow item under 400 KB.

The workflow item (store.py) holds every child's id, once, in the children's order; `then`'s payload;
and the count, a map from each child's position to the status it ended in. DynamoDB counts an
item's size as its attribute names and values in UTF-8, plus a byte for each element of a list or
map and three for the list or map itself. So, for the largest workflow:

    children    1,000 ids x (1 + at most 256 bytes)         257,003 bytes
    ended       1,000 x ("1000" + 1 + {"s": 9, "v": 3} ~ 19)  24,003
    then        payload at most 64 KiB                         65,536
    the rest    callback URL (2,048), names, times           ~  3,100
                                                          ~ 349,600 of 409,600

Ids count in bytes, not characters: 1,000 ids of 256 ASCII characters fit, 1,000 of 256 three-byte
characters (768 bytes each) would not. The rule refused with a 400 is therefore on the ids' total
(MAX_CHILD_ID_BYTES), which admits any mix that fits, whatever the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from chalicelib.deferred import Model
from chalicelib.models import (
    DEFAULT_TYPE,
    TASK_ID_RULE,
    CallbackIn,
    JsonObject,
    Task,
    TaskId,
    TaskTypeName,
)

MAX_CHILDREN = 1_000
# The children's ids together, in bytes of UTF-8: 1,000 ids of 256 ASCII characters.
MAX_CHILD_ID_BYTES = 256_000
MAX_THEN_PAYLOAD_BYTES = 64 * 1024
CHILD_IDS_RULE = (
    f"the children's ids may total at most {MAX_CHILD_ID_BYTES:,} bytes of UTF-8 (1,000 ids of 256 ASCII"
    " characters), so that the workflow item stays under DynamoDB's 400 KB"
)
THEN_SUFFIX = "/then"


def then_task_id(workflow_id: str) -> str:
    """The id of the workflow's `then` task: fixed, so a repeated fan-in never publishes two."""
    return workflow_id + THEN_SUFFIX


def default_child_id(workflow_id: str, position: int) -> str:
    """The id of a child given none: `<workflow id>/<n>`, n counting from 1."""
    return f"{workflow_id}/{position}"


def _id_without_default(schema: dict[str, Any]) -> None:
    """Left out, the id is made (`<workflow id>/<n>`); where it is given, it is a string."""
    schema["properties"]["id"].pop("default", None)


class ChildIn(Model):
    """One child: an ordinary task, run, listed, retried and cancelled like any."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_id_without_default)

    id: TaskId = Field(default=None, description="Its task id; left out, `<workflow id>/<n>`, n from 1.")
    type: TaskTypeName = Field(default=DEFAULT_TYPE, description="The registered task type that runs it.")
    payload: JsonObject = Field(description="The task's data, checked against its type's payload model.")


class ThenIn(Model):
    """The task that runs once every child has ended (as `onChildFailure` allows)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: TaskTypeName = Field(description="Its registered task type; its payload model declares `children`.")
    payload: JsonObject = Field(
        default_factory=dict,
        description=f"Fields added to `children` in its payload (at most {MAX_THEN_PAYLOAD_BYTES:,} bytes).",
    )


class WorkflowIn(Model):
    """The body of `POST /workflows`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: TaskId = Field(description=f"The workflow's id: {TASK_ID_RULE}, leaving room for `/callback`.")
    children: Annotated[list[ChildIn], Field(min_length=1, max_length=MAX_CHILDREN)] = Field(
        description=f"1 to {MAX_CHILDREN:,} children, in the order `then` sees them. {CHILD_IDS_RULE}."
    )
    then: ThenIn
    onChildFailure: Literal["fail", "continue"] = Field(
        default="fail",
        description="`fail`: a FAILED child fails the workflow, `then` does not run and the unfinished"
        " children are cancelled. `continue`: `then` runs once every child has ended, whatever its status.",
    )
    callback: CallbackIn = Field(
        default=None,
        description="Where to POST the workflow's outcome, signed, once it is COMPLETED, FAILED or CANCELLED;"
        " delivered by the task `<id>/callback`.",
    )


@dataclass(frozen=True)
class Workflow:
    """A checked workflow: its children as tasks, in order, and what follows them."""

    id: str
    children: tuple[Task, ...]
    then_type: str
    then_payload: dict[str, Any]
    on_child_failure: str
    callback: str | None


class ThenView(Model):
    id: str = Field(description="`<workflow id>/then`.")
    status: str = Field(
        description="The `then` task's status once published; `WAITING` before, `NOT_RUN` when the workflow"
        " ended without it (FAILED or CANCELLED by `onChildFailure: fail`)."
    )


class WorkflowView(Model):
    """The answer of `POST /workflows` and `GET /workflows/{id}`."""

    id: str
    status: str = Field(description="RUNNING, COMPLETED, FAILED or CANCELLED (docs/workflows.md, Workflows).")
    counts: dict[str, int] = Field(description='How many children are in each task status, e.g. `{"COMPLETED": 3}`.')
    children: list[str] = Field(description="The children's task ids, in the order given.")
    then: ThenView
