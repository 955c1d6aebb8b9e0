"""Deliver real SQS messages to a handler the way Lambda's event source mapping does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalice.test import Client

from local.poller import lambda_record


@dataclass
class Delivery:
    records: list[dict[str, Any]]
    returned: Any = None
    raised: Exception | None = None


def lambda_records(sqs: Any, queue_url: str, max_messages: int = 10) -> list[dict[str, Any]]:
    """Receive up to `max_messages` and shape them as the records of a Lambda SQS event."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    # Shaped by the offline event source's own function: Lambda's spelling of attributes.
    return [lambda_record(message, arn, "us-east-1") for message in response.get("Messages", [])]


def deliver(client: Client, function: str, sqs: Any, queue_url: str, max_messages: int = 10) -> Delivery:
    """One poll: invoke `function` with what the queue holds, then delete the whole batch
    if it returned, only the unreported records if it returned batchItemFailures, and
    nothing if it raised."""
    records = lambda_records(sqs, queue_url, max_messages)
    delivery = Delivery(records)
    if not records:
        return delivery
    try:
        delivery.returned = client.lambda_.invoke(function, {"Records": records}).payload
    except Exception as exc:  # noqa: BLE001 - the mapping keeps the batch whatever was raised
        delivery.raised = exc
        return delivery
    kept = {item["itemIdentifier"] for item in (delivery.returned or {}).get("batchItemFailures", [])}
    done = [r for r in records if r["messageId"] not in kept]
    if done:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(done)],
        )
    return delivery
