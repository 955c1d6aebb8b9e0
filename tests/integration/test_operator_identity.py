"""Who operated a task is the operators' business: client routes say `operator`, operator routes the principal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import FakeClock
from tests.integration.harness import FAILS, Harness, fail_until_last
from tests.integration.test_api_gateway_events import gateway_event

OPERATOR_ARN = "arn:aws:sts::123456789012:assumed-role/taskproc-oncall/alice@example.com"


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def as_operator(method: str, resource: str, path: str, **path_parameters: str) -> dict[str, Any]:
    """An operator route's event as API Gateway sends it after IAM authorization of OPERATOR_ARN."""
    import app

    event = gateway_event(method, resource, path, **path_parameters)
    event["requestContext"]["identity"] |= {"userArn": OPERATOR_ARN, "caller": "AROAEXAMPLE:alice@example.com"}
    answer: dict[str, Any] = app.app(event, None)
    return answer


def retried_and_cancelled(h: Harness, task_id: str) -> dict[str, Any]:
    """A task that failed, was retried and cancelled by OPERATOR_ARN: the cancel's answer."""
    h.publish(task_id, FAILS)
    fail_until_last(h, task_id)
    assert h.task(task_id)["status"] == "FAILED"
    retried = as_operator("POST", "/tasks/{task_id}/retry", f"/tasks/{task_id}/retry", task_id=task_id)
    assert retried["statusCode"] == 202, retried
    cancelled = as_operator("POST", "/tasks/{task_id}/cancel", f"/tasks/{task_id}/cancel", task_id=task_id)
    assert cancelled["statusCode"] == 200, cancelled
    return dict(json.loads(cancelled["body"]))


def actions(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["kind"], entry["by"]) for entry in view["history"] if entry["kind"] != "attempt"]


def test_the_operator_routes_answer_with_the_principal_that_acted(h: Harness) -> None:
    view = retried_and_cancelled(h, "audited")

    assert actions(view) == [("retry", OPERATOR_ARN), ("cancel", OPERATOR_ARN)]


def test_a_client_reading_the_task_sees_that_an_operator_acted_but_not_who(h: Harness) -> None:
    retried_and_cancelled(h, "audited")

    import app

    through_gateway = app.app(gateway_event("GET", "/tasks/{task_id}", "/tasks/audited", task_id="audited"), None)
    locally = h.client.http.get("/tasks/audited")

    for body in (through_gateway["body"], locally.body):
        view = json.loads(body)
        assert actions(view) == [("retry", "operator"), ("cancel", "operator")]
        text = body if isinstance(body, str) else body.decode()
        assert "123456789012" not in text and "alice" not in text and "AROA" not in text
