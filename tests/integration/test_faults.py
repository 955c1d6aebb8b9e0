"""Transient AWS errors, injected ahead of moto's server so that the request never reaches it."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.consume.consumer import BatchIncomplete
from tests.conftest import TEMPLATE, FakeClock
from tests.integration.faults import inject_errors
from tests.integration.harness import SUCCEEDS, Harness

_stages = itertools.count()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def h(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[Harness]:
    import app
    from chalicelib.runtime import build_runtime, set_runtime
    from chalicelib.settings import Settings

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    stage = f"faults{next(_stages)}"
    session = boto3.session.Session()
    session.client("cloudformation").create_stack(
        StackName=f"taskproc-{stage}",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}],
    )
    names = {
        "TASKS_TABLE": f"taskproc-{stage}-tasks",
        "FLOW_TABLE": f"taskproc-{stage}-flow",
        "SCHEDULES_TABLE": f"taskproc-{stage}-schedules",
        "TASKS_QUEUE": f"taskproc-{stage}-tasks",
    }
    settings = Settings(**names, DEAD_LETTER_QUEUE=f"taskproc-{stage}-dead-letters")
    rt = build_runtime(settings, session=session, clock=clock)
    rt.rng = random.Random(5)
    set_runtime(rt)
    with Client(app.app, stage_name="local") as client:
        yield Harness(client, rt, clock)
    set_runtime(None)


def test_a_dynamodb_error_that_survives_retries_keeps_the_message(h: Harness) -> None:
    h.publish("unlucky", SUCCEEDS)
    with inject_errors(h.rt.store._client, "UpdateItem", status=500, code="InternalServerError") as calls:
        delivery = h.deliver()

    assert calls.count == h.rt.settings.AWS_MAX_ATTEMPTS  # botocore's standard mode, every attempt
    assert isinstance(delivery.raised, BatchIncomplete)
    assert h.task("unlucky")["status"] == "PENDING"
    assert h.depth(h.rt.tasks_queue.url) == 1

    h.reveal(delivery)
    h.deliver()

    assert h.task("unlucky")["status"] == "COMPLETED"
    assert h.task("unlucky")["attempts"] == 1


def test_throttling_that_clears_within_the_retries_is_invisible(h: Harness) -> None:
    h.publish("throttled", SUCCEEDS)
    retries = h.rt.settings.AWS_MAX_ATTEMPTS - 1
    with inject_errors(
        h.rt.store._client, "UpdateItem", status=400, code="ProvisionedThroughputExceededException", times=retries
    ) as calls:
        delivery = h.deliver()

    assert calls.count == retries
    assert delivery.raised is None
    assert h.task("throttled")["status"] == "COMPLETED"


def test_a_completion_that_keeps_failing_leaves_the_task_to_be_taken_over(h: Harness) -> None:
    h.publish("stranded", SUCCEEDS)
    with inject_errors(h.rt.store._client, "UpdateItem", status=503, code="ServiceUnavailable", skip=1):
        delivery = h.deliver()  # acquired and ran, but could not record the outcome

    assert isinstance(delivery.raised, BatchIncomplete)
    assert h.task("stranded")["status"] == "PROCESSING"
    h.clock.advance(h.rt.settings.LEASE_SECONDS + 1)
    h.reveal(delivery)
    h.deliver()

    task: dict[str, Any] = h.task("stranded")
    assert task["status"] == "COMPLETED"
    assert [(a["attempt"], a["outcome"]) for a in task["history"]] == [(1, "expired"), (2, "succeeded")]
