"""A Lambda-like driver for the consumers: publish over HTTP, deliver from the real queues."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalice.test import Client

from tests.conftest import FakeClock
from tests.integration.lambda_sqs import Delivery, deliver

SUCCEEDS = {"simulation": {"failureChance": 0}}
FAILS = {"simulation": {"failureChance": 1}}


class Harness:
    """Publishes over HTTP and delivers from the real queues, recording visibility changes."""

    def __init__(self, client: Client, runtime: Any, clock: FakeClock) -> None:
        self.client = client
        self.rt = runtime
        self.clock = clock
        self.sqs = runtime.tasks_queue._client
        self.visibility: dict[str, int] = {}
        self.sqs.meta.events.register(
            "before-parameter-build.sqs.ChangeMessageVisibilityBatch", self._record_visibility
        )

    def _record_visibility(self, params: dict[str, Any], **_: Any) -> None:
        for entry in params["Entries"]:
            self.visibility[entry["ReceiptHandle"]] = entry["VisibilityTimeout"]

    def publish(self, task_id: str, payload: dict[str, Any]) -> None:
        response = self.client.http.post(
            "/publish",
            body=json.dumps({"id": task_id, "payload": payload}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.body

    def send_raw(self, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.rt.tasks_queue.url, MessageBody=body)["MessageId"]

    def deliver(self) -> Delivery:
        return deliver(self.client, "process_tasks", self.sqs, self.rt.tasks_queue.url)

    def deliver_dead_letters(self) -> Delivery:
        return deliver(self.client, "handle_dead_letters", self.sqs, self.rt.dead_letters.url)

    def reveal(self, delivery: Delivery, only: Callable[[str], bool] = lambda body: True) -> None:
        """Make a delivery's messages visible again now, as if their visibility timeout had passed."""
        for record in filter(lambda r: only(r["body"]), delivery.records):
            self.sqs.change_message_visibility(
                QueueUrl=self.rt.tasks_queue.url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )

    def task(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.client.http.get(f"/tasks/{task_id}").body)

    def depth(self, queue_url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def fail_until_last(h: Harness, task_id: str) -> Delivery:
    """Run attempts of a failing task until its last, waiting out each backoff."""
    delivery = h.deliver()
    for _ in range(h.rt.settings.MAX_ATTEMPTS - 1):
        h.clock.advance(h.visibility[delivery.records[0]["receiptHandle"]])
        h.reveal(delivery)
        delivery = h.deliver()
    return delivery
