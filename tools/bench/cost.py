"""What a task costs on AWS: the list prices in one table, the AWS requests counted on the wire, and the price.

Requests are counted where they leave the process (botocore's `before-send`, so a
retry counts as the request it is); API Gateway requests and Lambda invocations
are counted by the harness that makes them. What cannot be counted offline is
assumed, once, in ASSUMPTIONS: how long an invocation is billed, how much each
log line and invocation adds to CloudWatch Logs.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3

# us-east-1 list prices without the free tier, as the README's cost section cites them
# (the figures read from it on PRICES_READ; check the pricing pages before relying on them).
PRICES_READ = "2026-11-25"
PRICES = {
    "api_gateway_request": 3.50 / 1e6,  # REST API, per request
    "lambda_request": 0.20 / 1e6,  # per invocation
    "lambda_gb_second": 0.0000166667,  # x86
    "sqs_request": 0.40 / 1e6,  # standard queue, per request per 64 KiB chunk of payload
    "dynamodb_wru": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_rru": 0.125 / 1e6,  # on-demand read request unit
    "logs_gb": 0.50,  # CloudWatch Logs ingestion, per GB
}
# The README's assumptions for what is not counted: the prod stage's 512 MB; an API call
# billed at 50 ms (plus 1 ms per task of a batch publish, whose puts run side by side);
# a consumer invocation at 100 ms plus its tasks' executionTime (the tasks of a batch run
# side by side); Lambda's START, END and REPORT lines per invocation.
ASSUMPTIONS = {
    "memory_gb": 0.5,
    "api_seconds": 0.050,
    "api_seconds_per_batched_task": 0.001,
    "consumer_seconds": 0.100,
    "platform_log_bytes_per_invocation": 300,
}
SQS_CHUNK_BYTES = 64 * 1024
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
DYNAMODB_READS = {"GetItem", "Query", "Scan"}


class WireCounter:
    """Counts the AWS requests of the sessions it made, per service and operation, as they are sent."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.sqs_chunks = 0
        self.consistent_reads = 0
        self.empty_receives = 0
        self._lock = threading.Lock()

    def session(self) -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("before-send", self._sent)
        session.events.register("after-call.sqs.ReceiveMessage", self._received)
        return session

    def _sent(self, event_name: str, request: Any, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        body = request.body or b""
        with self._lock:
            self.requests[(service, operation)] += 1
            if service == "sqs":
                self.sqs_chunks += max(1, math.ceil(len(body) / SQS_CHUNK_BYTES))
            if service == "dynamodb" and operation in DYNAMODB_READS:
                self.consistent_reads += bool(json.loads(body or b"{}").get("ConsistentRead"))

    def _received(self, parsed: dict[str, Any], **_: Any) -> None:
        if not parsed.get("Messages"):
            with self._lock:
                self.empty_receives += 1

    def of(self, service: str) -> dict[str, int]:
        return {operation: n for (name, operation), n in sorted(self.requests.items()) if name == service}


@dataclass
class Usage:
    """What a scenario used, in all; `tasks` divides it."""

    tasks: int
    api_requests: int = 0
    batched_tasks: int = 0  # tasks that came in batch publishes
    invocations: int = 0  # consumer invocations (both queues)
    execution_seconds: float = 0.0  # the simulated work, per invocation summed
    wire: WireCounter = field(default_factory=WireCounter)
    item_bytes: float = 0.0  # the mean size of the scenario's task items
    log_bytes: int = 0

    def per_task(self) -> dict[str, float]:
        """Units of each priced thing per task."""
        n = self.tasks
        wire = self.wire
        writes = sum(wire.of("dynamodb").get(op, 0) for op in DYNAMODB_WRITES)
        reads = sum(wire.of("dynamodb").get(op, 0) for op in DYNAMODB_READS)
        wru_per_write = max(1, math.ceil(self.item_bytes / 1024))
        rru_per_read = max(1, math.ceil(self.item_bytes / 4096))
        eventual = reads - wire.consistent_reads
        api_seconds = self.api_requests * ASSUMPTIONS["api_seconds"]
        api_seconds += self.batched_tasks * ASSUMPTIONS["api_seconds_per_batched_task"]
        consumer_seconds = self.invocations * ASSUMPTIONS["consumer_seconds"] + self.execution_seconds
        lambda_invocations = self.api_requests + self.invocations
        log_bytes = self.log_bytes + lambda_invocations * ASSUMPTIONS["platform_log_bytes_per_invocation"]
        return {
            "api_requests": self.api_requests / n,
            "lambda_invocations": lambda_invocations / n,
            "consumer_invocations": self.invocations / n,
            "gb_seconds": ASSUMPTIONS["memory_gb"] * (api_seconds + consumer_seconds) / n,
            # Billed seconds per task by function, as assumed above: what Lambda concurrency is made of.
            "api_seconds": api_seconds / n,
            "consumer_seconds": consumer_seconds / n,
            "sqs_requests": sum(wire.of("sqs").values()) / n,
            "sqs_billed": (wire.sqs_chunks - wire.empty_receives) / n,
            "idle_receives": wire.empty_receives / n,
            "dynamodb_requests": sum(wire.of("dynamodb").values()) / n,
            "wru": writes * wru_per_write / n,
            "rru": (wire.consistent_reads + eventual * 0.5) * rru_per_read / n,
            "log_bytes": log_bytes / n,
        }


def dollars_per_million(units: dict[str, float]) -> dict[str, float]:
    """Dollars per million tasks, by service, from the units per task of `Usage.per_task`."""
    million = 1e6
    split = {
        "API Gateway": units["api_requests"] * PRICES["api_gateway_request"],
        "Lambda": units["lambda_invocations"] * PRICES["lambda_request"]
        + units["gb_seconds"] * PRICES["lambda_gb_second"],
        "SQS": units["sqs_billed"] * PRICES["sqs_request"],
        "DynamoDB": units["wru"] * PRICES["dynamodb_wru"] + units["rru"] * PRICES["dynamodb_rru"],
        "CloudWatch Logs": units["log_bytes"] / 1e9 * PRICES["logs_gb"],
    }
    priced = {service: value * million for service, value in split.items()}
    priced["total"] = sum(priced.values())
    return priced


def dynamodb_item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: names plus values (numbers about a byte per two digits)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_bytes(v) + 1 for v in inner)
    return len(json.dumps(inner))  # sets: close enough for a price
