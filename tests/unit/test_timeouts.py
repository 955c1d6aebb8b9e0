"""The API's AWS calls end inside its function's timeout, on every deployed stage.

Read from the two places that decide it: `.chalice/config.json` (the API function's
timeout, and the stage's botocore settings) and chalicelib (how long one call may take).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.consume.consumer import ADOPTION_REPAIR_MS
from chalicelib.operate.operations import BULK_RETRY_BUDGET_SECONDS
from chalicelib.publish.wait import MAX_WAIT_SECONDS
from chalicelib.settings import Settings, aws_call_seconds

CONFIG = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
DEPLOYED_STAGES = [stage for stage in CONFIG["stages"] if stage != "local"]
# The most AWS calls a route makes one after another (calls made side by side count once):
# GET /stats counts the index (side by side), then reads two queues' depths and CloudWatch;
# a retry reads the task, sends its message and writes it.
LONGEST_ROUTE_CHAIN = 4
RETRY_CHAIN = 3
# Left for Lambda's own work around the calls: the import, parsing, answering.
MARGIN_SECONDS = 2.0
# API Gateway's REST integration timeout: a function still running then is answered 504 for it.
API_GATEWAY_TIMEOUT_SECONDS = 29


def stage_settings(stage: str) -> Settings:
    """The stage's settings as `.chalice/config.json` gives them, whatever this process's environment holds."""
    environment = {**CONFIG["environment_variables"], **CONFIG["stages"][stage]["environment_variables"]}
    timeouts = {name: field.default for name, field in Settings.model_fields.items() if name.startswith("AWS_")}
    given = {name: value for name, value in environment.items() if name in Settings.model_fields}
    return Settings(**{**timeouts, **given})


def api_timeout(stage: str) -> int:
    return int(CONFIG["stages"][stage]["lambda_functions"]["api_handler"]["lambda_timeout"])


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_the_longest_chain_of_calls_of_any_route_fits_in_the_api_timeout(stage: str) -> None:
    call = aws_call_seconds(stage_settings(stage))
    assert LONGEST_ROUTE_CHAIN * call + MARGIN_SECONDS <= api_timeout(stage), (stage, call)


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_a_bulk_retry_that_starts_a_retry_at_its_budget_still_answers_in_time(stage: str) -> None:
    call = aws_call_seconds(stage_settings(stage))
    assert BULK_RETRY_BUDGET_SECONDS + RETRY_CHAIN * call + MARGIN_SECONDS <= api_timeout(stage), (stage, call)


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_a_full_long_poll_whose_last_read_starts_at_its_deadline_still_answers_in_time(stage: str) -> None:
    call = aws_call_seconds(stage_settings(stage))
    assert MAX_WAIT_SECONDS + call + MARGIN_SECONDS <= api_timeout(stage), (stage, call)


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_the_api_function_ends_before_api_gateway_gives_up_on_it(stage: str) -> None:
    assert api_timeout(stage) < API_GATEWAY_TIMEOUT_SECONDS


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_a_publish_whose_put_could_still_land_is_never_taken_for_dead(stage: str) -> None:
    # The consumer repairs a task stored more than ADOPTION_REPAIR_MS after its message: by then
    # the API function that sent it has ended, so its put can no longer land.
    assert api_timeout(stage) < ADOPTION_REPAIR_MS / 1000


def test_one_call_takes_at_most_its_attempts_timeouts_and_backoffs() -> None:
    settings = stage_settings("prod")
    attempts = settings.AWS_MAX_ATTEMPTS
    per_attempt = settings.AWS_CONNECT_TIMEOUT_SECONDS + settings.AWS_READ_TIMEOUT_SECONDS
    assert aws_call_seconds(settings) >= attempts * per_attempt
    assert aws_call_seconds(settings) < attempts * per_attempt + attempts * 20


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


def test_health_and_publish_against_a_silent_endpoint_answer_503_inside_the_api_timeout(
    silent_endpoint: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalice.test import Client

    import app
    from chalicelib.runtime import build_runtime, set_runtime

    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    settings = stage_settings("prod").model_copy(update={"TASKS_TABLE": "t", "TASKS_QUEUE": "q"})
    set_runtime(build_runtime(settings))
    try:
        with Client(app.app, stage_name="prod") as client:
            for method, path, body in [("get", "/health", None), ("post", "/publish", '{"id": "a", "payload": {}}')]:
                started = time.monotonic()
                call = getattr(client.http, method)
                response = call(path, body=body, headers={"Content-Type": "application/json"}) if body else call(path)
                took = time.monotonic() - started
                assert response.status_code == 503, (path, response.body)
                # A bound, not a benchmark: the point is that it is not 30 s (three times the old timeout).
                assert took < api_timeout("prod") - MARGIN_SECONDS, (path, took)
    finally:
        set_runtime(None)
