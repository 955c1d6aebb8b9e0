"""The embedded endpoint's SQS hands each message to one receive at a time, as SQS does."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.e2e.stack import Process, free_port, stack_environment, start

pytestmark = pytest.mark.e2e

MESSAGES = 300
RECEIVERS = 30


@pytest.fixture
def sqs(tmp_path: Path) -> Iterator[Any]:
    aws_port = free_port()
    process: Process = start("aws", ["aws"], stack_environment(free_port(), aws_port), tmp_path)
    try:
        process.wait_for_line("aws ready")
        yield boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{aws_port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=RECEIVERS),
        )
    finally:
        process.stop()


def test_concurrent_receives_never_take_the_same_message(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="receive-race", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    for first in range(0, MESSAGES, 10):
        entries = [{"Id": str(n), "MessageBody": str(first + n)} for n in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    deliveries: Counter[str] = Counter()
    lock = threading.Lock()

    def receive_until_empty() -> None:
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not messages:
                return
            with lock:
                deliveries.update(message["MessageId"] for message in messages)

    threads = [threading.Thread(target=receive_until_empty) for _ in range(RECEIVERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(deliveries) == MESSAGES
    assert [message_id for message_id, count in deliveries.items() if count > 1] == []
