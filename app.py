"""taskproc: routes and event handlers. Each parses, calls chalicelib, shapes the answer."""

from __future__ import annotations

from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote

from chalice import Chalice, IAMAuthorizer, Rate, Response
from chalice.app import CloudWatchEvent, ConvertToMiddleware, SQSEvent

from chalicelib import logs, metrics
from chalicelib.http import json_errors, json_response
from chalicelib.models import MAX_BATCH_BYTES
from chalicelib.runtime import get_runtime
from chalicelib.settings import wiring
from chalicelib.tasks.priority import Priority

# Every function imports this module, and each function's cold start should pay for what it runs
# alone: what only the routes or the tick use (publishing, the operator's surface, schedules,
# workflows, the OpenAPI document) is imported inside them, and the consumer inside the queue
# handlers, on first use. tests/unit/test_cold_start.py keeps it so.

app = Chalice(app_name="taskproc")
# Every invocation, a route's or a batch's: its log lines carry the Lambda context, and its
# metrics are flushed once, when it ends.
app.register_middleware(ConvertToMiddleware(logs.with_lambda_context))
app.register_middleware(ConvertToMiddleware(metrics.flushed))

WIRING = wiring()
# Content types are checked in chalicelib, so that a wrong one gets the JSON error shape
# (a GET has no body to check); Chalice's own check would answer in another shape.
ANY_CONTENT_TYPE = ["*/*"]
# Operator routes: SigV4-signed requests from principals granted execute-api:Invoke on them
# (the template's taskproc-<stage>-operator policy), on every deployed stage.
OPERATOR = IAMAuthorizer()


def _api() -> ModuleType:
    """The publish API (chalicelib/publish/api.py), imported by the first route that needs it."""
    from chalicelib.publish import api

    return api


def _path_prefix() -> str:
    """The API Gateway stage in front of the routes ('' locally), for Location headers."""
    context = app.current_request.context
    path, resource = context.get("path", ""), app.current_request.path
    return path[: -len(resource)] if resource and path.endswith(resource) and "apiId" in context else ""


def _principal() -> str:
    """Who asked, as API Gateway's IAM authorization established it; 'anonymous' where nothing was checked."""
    identity = app.current_request.context.get("identity") or {}
    return str(identity.get("userArn") or identity.get("caller") or "anonymous")


def _task_id(raw: str) -> str:
    # API Gateway's request context names the API; Chalice's local gateway's does not.
    return _api().decode_task_id(raw, gateway_decoded="apiId" in app.current_request.context)


def _type_name(raw: str) -> str:
    # As for task ids: Chalice's local gateway hands path parameters over still percent-encoded.
    return raw if "apiId" in app.current_request.context else unquote(raw)


def _query() -> dict[str, list[str]]:
    """Each query parameter with every value it was given, so that a repeated one can be refused."""
    params = app.current_request.query_params or {}
    return {name: params.getlist(name) for name in params}


def _body() -> dict[str, Any]:
    request = app.current_request
    return _api().parse_json_object(request.raw_body, request.headers.get("content-type"))


def _optional_body() -> dict[str, Any]:
    """The body of a route whose body is optional: `{}` when there is none."""
    request = app.current_request
    return _api().parse_optional_json_object(request.raw_body, request.headers.get("content-type"))


@app.route("/publish", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def publish() -> Response:
    accepted = _api().publish(_body(), get_runtime())
    # A publish held back by its unique key points at the task that holds the key.
    location = _api().task_location(accepted.existingId or accepted.id, _path_prefix())
    return json_response(accepted, 201, {"Location": location})


@app.route("/publish/batch", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def publish_batch() -> Response:
    from chalicelib.publish import batch

    request = app.current_request
    body = _api().parse_json_object(request.raw_body, request.headers.get("content-type"), MAX_BATCH_BYTES)
    return json_response(batch.publish_batch(body, get_runtime()))


@app.route("/tasks", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def create_task() -> Response:
    query = app.current_request.query_params or {}  # the body is all payload: the task's options are here
    tags = _query().get(_api().TAG_PARAMETER, [])
    created = _api().create_from_payload(
        _body(), get_runtime(), query.get("key"), query.get("priority"), query.get("callbackUrl"), tags
    )
    return json_response(created, 201, {"Location": _api().task_location(created.id, _path_prefix())})


@app.route("/workflows", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def create_workflow() -> Response:
    from chalicelib.workflows import service as workflows

    request = app.current_request
    body = _api().parse_json_object(request.raw_body, request.headers.get("content-type"), MAX_BATCH_BYTES)
    created = workflows.create(body, get_runtime())
    return json_response(created, 201, {"Location": f"{_path_prefix()}/workflows/{quote(created.id, safe='')}"})


@app.route(
    "/workflows/{workflow_id}",
    methods=["GET"],
    content_types=ANY_CONTENT_TYPE,
    api_key_required=WIRING.api_key_required,
)
@json_errors
def get_workflow(workflow_id: str) -> Response:
    from chalicelib.workflows import service as workflows

    return json_response(workflows.read(_task_id(workflow_id), get_runtime()))


@app.route(
    "/tasks/{task_id}", methods=["GET"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required
)
@json_errors
def get_task(task_id: str) -> Response:
    from chalicelib.query import TaskReadQuery, parse_query

    query = parse_query(TaskReadQuery, _query())  # waitSeconds: a long-poll
    return json_response(_api().get_task(_task_id(task_id), get_runtime(), query.waitSeconds))


@app.route("/tasks", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def list_tasks() -> Response:
    from chalicelib.operate import operations

    return json_response(operations.list_tasks(_query(), get_runtime()))


@app.route("/stats", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def stats() -> Response:
    from chalicelib.operate import operations

    return json_response(operations.stats(get_runtime()))


@app.route("/stuck", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def list_stuck() -> Response:
    from chalicelib.operate import stuck

    return json_response(stuck.list_stuck(_query(), get_runtime()))


@app.route("/tasks/{task_id}/retry", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def retry_task(task_id: str) -> Response:
    from chalicelib.operate import operations

    options = operations.retry_options(_optional_body())
    view = operations.retry(_task_id(task_id), _principal(), get_runtime(), options.expiresInSeconds)
    return json_response(view, 202)


@app.route("/tasks/{task_id}/cancel", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def cancel_task(task_id: str) -> Response:
    from chalicelib.operate import operations

    view, cancelled = operations.cancel(_task_id(task_id), _principal(), get_runtime())
    return json_response(view, 200 if cancelled else 202)


@app.route("/retries", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def retry_many() -> Response:
    from chalicelib.operate import operations

    return json_response(operations.bulk_retry(_body(), _principal(), get_runtime()))


@app.route("/types", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def list_types() -> Response:
    from chalicelib.operate import task_types

    return json_response(task_types.list_types(get_runtime()))


@app.route("/types/{type}", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def describe_type(type: str) -> Response:
    from chalicelib.operate import task_types

    return json_response(task_types.describe(_type_name(type), get_runtime()))


@app.route("/types/{type}/pause", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def pause_type(type: str) -> Response:
    from chalicelib.operate import task_types

    return json_response(task_types.change("pause", _type_name(type), _principal(), get_runtime()))


@app.route("/types/{type}/resume", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def resume_type(type: str) -> Response:
    from chalicelib.operate import task_types

    return json_response(task_types.change("resume", _type_name(type), _principal(), get_runtime()))


# Schedules (chalicelib/schedules/): operator routes; their time is the schedule clock's.
@app.route("/schedules", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def create_schedule() -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    created = schedules.create(_body(), _principal(), rt, rt.schedule_clock.now())
    return json_response(created, 201, {"Location": f"{_path_prefix()}/schedules/{quote(created.id, safe='')}"})


@app.route("/schedules", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def list_schedules() -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.list_page(_query(), rt, rt.schedule_clock.now()))


@app.route("/schedules/{schedule_id}", methods=["GET"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def get_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.get(_task_id(schedule_id), rt, rt.schedule_clock.now()))


@app.route("/schedules/{schedule_id}", methods=["PUT"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def replace_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.replace(_task_id(schedule_id), _body(), _principal(), rt, rt.schedule_clock.now()))


@app.route("/schedules/{schedule_id}", methods=["DELETE"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def delete_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    return json_response(schedules.delete(_task_id(schedule_id), _principal(), get_runtime()))


@app.route("/schedules/{schedule_id}/pause", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def pause_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.pause(_task_id(schedule_id), True, _principal(), rt, rt.schedule_clock.now()))


@app.route("/schedules/{schedule_id}/resume", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def resume_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.pause(_task_id(schedule_id), False, _principal(), rt, rt.schedule_clock.now()))


@app.route("/schedules/{schedule_id}/trigger", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def trigger_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    task = schedules.trigger(_task_id(schedule_id), _principal(), rt, rt.schedule_clock.now())
    return json_response(task, 201, {"Location": _api().task_location(task.id, _path_prefix())})


@app.route("/schedules/{schedule_id}/backfill", methods=["POST"], content_types=ANY_CONTENT_TYPE, authorizer=OPERATOR)
@json_errors
def backfill_schedule(schedule_id: str) -> Response:
    from chalicelib.schedules import routes as schedules

    rt = get_runtime()
    return json_response(schedules.backfill(_task_id(schedule_id), _body(), _principal(), rt, rt.schedule_clock.now()))


@app.route("/health", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def health() -> Response:
    status_code, body = _api().health(get_runtime, app.current_request.context.get("requestId"))
    return json_response(body, status_code)


@app.route("/openapi.json", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def openapi() -> dict[str, Any]:
    from chalicelib.openapi import openapi_document

    return openapi_document()


def _consume_class(event: SQSEvent, priority: Priority) -> dict[str, Any] | None:
    from chalicelib.consume.consumer import TaskConsumer, consume
    from chalicelib.consume.deadline import Invocation, margin_seconds

    runtime = get_runtime()
    # The event's own context: Chalice sets `app.lambda_context` for routes only.
    invocation = Invocation.of(event.context, margin_seconds(runtime.settings))
    return consume(
        event.to_dict()["Records"],
        TaskConsumer(runtime, invocation, priority),
        runtime.queue_for(priority),
        runtime.settings.REPORT_BATCH_ITEM_FAILURES,
        invocation,
    )


@app.on_sqs_message(
    queue=WIRING.tasks_queue,
    batch_size=10,
    maximum_concurrency=WIRING.max_concurrency,
    maximum_batching_window_in_seconds=WIRING.batching_window_seconds,
)
def process_tasks(event: SQSEvent) -> dict[str, Any] | None:
    return _consume_class(event, Priority.DEFAULT)


# Each priority class has its own queue, event source and concurrency (chalicelib/tasks/priority.py).
@app.on_sqs_message(
    queue=WIRING.high_priority_queue,
    batch_size=10,
    maximum_concurrency=WIRING.high_max_concurrency,
    maximum_batching_window_in_seconds=WIRING.batching_window_seconds,
)
def process_high_priority_tasks(event: SQSEvent) -> dict[str, Any] | None:
    return _consume_class(event, Priority.HIGH)


@app.on_sqs_message(
    queue=WIRING.low_priority_queue,
    batch_size=10,
    maximum_concurrency=WIRING.low_max_concurrency,
    maximum_batching_window_in_seconds=WIRING.batching_window_seconds,
)
def process_low_priority_tasks(event: SQSEvent) -> dict[str, Any] | None:
    return _consume_class(event, Priority.LOW)


@app.on_sqs_message(queue=WIRING.dead_letter_queue, batch_size=10)
def handle_dead_letters(event: SQSEvent) -> dict[str, Any] | None:
    from chalicelib.consume.consumer import DeadLetterConsumer, consume

    runtime = get_runtime()
    return consume(
        event.to_dict()["Records"],
        DeadLetterConsumer(runtime),
        runtime.dead_letters,
        runtime.settings.REPORT_BATCH_ITEM_FAILURES,
    )


# Time: each minute, the messages of tasks whose `runAt` comes due, then every other tick job.
@app.schedule(Rate(1, unit=Rate.MINUTES))
def tick(event: CloudWatchEvent) -> dict[str, int]:
    from chalicelib.tick import ticker

    return ticker.tick(get_runtime())
