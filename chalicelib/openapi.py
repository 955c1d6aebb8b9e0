"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.chains import CHAIN_ID_ROOM, STEP_ID_PATTERN
from chalicelib.chains import openapi_schemas as chain_step_schemas
from chalicelib.handlers import REGISTRY
from chalicelib.handlers.simulate import SimulatePayload
from chalicelib.models import (
    DEFAULT_TYPE,
    KEY_RULE,
    MAX_BATCH_BYTES,
    MAX_BATCH_TASKS,
    MAX_CALLBACK_URL_LENGTH,
    MAX_KEY_BYTES,
    MAX_TASK_BYTES,
    MAX_TASK_ID_LENGTH,
    TASK_ID_PATTERN,
    TASK_ID_RULE,
    BulkRetryIn,
    ErrorResponse,
    RetryIn,
    TaskIn,
)
from chalicelib.operate.stuck import StuckQuery
from chalicelib.operate.views import BulkRetryResult, Stats, StuckPage, TaskPage, TypeChange, TypeDetail, TypeList
from chalicelib.publish.answers import (
    Health,
    PublishAccepted,
    PublishBatchAnswer,
    PublishBatchIn,
    TaskCreated,
)
from chalicelib.publish.tags import MAX_TAG_LENGTH, MAX_TAGS, TAG_PATTERN, TAG_RULE
from chalicelib.publish.wait import DEFAULT_SCHEDULE, MAX_WAIT_SECONDS
from chalicelib.query import QueryModel, TaskListQuery, TaskReadQuery
from chalicelib.registry import Registry
from chalicelib.schedules.definition import MAX_SCHEDULE_ID_LENGTH, SCHEDULE_ID_RULE, ScheduleDefinition
from chalicelib.schedules.views import (
    BackfillAnswer,
    BackfillIn,
    ScheduleDeleted,
    ScheduleListQuery,
    SchedulePage,
    ScheduleView,
)
from chalicelib.tasks.view import TaskView
from chalicelib.workflows.definition import MAX_CHILDREN, WorkflowIn, WorkflowView

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    return {"$ref": REF.format(model=model if isinstance(model, str) else model.__name__)}


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


# TaskIn's own check of its unique fields (models.py), in JSON Schema: `uniqueFor` and `uniqueUntil`
# only with `uniqueKey`, and a `uniqueKey` with exactly one of them.
UNIQUE_FIELDS_GO_TOGETHER: dict[str, Any] = {
    "dependentRequired": {"uniqueFor": ["uniqueKey"], "uniqueUntil": ["uniqueKey"]},
    "dependentSchemas": {
        "uniqueKey": {"oneOf": [{"required": ["uniqueFor"]}, {"required": ["uniqueUntil"]}]},
    },
}


# TaskIn's check that `runAt` and `delaySeconds` exclude each other (models.py), in JSON Schema. How
# far ahead a `runAt` may be (MAX_RUN_AT_DAYS) depends on the time of the request: the field says it.
ONE_START_TIME: dict[str, Any] = {"runAt": {"not": {"required": ["delaySeconds"]}}}


# With `then`, an id leaves room for its tenth step's suffix (chalicelib/chains.py, CHAIN_ID_ROOM).
CHAIN_ID: dict[str, Any] = {"then": {"properties": {"id": {"maxLength": MAX_TASK_ID_LENGTH - CHAIN_ID_ROOM}}}}
# ... and no client's id is a chain step's.
NOT_A_STEP_ID: dict[str, Any] = {"required": ["id"], "properties": {"id": {"pattern": STEP_ID_PATTERN}}}


def _task_type_schemas(registry: Registry, schemas: dict[str, Any]) -> dict[str, Any]:
    """One publish body per registered type (its `type` a constant, its payload the type's model), and their union.

    A body without `type` is a `simulate` task, so only that variant leaves `type` out of `required`.
    """
    task_in = schemas.pop("TaskIn")
    names = registry.names()
    added: dict[str, Any] = {
        "TaskType": {"type": "string", "enum": names, "description": "The registered task types."},
    }
    variants = []
    # The callback type is taskproc's own: publishing it is refused (chalicelib/publish/api.py, check_callback).
    for name in (name for name in names if name != CALLBACK_TYPE):
        task_type = registry.get(name)
        assert task_type is not None
        payload = _ref(task_type.payload) if task_type.payload else {"type": "object"}
        variant = f"Publish{_pascal(name)}"
        properties = {
            **task_in["properties"],
            "type": {"const": name, "description": task_in["properties"]["type"]["description"]},
            "payload": payload,
        }
        required = ["id", "payload"] if name == DEFAULT_TYPE else ["id", "type", "payload"]
        added[variant] = {
            "type": "object",
            "title": variant,
            "properties": properties,
            "required": required,
            "additionalProperties": False,
            **UNIQUE_FIELDS_GO_TOGETHER,
            "dependentSchemas": {**UNIQUE_FIELDS_GO_TOGETHER["dependentSchemas"], **ONE_START_TIME, **CHAIN_ID},
            "not": NOT_A_STEP_ID,
        }
        variants.append(_ref(variant))
    added["TaskIn"] = {"title": "TaskIn", "description": task_in.get("description", ""), "oneOf": variants}
    return added


def _json(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "Malformed JSON or a rule broken; `details` names each field and rule.",
        404: "No task has this id.",
        409: "The task is not in a status the action applies to; the message says why.",
        413: f"The body or the serialized task is larger than {MAX_TASK_BYTES} bytes.",
        415: "The body is not declared as application/json.",
        500: "An internal error.",
        503: "The table or the queue did not answer; nothing was accepted.",
    }
    return {str(status): _json(ErrorResponse, meaning[status]) for status in statuses}


def _body(model: type[BaseModel] | str, description: str, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }


TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "description": f"The task id, percent-encoded ({TASK_ID_RULE}).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_ID_LENGTH, "pattern": TASK_ID_PATTERN},
}
OPERATOR = "On AWS: IAM authorization (SigV4), for principals granted the stage's operator policy."
TYPE = {
    "name": "type",
    "in": "path",
    "required": True,
    "description": "A registered task type's name.",
    "schema": _ref("TaskType"),
}
UNKNOWN_TYPE = _json(ErrorResponse, "No task type has this name; `details` names `type` and lists the registered ones.")
PAUSE_DESCRIPTION = (
    "Consumers read the pauses at most every 5 seconds, so a pause takes effect by the entry's `effectiveBy`:"
    " attempts started before then finish, later ones are held back without spending an attempt, and publishing"
    " still accepts the type's tasks. Pausing a paused type keeps its first pause, resuming a running one changes"
    " nothing; both answer 200 with `changed: false`. Each action is recorded with who asked and when"
    " (`GET /types/{type}` shows the history)."
)
FLOW_KEY = {
    "name": "key",
    "in": "query",
    "required": False,
    "description": f"The task's flow key, for its type's per-key caps and rates ({KEY_RULE}).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES, "pattern": TASK_ID_PATTERN},
}


PRIORITY = {
    "name": "priority",
    "in": "query",
    "required": False,
    "description": "The task's class: `high` never waits behind `default` or `low` work (docs/architecture.md,"
    " Priorities). Left out: `default`.",
    "schema": {"type": "string", "enum": ["high", "default", "low"]},
}


CALLBACK_URL = {
    "name": "callbackUrl",
    "in": "query",
    "required": False,
    "description": "The task's completion callback, URL-encoded: `callback.url` of `POST /publish`, under the"
    " same rules (docs/workflows.md).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CALLBACK_URL_LENGTH},
}
TAGS = {
    "name": "tag",
    "in": "query",
    "required": False,
    "description": f"A tag for the task ({TAG_RULE}), given once per tag, up to {MAX_TAGS}, each once.",
    "style": "form",
    "explode": True,
    "schema": {
        "type": "array",
        "maxItems": MAX_TAGS,
        "uniqueItems": True,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH, "pattern": TAG_PATTERN},
    },
}
LONG_POLL_DESCRIPTION = (
    f"With `waitSeconds` (1 to {MAX_WAIT_SECONDS}) the answer waits for the task to end: it comes as soon as the"
    " task is COMPLETED, FAILED or CANCELLED (at once if it already is), or after `waitSeconds` with where the"
    f" task stands then. The wait reads the task every {DEFAULT_SCHEDULE.first_pause:g} s, then ever less often"
    f" down to every {DEFAULT_SCHEDULE.max_pause:g} s, so an end is seen within about"
    f" {DEFAULT_SCHEDULE.max_pause:g} s; a full wait makes at most {DEFAULT_SCHEDULE.max_reads(MAX_WAIT_SECONDS)}"
    " strongly consistent reads."
)


def _query_parameters(model: type[QueryModel]) -> list[dict[str, Any]]:
    """The route's query parameters, from the model that parses them."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema["properties"].items():
        # An optional parameter is left out, never sent as null: its schema is the non-null branch.
        (value_schema,) = [s for s in field_schema.get("anyOf", [field_schema]) if s.get("type") != "null"]
        parameter = {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": field_schema.get("description", ""),
            "schema": {key: value for key, value in value_schema.items() if key not in ("title", "description")},
        }
        if value_schema.get("type") == "array":
            parameter.update(style="form", explode=True)  # `tag=a&tag=b`: the parameter given once per value
        parameters.append(parameter)
    return parameters


BATCH_DESCRIPTION = (
    "Each entry gets the result `POST /publish` would give it: `{id, status, duplicate}` when it is "
    "accepted or a duplicate, `{id, error}` (the usual error shape; `id` null when the entry has none "
    "usable) when it is refused, including `service_unavailable` when its put or its send failed; such a "
    "task is not kept. An id repeated within the batch is a duplicate of its first entry and shares its "
    "outcome. An entry with a `uniqueKey` claims it on its own; entries sharing a key claim it in batch order, "
    "so the first wins and the others answer `duplicate: true` with its `existingId` (or share its refusal "
    "when its send failed). The request as a whole is refused (4xx) only when it is not a batch: not a JSON object, "
    f"`tasks` missing, not a list, empty or over {MAX_BATCH_TASKS} entries, or a body over "
    f"{MAX_BATCH_BYTES:,} bytes. That cap keeps a request within API Gateway's 10 MB request limit and "
    "Lambda's 6 MB synchronous invocation payload, which holds the body JSON-escaped; each task is still "
    f"at most {MAX_TASK_BYTES} bytes serialized (`payload_too_large` in its result)."
)

LOCATION = {"Location": {"description": "Where the task's status can be read.", "schema": {"type": "string"}}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    types = [REGISTRY.get(name) for name in REGISTRY.names()]
    payload_models = [task_type.payload for task_type in types if task_type and task_type.payload]
    _, schemas = models_json_schema(
        [
            (TaskIn, "validation"),
            *((model, "validation") for model in payload_models),
            (PublishAccepted, "serialization"),
            (TaskCreated, "serialization"),
            (TaskView, "serialization"),
            (TaskPage, "serialization"),
            (Stats, "serialization"),
            (StuckPage, "serialization"),
            (BulkRetryIn, "validation"),
            (RetryIn, "validation"),
            (BulkRetryResult, "serialization"),
            (TypeList, "serialization"),
            (TypeDetail, "serialization"),
            (TypeChange, "serialization"),
            (ErrorResponse, "serialization"),
            (Health, "serialization"),
            (PublishBatchIn, "validation"),
            (PublishBatchAnswer, "serialization"),
            (ScheduleDefinition, "validation"),
            (ScheduleView, "serialization"),
            (SchedulePage, "serialization"),
            (BackfillIn, "validation"),
            (BackfillAnswer, "serialization"),
            (ScheduleDeleted, "serialization"),
            (WorkflowIn, "validation"),
            (WorkflowView, "serialization"),
        ],
        ref_template=REF,
    )
    definitions = schemas["$defs"]
    definitions.update(_task_type_schemas(REGISTRY, definitions))
    definitions.update(chain_step_schemas(REGISTRY, definitions, REF))
    # Each entry should be a publish body, but any value is a valid entry of a batch: one that is
    # not a valid task is refused in its own result, and the request still succeeds.
    definitions["PublishBatchIn"]["properties"]["tasks"]["items"] = {
        "anyOf": [_ref(TaskIn), {"description": "Anything else: refused in its own result; the others go on."}]
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskproc",
            "version": "1.0.0",
            "description": "Accept tasks over HTTP, run them asynchronously with retries, never lose them.",
        },
        "paths": {
            "/publish": {
                "post": {
                    "operationId": "publishTask",
                    "summary": "Publish a task under a client-chosen id; a known id is never run twice.",
                    "requestBody": _body(TaskIn, "The task."),
                    "responses": {
                        "201": _json(
                            PublishAccepted,
                            "Accepted; also for a duplicate id, and for a `uniqueKey` another task holds"
                            " (`existingId` names it, `Location` points at it, nothing is queued).",
                            LOCATION,
                        ),
                        **_errors(400, 413, 415, 500, 503),
                    },
                }
            },
            "/publish/batch": {
                "post": {
                    "operationId": "publishBatch",
                    "summary": f"Publish 1 to {MAX_BATCH_TASKS} tasks at once; each is accepted or refused on its own.",
                    "description": BATCH_DESCRIPTION,
                    "requestBody": _body(PublishBatchIn, "The tasks, each a `POST /publish` body."),
                    "responses": {
                        "200": _json(PublishBatchAnswer, "One result per task, in request order."),
                        **_errors(400, 415, 500),
                        "413": _json(ErrorResponse, f"The body is larger than {MAX_BATCH_BYTES:,} bytes."),
                        "503": _json(ErrorResponse, "The service is misconfigured; nothing was accepted."),
                    },
                }
            },
            "/tasks": {
                "post": {
                    "operationId": "createTask",
                    "summary": "Create a task whose payload is the whole body, under a server-generated id.",
                    "requestBody": _body(SimulatePayload, "The task's payload; it runs as a `simulate` task."),
                    "parameters": [FLOW_KEY, PRIORITY, CALLBACK_URL, TAGS],
                    "responses": {
                        "201": _json(TaskCreated, "Accepted.", LOCATION),
                        **_errors(400, 413, 415, 500, 503),
                    },
                },
                "get": {
                    "operationId": "listTasks",
                    "summary": "Tasks in one status, most recently updated first, a page at a time. " + OPERATOR,
                    "parameters": _query_parameters(TaskListQuery),
                    "responses": {"200": _json(TaskPage, "One page."), **_errors(400, 500, 503)},
                },
            },
            "/tasks/{task_id}": {
                "get": {
                    "operationId": "getTask",
                    "summary": "Where a task stands; with `waitSeconds`, once it has ended (a long-poll).",
                    "description": LONG_POLL_DESCRIPTION,
                    "parameters": [TASK_ID, *_query_parameters(TaskReadQuery)],
                    "responses": {"200": _json(TaskView, "The task."), **_errors(400, 404, 500, 503)},
                }
            },
            "/tasks/{task_id}/retry": {
                "post": {
                    "operationId": "retryTask",
                    "summary": "Start a FAILED or CANCELLED task over with a fresh attempt budget. " + OPERATOR,
                    "parameters": [TASK_ID],
                    "requestBody": _body(
                        RetryIn,
                        "Optional. Without a body (or with `{}`) the retried task has no expiry, whatever it had;"
                        " `expiresInSeconds` gives it one, counted from the retry.",
                        required=False,
                    ),
                    "responses": {
                        "202": _json(TaskView, "Queued again; `history` ends with the retry."),
                        **_errors(400, 404, 409, 413, 415, 500, 503),
                    },
                }
            },
            "/tasks/{task_id}/cancel": {
                "post": {
                    "operationId": "cancelTask",
                    "summary": "Cancel a PENDING or RETRYING task, or ask a PROCESSING one to stop. " + OPERATOR,
                    "parameters": [TASK_ID],
                    "responses": {
                        "200": _json(TaskView, "CANCELLED: it never starts another attempt."),
                        "202": _json(TaskView, "Cancel requested: a failure of the running attempt ends it CANCELLED."),
                        **_errors(400, 404, 409, 500, 503),
                    },
                }
            },
            "/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Counts of every status (exact or estimated), throughput, latency and the queues'"
                    " depths. " + OPERATOR,
                    "responses": {"200": _json(Stats, "The figures and where each comes from."), **_errors(500, 503)},
                }
            },
            "/stuck": {
                "get": {
                    "operationId": "listStuck",
                    "summary": "Stuck tasks: PENDING past the dispatch bound, PROCESSING past their lease; a bounded"
                    " Scan of the task table, a page at a time (docs/operations.md). " + OPERATOR,
                    "parameters": _query_parameters(StuckQuery),
                    "responses": {"200": _json(StuckPage, "One Scan page's stuck tasks."), **_errors(400, 500, 503)},
                }
            },
            "/retries": {
                "post": {
                    "operationId": "retryMany",
                    "summary": "Retry up to `limit` FAILED (or CANCELLED) tasks, newest first. " + OPERATOR,
                    "requestBody": _body(BulkRetryIn, "Which tasks to retry."),
                    "responses": {
                        "200": _json(BulkRetryResult, "What matched and what was queued again."),
                        **_errors(400, 413, 415, 500, 503),
                    },
                }
            },
            "/types": {
                "get": {
                    "operationId": "listTypes",
                    "summary": "Every registered task type: its options, whether it is paused, and its running count"
                    " under a concurrency cap. " + OPERATOR,
                    "responses": {"200": _json(TypeList, "The types, by name."), **_errors(500, 503)},
                }
            },
            "/types/{type}": {
                "get": {
                    "operationId": "describeType",
                    "summary": "One task type's entry and its latest pauses and resumes. " + OPERATOR,
                    "parameters": [TYPE],
                    "responses": {
                        "200": _json(TypeDetail, "The type."),
                        "404": UNKNOWN_TYPE,
                        **_errors(500, 503),
                    },
                }
            },
            "/types/{type}/pause": {
                "post": {
                    "operationId": "pauseType",
                    "summary": "Pause a task type: no attempt of it starts until it is resumed. " + OPERATOR,
                    "description": PAUSE_DESCRIPTION,
                    "parameters": [TYPE],
                    "responses": {
                        "200": _json(TypeChange, "Paused (or already paused: `changed` false)."),
                        "404": UNKNOWN_TYPE,
                        **_errors(500, 503),
                    },
                }
            },
            "/types/{type}/resume": {
                "post": {
                    "operationId": "resumeType",
                    "summary": "Resume a paused task type: its tasks start again. " + OPERATOR,
                    "description": PAUSE_DESCRIPTION,
                    "parameters": [TYPE],
                    "responses": {
                        "200": _json(TypeChange, "Resumed (or not paused: `changed` false)."),
                        "404": UNKNOWN_TYPE,
                        **_errors(500, 503),
                    },
                }
            },
            **_schedule_paths(),
            **_workflow_paths(),
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the settings are valid and the table answers.",
                    "responses": {
                        "200": _json(Health, "Healthy."),
                        "503": _json(
                            Health, "Unavailable: which dependency failed, and the id of the log line with the error."
                        ),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": definitions},
    }


SCHEDULE_ID = {
    "name": "schedule_id",
    "in": "path",
    "required": True,
    "description": f"The schedule id, percent-encoded ({SCHEDULE_ID_RULE}).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_SCHEDULE_ID_LENGTH, "pattern": TASK_ID_PATTERN},
}
NO_SCHEDULE = _json(ErrorResponse, "No schedule has this id.")
SCHEDULE_CONFLICT = _json(
    ErrorResponse,
    "The schedule is declared in the code (change it there), it changed while the request ran (try again), or"
    " its payload no longer fits its type (`details` names each `payload.<field>`).",
)
SCHEDULE_LOCATION = {"Location": {"description": "Where the schedule can be read.", "schema": {"type": "string"}}}
SCHEDULES_DOC = " The contract, DST rules, catch-up and overlap: docs/schedules.md. " + OPERATOR


def _schedule_action(operation_id: str, summary: str, answer: dict[str, Any], body: Any = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary + SCHEDULES_DOC,
        "parameters": [SCHEDULE_ID],
        "responses": {**answer, "404": NO_SCHEDULE, "409": SCHEDULE_CONFLICT, **_errors(400, 413, 415, 500, 503)},
    }
    if body is not None:
        operation["requestBody"] = body
    return {"post": operation}


def _schedule_paths() -> dict[str, Any]:
    view = _json(ScheduleView, "The schedule: its definition, next five firings, last firing, counts and history.")
    return {
        "/schedules": {
            "post": {
                "operationId": "createSchedule",
                "summary": "Create a schedule; its payload is checked against its type's model now." + SCHEDULES_DOC,
                "requestBody": _body(ScheduleDefinition, "The schedule's definition."),
                "responses": {
                    "201": _json(ScheduleView, "Created.", SCHEDULE_LOCATION),
                    "409": _json(ErrorResponse, "A schedule with this id exists."),
                    **_errors(400, 413, 415, 500, 503),
                },
            },
            "get": {
                "operationId": "listSchedules",
                "summary": "One page of schedules (a bounded Scan of the schedules table)." + SCHEDULES_DOC,
                "parameters": _query_parameters(ScheduleListQuery),
                "responses": {"200": _json(SchedulePage, "A page of schedules."), **_errors(400, 500, 503)},
            },
        },
        "/schedules/{schedule_id}": {
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule." + SCHEDULES_DOC,
                "parameters": [SCHEDULE_ID],
                "responses": {"200": view, "404": NO_SCHEDULE, **_errors(500, 503)},
            },
            "put": {
                "operationId": "replaceSchedule",
                "summary": "Replace an API-made schedule's definition; a new timing fires from now on." + SCHEDULES_DOC,
                "parameters": [SCHEDULE_ID],
                "requestBody": _body(ScheduleDefinition, "The definition; `id`, if given, must be the path's."),
                "responses": {
                    "200": view,
                    "404": NO_SCHEDULE,
                    "409": SCHEDULE_CONFLICT,
                    **_errors(400, 413, 415, 500, 503),
                },
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete an API-made schedule; its firings' tasks stay." + SCHEDULES_DOC,
                "parameters": [SCHEDULE_ID],
                "responses": {
                    "200": _json(ScheduleDeleted, "Deleted."),
                    "404": NO_SCHEDULE,
                    "409": SCHEDULE_CONFLICT,
                    **_errors(500, 503),
                },
            },
        },
        "/schedules/{schedule_id}/pause": _schedule_action(
            "pauseSchedule", "Pause a schedule: it fires nothing until resumed.", {"200": view}
        ),
        "/schedules/{schedule_id}/resume": _schedule_action(
            "resumeSchedule",
            "Resume a schedule: the firings it missed inside its catch-up window fire at the next tick.",
            {"200": view},
        ),
        "/schedules/{schedule_id}/trigger": _schedule_action(
            "triggerSchedule",
            "Fire once now, whatever the timing and overlap: task `<id>@<now UTC>.manual`.",
            {"201": _json(TaskView, "The firing's task.", LOCATION)},
        ),
        "/schedules/{schedule_id}/backfill": _schedule_action(
            "backfillSchedule",
            "Publish the firings from `from` to `to` (both included; at most 100), each under its own"
            " deterministic id, so a firing published before is a duplicate.",
            {"200": _json(BackfillAnswer, "What was published, oldest first.")},
            _body(BackfillIn, "The range."),
        ),
    }


WORKFLOW_ID = {
    "name": "workflow_id",
    "in": "path",
    "required": True,
    "description": "The workflow id, percent-encoded.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_ID_LENGTH, "pattern": TASK_ID_PATTERN},
}
WORKFLOWS_DOC = (
    "The children run as ordinary tasks; `then` (`<id>/then`) runs once the last has ended, with every child's"
    " outcome in order; `onChildFailure` says what a FAILED child does (docs/workflows.md, Workflows)."
)


def _workflow_paths() -> dict[str, Any]:
    """`POST /workflows` and `GET /workflows/{workflow_id}` (chalicelib/workflows/)."""
    located = {"Location": {"description": "Where the workflow can be read.", "schema": {"type": "string"}}}
    return {
        "/workflows": {
            "post": {
                "operationId": "createWorkflow",
                "summary": f"Publish 1 to {MAX_CHILDREN:,} children and the task that follows them all.",
                "description": WORKFLOWS_DOC
                + " The same body again is idempotent and publishes the children a failed POST left unpublished.",
                "requestBody": _body(WorkflowIn, "The workflow."),
                "responses": {
                    "201": _json(WorkflowView, "Stored, its children published (also for a repeat).", located),
                    "409": _json(ErrorResponse, "The id has another definition, or a child's id is another task's."),
                    **_errors(400, 413, 415, 500, 503),
                },
            }
        },
        "/workflows/{workflow_id}": {
            "get": {
                "operationId": "getWorkflow",
                "summary": "Where a workflow stands: its status, its children's counts by status, its `then`.",
                "parameters": [WORKFLOW_ID],
                "responses": {"200": _json(WorkflowView, "The workflow."), **_errors(404, 500, 503)},
            }
        },
    }
