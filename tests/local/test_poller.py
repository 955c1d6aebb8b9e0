"""The local event source mapping against moto's SQS: the event it builds and how it settles a batch."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.poller import EventSourceMapping, SqsPoller, messages_to_delete

QUEUE = "poller-test"


class Recorder:
    """A handler that records its events and answers as told."""

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer = answer
        self.error = error

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        if self.error is not None:
            raise self.error
        return self.answer(event) if callable(self.answer) else self.answer


@pytest.fixture
def sqs(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        client.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "30"})
        yield client


def _poller(sqs: Any, handler: Recorder, report: bool = False) -> SqsPoller:
    mapping = EventSourceMapping(
        function_name="taskproc-test-handler",
        queue_name=QUEUE,
        batch_size=10,
        concurrency=1,
        timeout_seconds=30,
        poll_wait_seconds=0,
        report_batch_item_failures=report,
    )
    poller = SqsPoller(sqs, mapping, handler, lambda: None, "us-east-1", threading.Event())
    assert poller.resolve_queue()
    return poller


def _send(sqs: Any, count: int) -> None:
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for n in range(count):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=f'{{"n": {n}}}',
            MessageAttributes={"origin": {"DataType": "String", "StringValue": "test"}},
        )


def _counts(sqs: Any) -> tuple[int, int]:
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_event_has_the_shape_of_a_lambda_sqs_event(sqs: Any) -> None:
    _send(sqs, 1)
    handler = Recorder()

    _poller(sqs, handler).poll_once()

    (record,) = handler.events[0]["Records"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}"
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["origin"] == {
        "stringValue": "test",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }


def test_a_batch_whose_handler_returns_is_deleted_whole(sqs: Any) -> None:
    _send(sqs, 3)

    deleted = _poller(sqs, Recorder()).poll_once()

    assert deleted is not None and len(deleted) == 3
    assert _counts(sqs) == (0, 0)


def test_a_batch_whose_handler_raises_is_left_whole(sqs: Any) -> None:
    _send(sqs, 3)

    deleted = _poller(sqs, Recorder(error=RuntimeError("boom"))).poll_once()

    assert deleted == []
    assert _counts(sqs) == (0, 3)


def test_reported_item_failures_are_kept_and_the_rest_deleted(sqs: Any) -> None:
    _send(sqs, 3)

    def keep_first(event: dict[str, Any]) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    handler = Recorder(answer=keep_first)
    deleted = _poller(sqs, handler, report=True).poll_once()

    assert deleted is not None and len(deleted) == 2
    assert handler.events[0]["Records"][0]["messageId"] not in deleted
    assert _counts(sqs) == (0, 1)


def test_an_item_failure_naming_no_message_of_the_batch_keeps_the_whole_batch(sqs: Any) -> None:
    _send(sqs, 2)

    deleted = _poller(sqs, Recorder(answer={"batchItemFailures": [{"itemIdentifier": ""}]}), report=True).poll_once()

    assert deleted == []
    assert _counts(sqs) == (0, 2)


def test_item_failures_are_ignored_when_the_mapping_does_not_report_them() -> None:
    records = [{"messageId": "a"}, {"messageId": "b"}]
    response = {"batchItemFailures": [{"itemIdentifier": "a"}]}

    assert messages_to_delete(records, response, report_batch_item_failures=False) == ["a", "b"]
    assert messages_to_delete(records, response, report_batch_item_failures=True) == ["b"]
    assert messages_to_delete(records, {"batchItemFailures": []}, report_batch_item_failures=True) == ["a", "b"]
    assert messages_to_delete(records, None, report_batch_item_failures=True) == ["a", "b"]
