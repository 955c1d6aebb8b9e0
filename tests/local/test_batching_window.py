"""The poller's batching window, as Lambda's MaximumBatchingWindowInSeconds: gather until full or the window ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from chalice import Chalice
from moto import mock_aws

from local.config import load_config
from local.poller import EventSourceMapping, SqsPoller
from local.worker import event_source_mappings

QUEUE = "window-test"


@pytest.fixture
def sqs(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        client.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "30"})
        yield client


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.invoked_at: list[float] = []

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.batches.append(len(event["Records"]))
        self.invoked_at.append(time.monotonic())


def _poller(sqs: Any, handler: Recorder, window: int, batch_size: int = 10) -> SqsPoller:
    mapping = EventSourceMapping(
        function_name="taskproc-test-handler",
        queue_name=QUEUE,
        batch_size=batch_size,
        concurrency=1,
        timeout_seconds=30,
        poll_wait_seconds=1,
        batching_window_seconds=window,
    )
    poller = SqsPoller(sqs, mapping, handler, lambda: None, "us-east-1", threading.Event())
    assert poller.resolve_queue()
    return poller


def _send(sqs: Any, count: int, after: float = 0.0) -> threading.Thread | None:
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]

    def send() -> None:
        time.sleep(after)
        for n in range(count):
            sqs.send_message(QueueUrl=url, MessageBody=str(n))

    if after == 0:
        send()
        return None
    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_window_of_zero_invokes_as_soon_as_a_receive_returns(sqs: Any) -> None:
    _send(sqs, 1)
    late = _send(sqs, 1, after=0.5)
    handler = Recorder()
    started = time.monotonic()

    _poller(sqs, handler, window=0).poll_once()

    assert handler.batches == [1]
    assert handler.invoked_at[0] - started < 0.5  # before the second message exists
    assert late is not None
    late.join()


def test_a_window_gathers_what_arrives_before_it_ends_into_one_invocation(sqs: Any) -> None:
    _send(sqs, 1)
    late = _send(sqs, 2, after=0.3)
    handler = Recorder()
    started = time.monotonic()

    _poller(sqs, handler, window=1).poll_once()

    assert handler.batches == [3]
    # Invoked when the window ended: not before it, and not a whole long poll after it.
    assert 0.9 <= handler.invoked_at[0] - started < 1.9
    assert late is not None
    late.join()


def test_a_window_ends_early_when_the_batch_is_full(sqs: Any) -> None:
    _send(sqs, 3)
    late = _send(sqs, 7, after=0.2)
    handler = Recorder()
    started = time.monotonic()

    _poller(sqs, handler, window=5).poll_once()

    assert handler.batches == [10]
    assert handler.invoked_at[0] - started < 4
    assert late is not None
    late.join()


def test_a_window_with_nothing_more_to_gather_invokes_what_it_has_when_it_ends(sqs: Any) -> None:
    _send(sqs, 2)
    handler = Recorder()
    started = time.monotonic()

    _poller(sqs, handler, window=2).poll_once()

    assert handler.batches == [2]
    assert 1.9 <= handler.invoked_at[0] - started < 2.9


def test_a_window_never_gathers_more_than_the_batch_size(sqs: Any) -> None:
    _send(sqs, 8)
    handler = Recorder()

    _poller(sqs, handler, window=1, batch_size=5).poll_once()

    assert handler.batches == [5]


def test_the_worker_takes_the_window_from_the_decorator() -> None:
    app = Chalice(app_name="taskproc")

    @app.on_sqs_message(queue="q", batch_size=10, maximum_batching_window_in_seconds=3)
    def consume(event: Any) -> None:
        return None

    config = load_config({"STAGE": "local"})
    ((mapping, _),) = event_source_mappings(SimpleNamespace(app=app, consume=consume), config)

    assert mapping.batching_window_seconds == 3


@pytest.mark.parametrize("window", ["0", "1"])
def test_the_stage_setting_reaches_the_task_consumers_decorator(monkeypatch: pytest.MonkeyPatch, window: str) -> None:
    from chalicelib.settings import wiring

    monkeypatch.setenv("CONSUMER_MAX_BATCHING_WINDOW_SECONDS", window)

    assert wiring().batching_window_seconds == int(window)


def test_every_stage_sets_a_window_lambda_accepts() -> None:
    from local.config import chalice_config

    for stage in ("dev", "prod", "local"):
        window = int(chalice_config(stage).environment_variables["CONSUMER_MAX_BATCHING_WINDOW_SECONDS"])
        assert 0 <= window <= 300, f"stage {stage}: a window of {window} s"
