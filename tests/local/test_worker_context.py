"""The offline worker's Lambda contexts: one per invocation, counting down from the function's timeout."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.config import load_config
from local.poller import EventSourceMapping, SqsPoller
from local.worker import invocation_contexts

QUEUE = "context-test"
TIMEOUT_SECONDS = 30


class StillClock:
    """A time source moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def sqs(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        client.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "30"})
        yield client


def test_each_invocation_s_context_starts_its_clock_when_the_batch_is_invoked_and_counts_down(sqs: Any) -> None:
    clock = StillClock()
    mapping = EventSourceMapping("taskproc-local-process_tasks", QUEUE, 10, 1, TIMEOUT_SECONDS, 0)
    seen: list[float] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        seen.append(context.get_remaining_time_in_millis())
        clock.now += 2
        seen.append(context.get_remaining_time_in_millis())

    poller = SqsPoller(sqs, mapping, handler, invocation_contexts(mapping, clock), "us-east-1", threading.Event())
    assert poller.resolve_queue()
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for _ in range(2):
        clock.now += 100  # the poller waited: that is not the invocation's time
        sqs.send_message(QueueUrl=url, MessageBody="{}")
        assert poller.poll_once()

    assert seen == [30_000, 28_000, 30_000, 28_000]


def test_the_task_consumer_s_timeout_is_the_stage_s_and_fits_its_margin() -> None:
    from chalicelib.consume.deadline import margin_seconds
    from chalicelib.settings import Settings

    config = load_config({}, stage="local")
    timeout = config.lambda_timeout("process_tasks")
    environment = config.app_environment
    settings = Settings(**{name: value for name, value in environment.items() if name in Settings.model_fields})

    assert str(timeout) == environment["CONSUMER_TIMEOUT_SECONDS"]
    assert timeout - margin_seconds(settings) > float(environment["LEASE_SECONDS"])
