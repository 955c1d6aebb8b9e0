"""The built-in flow-controlled types: each runs under its limit and logs its own run, with the
task's id and attempt beside the handler's own fields."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chalicelib.consume.attempt import HANDLERS_LOGGER
from chalicelib.handlers import limited
from tests.integration.lambda_sqs import deliver
from tools.chaos.flow_invariants import HandlerRun, most_at_once

JSON = {"Content-Type": "application/json"}


def _publish(client, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    response = client.http.post("/publish", headers=JSON, body=json.dumps(body))
    assert response.status_code == 201, response.body


def _queue_url(runtime) -> str:  # type: ignore[no-untyped-def]
    return runtime.tasks_queue.url


def test_the_limited_types_declare_their_limits(runtime) -> None:  # type: ignore[no-untyped-def]
    options = {name: runtime.registry.get(name).options() for name in ("capped", "per-customer", "throttled")}
    assert options["capped"]["concurrency"] == limited.CAPPED_CONCURRENCY
    assert options["per-customer"]["concurrencyKey"] == "customer"
    assert options["per-customer"]["keyConcurrency"] == limited.CUSTOMER_CONCURRENCY
    assert options["throttled"]["rateLimit"] == limited.THROTTLED_RATE


def test_a_capped_batch_runs_only_its_cap_and_each_run_logs_its_task_and_times(
    client, runtime, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    for n in range(limited.CAPPED_CONCURRENCY + 2):
        _publish(client, {"id": f"cap-{n}", "type": "capped", "payload": {"sleepMs": 300}})
    sqs = runtime.tasks_queue._client
    with caplog.at_level(logging.INFO, logger=HANDLERS_LOGGER):
        deliver(client, "process_tasks", sqs, _queue_url(runtime))
    started = [r for r in caplog.records if r.name == HANDLERS_LOGGER and r.getMessage() == "flow_run_started"]
    ended = [r for r in caplog.records if r.name == HANDLERS_LOGGER and r.getMessage() == "flow_run_ended"]
    # One batch runs side by side: at no instant did more than the cap run (a slot freed by a run
    # that ended may be taken by a later record of the same batch).
    assert len(ended) == len(started) >= 1
    runs = [
        HandlerRun(r.taskId, "capped", None, r.startedMs, r.deadlineMs, e.endedMs)  # type: ignore[attr-defined]
        for r in started
        for e in ended
        if (e.taskId, e.attempt) == (r.taskId, r.attempt)  # type: ignore[attr-defined]
    ]
    assert len(runs) == len(started)
    assert most_at_once(runs) <= limited.CAPPED_CONCURRENCY
    first = started[0]
    assert first.taskId.startswith("cap-") and first.attempt == 1  # type: ignore[attr-defined]
    assert first.taskType == "capped" and first.customer == "anyone"  # type: ignore[attr-defined]
    assert first.startedMs <= first.deadlineMs  # type: ignore[attr-defined]
    statuses = [runtime.store.get(f"cap-{n}").status.value for n in range(limited.CAPPED_CONCURRENCY + 2)]
    assert statuses.count("COMPLETED") == len(started)
    assert statuses.count("PENDING") == len(statuses) - len(started)


def test_a_payload_outside_the_model_is_refused_naming_the_field(client) -> None:  # type: ignore[no-untyped-def]
    response = client.http.post(
        "/publish",
        headers=JSON,
        body=json.dumps({"id": "bad", "type": "capped", "payload": {"sleepMs": limited.MAX_SLEEP_MS + 1}}),
    )
    assert response.status_code == 400
    assert "payload.sleepMs" in response.body.decode()
