"""`GET /health`: anyone may call it, so it names the failing dependency in a fixed phrase and logs the error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from chalice.test import Client

from tests.integration.test_api_gateway_events import gateway_event

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/taskproc-dev-api_handler/taskproc-dev"
ACCESS_DENIED = (
    f"User: {ROLE_ARN} is not authorized to perform: dynamodb:GetItem on resource: "
    f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/taskproc-test-tasks because no identity-based policy allows it"
)


def log_lines(out: str) -> list[dict[str, Any]]:
    lines = []
    for line in out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def unavailable(response: Any, reason: str) -> str:
    """The answer's correlation id, once the answer is checked to be the fixed shape and nothing else."""
    assert response.status_code == 503
    body = json.loads(response.body)
    assert set(body) == {"status", "reason", "correlationId"}
    assert (body["status"], body["reason"]) == ("unavailable", reason)
    assert isinstance(body["correlationId"], str) and body["correlationId"]
    return str(body["correlationId"])


def logged_error(out: str, correlation_id: str) -> str:
    """The error of the one `health_unavailable` line that carries `correlation_id`."""
    (line,) = [
        line
        for line in log_lines(out)
        if line.get("message") == "health_unavailable" and line.get("correlation_id") == correlation_id
    ]
    assert line["level"] == "ERROR"
    return f"{line['errorType']}: {line['error']}"


@pytest.fixture
def denied(runtime: Any) -> Iterator[None]:
    """The table's client answers GetItem with AWS's AccessDenied, whose message names the account and the role."""
    with Stubber(runtime.store._client) as stubber:
        stubber.add_client_error(
            "get_item", service_error_code="AccessDeniedException", service_message=ACCESS_DENIED, http_status_code=400
        )
        yield


def test_health_is_ok_when_the_table_answers(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "reason": None, "correlationId": None}


def test_an_access_denied_table_is_unreachable_to_the_caller_and_named_with_account_and_role_in_the_log(
    client: Client, denied: None, capsys: pytest.CaptureFixture[str]
) -> None:
    response = client.http.get("/health")
    correlation_id = unavailable(response, "the task table is unreachable")
    assert ACCOUNT not in response.body.decode() and "arn:" not in response.body.decode()
    error = logged_error(capsys.readouterr().out, correlation_id)
    assert "AccessDenied" in error and ROLE_ARN in error and ACCOUNT in error


def test_a_missing_table_is_unreachable_to_the_caller_and_resource_not_found_in_the_log(
    client: Client, runtime: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime.store._client.delete_table(TableName="taskproc-test-tasks")
    response = client.http.get("/health")
    correlation_id = unavailable(response, "the task table is unreachable")
    assert "DynamoDB" not in response.body.decode() and "taskproc-test-tasks" not in response.body.decode()
    assert "ResourceNotFoundException" in logged_error(capsys.readouterr().out, correlation_id)


def test_invalid_settings_are_named_in_a_fixed_phrase_and_the_setting_in_the_log(
    aws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import app
    from chalicelib.runtime import set_runtime

    for name in ("TASKS_TABLE", "TASKS_QUEUE", "DEAD_LETTER_QUEUE"):
        monkeypatch.setenv(name, "taskproc-test-tasks")
    monkeypatch.setenv("MAX_ATTEMPTS", "zero")
    # A project without stage variables, so that only this test's environment counts.
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        json.dumps({"version": "2.0", "app_name": "taskproc", "stages": {"bare": {}}})
    )
    set_runtime(None)
    try:
        with Client(app.app, stage_name="bare", project_dir=str(tmp_path)) as bare:
            response = bare.http.get("/health")
    finally:
        set_runtime(None)
    correlation_id = unavailable(response, "the settings are invalid")
    assert "MAX_ATTEMPTS" not in response.body.decode()
    assert "MAX_ATTEMPTS" in logged_error(capsys.readouterr().out, correlation_id)


def test_behind_api_gateway_the_correlation_id_is_the_gateway_request_id(
    runtime: Any, denied: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import app

    event = gateway_event("GET", "/health", "/health")
    event["requestContext"]["requestId"] = "c0ffee00-1234-4e6f-9abc-0123456789ab"
    answer = app.app(event, None)
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["correlationId"] == "c0ffee00-1234-4e6f-9abc-0123456789ab"
    assert ROLE_ARN in logged_error(capsys.readouterr().out, "c0ffee00-1234-4e6f-9abc-0123456789ab")
    assert ACCOUNT not in answer["body"]


def test_each_failed_check_gets_its_own_correlation_id(client: Client, runtime: Any) -> None:
    runtime.store._client.delete_table(TableName="taskproc-test-tasks")
    first = unavailable(client.http.get("/health"), "the task table is unreachable")
    second = unavailable(client.http.get("/health"), "the task table is unreachable")
    assert first != second
