"""taskproc: routes and event handlers. Each parses, calls chalicelib, shapes the answer."""

from __future__ import annotations

from typing import Any

from chalice import Chalice, Response
from chalice.app import SQSEvent

from chalicelib import api
from chalicelib.consumer import DeadLetterConsumer, TaskConsumer, consume
from chalicelib.http import json_errors, json_response
from chalicelib.openapi import openapi_document
from chalicelib.runtime import get_runtime
from chalicelib.settings import wiring

app = Chalice(app_name="taskproc")

WIRING = wiring()
# Content types are checked in chalicelib, so that a wrong one gets the JSON error shape
# (a GET has no body to check); Chalice's own check would answer in another shape.
ANY_CONTENT_TYPE = ["*/*"]


def _path_prefix() -> str:
    """The API Gateway stage in front of the routes ('' locally), for Location headers."""
    context = app.current_request.context
    path, resource = context.get("path", ""), app.current_request.path
    return path[: -len(resource)] if resource and path.endswith(resource) and "apiId" in context else ""


def _body() -> dict[str, Any]:
    request = app.current_request
    return api.parse_json_object(request.raw_body, request.headers.get("content-type"))


@app.route("/publish", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def publish() -> Response:
    accepted = api.publish(_body(), get_runtime())
    return json_response(accepted, 201, {"Location": api.task_location(accepted.id, _path_prefix())})


@app.route("/tasks", methods=["POST"], content_types=ANY_CONTENT_TYPE, api_key_required=WIRING.api_key_required)
@json_errors
def create_task() -> Response:
    created = api.create_from_payload(_body(), get_runtime())
    return json_response(created, 201, {"Location": api.task_location(created.id, _path_prefix())})


@app.route("/tasks/{task_id}", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def get_task(task_id: str) -> Response:
    # API Gateway's request context names the API; Chalice's local gateway's does not.
    task_id = api.decode_task_id(task_id, gateway_decoded="apiId" in app.current_request.context)
    return json_response(api.get_task(task_id, get_runtime()))


@app.route("/health", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def health() -> Response:
    status_code, body = api.health(get_runtime)
    return json_response(body, status_code)


@app.route("/openapi.json", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def openapi() -> dict[str, Any]:
    return openapi_document()


@app.on_sqs_message(
    queue=WIRING.tasks_queue,
    batch_size=10,
    maximum_concurrency=WIRING.max_concurrency,
    maximum_batching_window_in_seconds=WIRING.batching_window_seconds,
)
def process_tasks(event: SQSEvent) -> dict[str, Any] | None:
    runtime = get_runtime()
    return consume(
        event.to_dict()["Records"],
        TaskConsumer(runtime),
        runtime.tasks_queue,
        runtime.settings.REPORT_BATCH_ITEM_FAILURES,
    )


@app.on_sqs_message(queue=WIRING.dead_letter_queue, batch_size=10)
def handle_dead_letters(event: SQSEvent) -> dict[str, Any] | None:
    runtime = get_runtime()
    return consume(
        event.to_dict()["Records"],
        DeadLetterConsumer(runtime),
        runtime.dead_letters,
        runtime.settings.REPORT_BATCH_ITEM_FAILURES,
    )
