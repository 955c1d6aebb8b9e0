"""The app as API Gateway invokes it: decoded path parameters and a stage in the path."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest


def gateway_event(method: str, resource: str, path: str, body: Any = None, **path_parameters: str) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it for the `api` stage."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "apiId": "abc123",
            "identity": {"sourceIp": "203.0.113.7"},
        },
    }


@pytest.mark.parametrize("task_id", ["a/b", "100%", "%41", "día ☃"])
def test_gateway_decoded_ids_read_back_and_locations_carry_the_stage(runtime: Any, task_id: str) -> None:
    import app

    published = app.app(gateway_event("POST", "/publish", "/publish", {"id": task_id, "payload": {}}), None)
    assert published["statusCode"] == 201
    assert published["headers"]["Location"] == "/api/tasks/" + quote(task_id, safe="")

    # API Gateway hands the path parameter over decoded, so it is not decoded again.
    read = app.app(gateway_event("GET", "/tasks/{task_id}", "/tasks/x", task_id=task_id), None)
    assert read["statusCode"] == 200
    assert json.loads(read["body"])["id"] == task_id
