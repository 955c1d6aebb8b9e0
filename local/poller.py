"""A local event source mapping: what Lambda does between an SQS queue and a function.

Per poller (Lambda runs several per event source, so several batches are in flight):
long-poll ReceiveMessage for up to the batch size with every system attribute,
gather for the batching window, build the Lambda SQS event, invoke the handler,
then settle the batch:

- the handler returns: the whole batch is deleted with DeleteMessageBatch; with
  ReportBatchItemFailures on the mapping, all but the reported messages are;
- the handler raises, or runs past the function's timeout: nothing is deleted,
  and the messages come back when their visibility timeout ends.

Nothing else touches the messages: no visibility change, no retry of its own.

The batching window (MaximumBatchingWindowInSeconds) is Lambda's: with a window
of 0 a batch is invoked as soon as a receive returns anything; with a window of W
seconds, the poller keeps receiving from its first message until it holds the
batch size or W seconds have passed, whichever comes first. SQS long polls wait
whole seconds, so the last fraction of a window is slept and then collected by
one receive that does not wait: the batch is invoked at the window's end, not up
to a second later.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

SQS_BATCH_LIMIT = 10
# After an endpoint error, wait this long before polling again (Lambda backs off too).
ERROR_PAUSE_SECONDS = 1.0
QUEUE_PATIENCE_SECONDS = 5.0

Handler = Callable[[dict[str, Any], Any], Any]
ContextFactory = Callable[[], Any]


@dataclass(frozen=True)
class EventSourceMapping:
    """One SQS event source of one function, as `@app.on_sqs_message` and the stage configure it."""

    function_name: str
    queue_name: str
    batch_size: int
    concurrency: int
    timeout_seconds: int
    poll_wait_seconds: int
    report_batch_item_failures: bool = False
    batching_window_seconds: int = 0


class InvalidBatchResponse(Exception):
    """The handler's partial-batch response names no message of the batch; Lambda keeps the whole batch."""


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda's SQS event spells attributes in camel case and base64-encodes binary values.
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ReceiveMessage message as a record of Lambda's SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def messages_to_delete(records: list[dict[str, Any]], response: Any, report_batch_item_failures: bool) -> list[str]:
    """The message ids of a batch whose handler returned `response`, that the mapping deletes.

    Without ReportBatchItemFailures the response is ignored and every message is deleted.
    With it, these rules are Lambda's: an empty or missing response or list deletes all;
    a failure naming no message of the batch keeps all.

    Raises:
        InvalidBatchResponse: the partial-batch response is malformed; the whole batch is kept.
    """
    ids = [record["messageId"] for record in records]
    if not report_batch_item_failures:
        if isinstance(response, dict) and response.get("batchItemFailures"):
            logger.warning(
                "the handler reported batch item failures, but the mapping does not report them: "
                "as on AWS, the whole batch is deleted"
            )
        return ids
    if response is None or (isinstance(response, dict) and not response.get("batchItemFailures")):
        return ids
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        raise InvalidBatchResponse(f"batchItemFailures must be a list, not {type(failures).__name__}")
    kept: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            raise InvalidBatchResponse(f"batchItemFailures names {identifier!r}, which is not in the batch")
        kept.add(identifier)
    return [message_id for message_id in ids if message_id not in kept]


class SqsPoller:
    """Runs one event source mapping on `mapping.concurrency` threads until `stop` is set.

    A batch already received when `stop` is set is still invoked and settled, so a
    batch is never half-settled by a shutdown.
    """

    def __init__(
        self,
        sqs: Any,
        mapping: EventSourceMapping,
        handler: Handler,
        context_factory: ContextFactory,
        region: str,
        stop: threading.Event,
    ) -> None:
        self._sqs = sqs
        self.mapping = mapping
        self._handler = handler
        self._context_factory = context_factory
        self._region = region
        self._stop = stop
        self._threads: list[threading.Thread] = []
        self._queue_url = ""
        self._queue_arn = ""

    def resolve_queue(self) -> bool:
        """Look the queue up, retrying until it exists or `stop` is set; False when stopped first."""
        # The pieces start together, so the queue is usually a moment away: say so only when it is not.
        warn_at = time.monotonic() + QUEUE_PATIENCE_SECONDS
        while not self._stop.is_set():
            try:
                self._queue_url = self._sqs.get_queue_url(QueueName=self.mapping.queue_name)["QueueUrl"]
                attributes = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])
                self._queue_arn = attributes["Attributes"]["QueueArn"]
                return True
            except (ClientError, BotoCoreError) as exc:
                if time.monotonic() > warn_at:
                    logger.warning("still waiting for queue %s: %s", self.mapping.queue_name, exc)
                    warn_at = time.monotonic() + 10 * QUEUE_PATIENCE_SECONDS
                self._stop.wait(ERROR_PAUSE_SECONDS / 4)
        return False

    def start(self) -> None:
        for number in range(self.mapping.concurrency):
            thread = threading.Thread(target=self._run, name=f"{self.mapping.function_name}-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the pollers to finish their batches; True when all have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except (ClientError, BotoCoreError) as exc:
                logger.warning("%s: receive failed: %s", self.mapping.function_name, exc)
                self._stop.wait(ERROR_PAUSE_SECONDS)

    def poll_once(self) -> list[str] | None:
        """One receive, and the invocation of what it got; the ids deleted, or None when nothing came.

        Raises:
            ClientError, BotoCoreError: the receive failed (nothing was invoked).
        """
        messages = self.gather()
        return self.invoke(messages) if messages else None

    def gather(self) -> list[dict[str, Any]]:
        """One batch: a long poll, then more receives until the batch is full or the batching window ends.

        Raises:
            ClientError, BotoCoreError: the first receive failed (a later one ends the gathering early).
        """
        messages = self._receive(self.mapping.batch_size, self.mapping.poll_wait_seconds)
        window = self.mapping.batching_window_seconds
        if not messages or window <= 0:
            return messages
        deadline = time.monotonic() + window
        while len(messages) < self.mapping.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if remaining >= 1:
                wait = int(remaining)
            else:
                # A long poll waits whole seconds: sleep the rest of the window, then take what came.
                self._stop.wait(remaining)
                wait = 0
            try:
                messages += self._receive(self.mapping.batch_size - len(messages), wait)
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "%s: receive failed while batching; invoking what it has: %s", self.mapping.function_name, exc
                )
                break
            if wait == 0:
                break
        return messages

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(count, SQS_BATCH_LIMIT),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def invoke(self, messages: list[dict[str, Any]]) -> list[str]:
        """Invoke the handler with one batch and settle it; returns the ids deleted."""
        records = [lambda_record(message, self._queue_arn, self._region) for message in messages]
        name = self.mapping.function_name
        started = time.monotonic()
        try:
            response = self._handler({"Records": records}, self._context_factory())
        except Exception as exc:  # noqa: BLE001 - any error of the function keeps the batch, as on Lambda
            logger.info("%s: %d records, raised %s: all left", name, len(records), _brief(exc))
            return []
        elapsed = time.monotonic() - started
        if elapsed > self.mapping.timeout_seconds:
            # Lambda would have stopped the function at its timeout, which keeps the batch.
            logger.warning(
                "%s: ran %.1f s, past its %d s timeout: all left", name, elapsed, self.mapping.timeout_seconds
            )
            return []
        try:
            deleted = messages_to_delete(records, response, self.mapping.report_batch_item_failures)
        except InvalidBatchResponse as exc:
            logger.warning("%s: %s: all left to their visibility timeout", name, exc)
            return []
        self._delete({r["messageId"]: r["receiptHandle"] for r in records if r["messageId"] in deleted})
        logger.info("%s: %d records, returned: %d deleted", name, len(records), len(deleted))
        return deleted

    def _delete(self, receipts: dict[str, str]) -> None:
        entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(receipts.values())]
        ids, name = list(receipts), self.mapping.function_name
        for start in range(0, len(entries), SQS_BATCH_LIMIT):
            chunk = entries[start : start + SQS_BATCH_LIMIT]
            try:
                response = self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=chunk)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("%s: DeleteMessageBatch failed, those messages return: %s", name, exc)
                continue
            for failed in response.get("Failed", []):
                logger.warning("%s: message %s not deleted: %s", name, ids[int(failed["Id"])], failed.get("Message"))


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}({text[:200]})"
