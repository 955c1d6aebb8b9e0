"""The app in this process, against the embedded endpoint in a thread: what the bench counts requests with.

The API is called through Chalice's test client (one call is one API Gateway
request and one API invocation); the consumers run behind the offline stack's
event-source pollers (local.poller), with the batching window of the scenario;
every AWS client is made by a `WireCounter`, so every request is counted as sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from local.config import PROJECT_DIR
from local.launcher import free_port
from tools.bench.cost import Usage, dynamodb_item_bytes

FAKE_AWS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
POLL_WAIT_SECONDS = 2
CONSUMER_CONCURRENCY = 5
# The consumers a scenario runs unless it names others: the default class's and the dead letters'.
CONSUMERS = ("process_tasks", "handle_dead_letters")


@contextmanager
def moto_server() -> Iterator[str]:
    """The embedded endpoint (moto's server, patched as `make run` patches it) in a thread, as AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    from local.atomic_dynamodb import make_writes_atomic
    from local.embedded_sqs import install

    install()
    make_writes_atomic()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in [*FAKE_AWS, "AWS_ENDPOINT_URL"]}
    os.environ.update(FAKE_AWS, AWS_ENDPOINT_URL=url)
    try:
        yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def create_stack(stage: str, visibility: int = 30, max_attempts: int = 3) -> None:
    template = (PROJECT_DIR / "infra" / "resources.yaml").read_text()
    cfn = boto3.client("cloudformation")
    cfn.create_stack(
        StackName=f"taskproc-{stage}",
        TemplateBody=template,
        Parameters=[
            {"ParameterKey": "Stage", "ParameterValue": stage},
            {"ParameterKey": "QueueVisibilityTimeout", "ParameterValue": str(visibility)},
            {"ParameterKey": "MaxAttempts", "ParameterValue": str(max_attempts)},
        ],
    )
    wait_for(
        lambda: cfn.describe_stacks(StackName=f"taskproc-{stage}")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE",
        60,
        "the stack",
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    """Raises: TimeoutError: `condition` stayed false until the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def queue_empty(sqs: Any, url: str) -> bool:
    """No message in the queue: visible, in flight or delayed (a deferral's renewed copy waits delayed)."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(int(attributes[name]) == 0 for name in names)


class StdoutBytes:
    """Stands in for stdout while a scenario runs: counts what the app writes there (its JSON log lines and
    its metric lines), which is what CloudWatch Logs would ingest."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode())
        return len(text)

    def flush(self) -> None:
        pass


# The `local` stage's botocore timeouts (.chalice/config.json): the embedded endpoint on a
# loaded machine can take seconds to answer, and a timed-out attempt retried would be counted
# as a request that AWS, answering in milliseconds, would never see.
EMBEDDED_TIMEOUTS = {"AWS_MAX_ATTEMPTS": 3, "AWS_CONNECT_TIMEOUT_SECONDS": 2.0, "AWS_READ_TIMEOUT_SECONDS": 30.0}


class InProcess:
    """The app with its consumers behind local event-source pollers, in this process, on one stage."""

    def __init__(self, stage: str, **settings: Any) -> None:
        sys.path.insert(0, str(PROJECT_DIR))
        os.environ.update(TASKS_QUEUE=f"taskproc-{stage}-tasks", DEAD_LETTER_QUEUE=f"taskproc-{stage}-dead-letters")
        import app
        from chalicelib.logs import EVENTS_LOGGER
        from chalicelib.settings import Settings

        self.app = app
        self.stage = stage
        self.settings = Settings(
            TASKS_TABLE=f"taskproc-{stage}-tasks",
            FLOW_TABLE=f"taskproc-{stage}-flow",
            SCHEDULES_TABLE=f"taskproc-{stage}-schedules",
            TASKS_QUEUE=f"taskproc-{stage}-tasks",
            DEAD_LETTER_QUEUE=f"taskproc-{stage}-dead-letters",
            **{**EMBEDDED_TIMEOUTS, **settings},
        )
        self.table = boto3.client("dynamodb")
        # Task events go to stdout, which each scenario counts instead of printing.
        logging.getLogger(EVENTS_LOGGER).propagate = False
        self.published_at: dict[str, float] = {}
        self.batch_route = True

    def use(self, usage: Usage) -> None:
        from chalicelib.runtime import build_runtime, set_runtime

        set_runtime(build_runtime(self.settings, session=usage.wire.session()))

    def publish(
        self, usage: Usage, ids: list[str], payload: dict[str, Any], task_type: str | None = None, interval: float = 0.0
    ) -> None:
        """POST /publish per task, `interval` seconds apart.

        Raises:
            AssertionError: a publish was refused.
        """
        from chalice.test import Client

        with Client(self.app.app, stage_name="api") as client:
            for task_id in ids:
                body = {"id": task_id, "payload": payload, **({"type": task_type} if task_type else {})}
                started = time.monotonic()
                self.published_at[task_id] = time.time()
                response = client.http.post(
                    "/publish", body=json.dumps(body), headers={"Content-Type": "application/json"}
                )
                usage.api_requests += 1
                assert response.status_code == 201, response.body
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic() - started)))

    def publish_batches(self, usage: Usage, ids: list[str], payload: dict[str, Any], size: int = 100) -> bool:
        """POST /publish/batch of `size` tasks; False (and single publishes) when the route is not there.

        Raises:
            AssertionError: a task was refused.
        """
        from chalice.test import Client

        with Client(self.app.app, stage_name="api") as client:
            for start in range(0, len(ids), size):
                chunk = ids[start : start + size]
                now = time.time()
                self.published_at.update(dict.fromkeys(chunk, now))
                body = {"tasks": [{"id": task_id, "payload": payload} for task_id in chunk]}
                response = client.http.post(
                    "/publish/batch", body=json.dumps(body), headers={"Content-Type": "application/json"}
                )
                if response.status_code in (403, 404) and start == 0:
                    self.batch_route = False
                    self.publish(usage, ids, payload)
                    return False
                usage.api_requests += 1
                usage.batched_tasks += len(chunk)
                assert response.status_code == 200, response.body
                results = json.loads(response.body)["results"]
                assert all("error" not in result for result in results), results
        return True

    def items(self, prefix: str) -> list[dict[str, Any]]:
        pages = self.table.get_paginator("scan").paginate(
            TableName=self.settings.TASKS_TABLE,
            FilterExpression="begins_with(#i, :p)",
            ExpressionAttributeNames={"#i": "id"},
            ExpressionAttributeValues={":p": {"S": prefix}},
        )
        return [item for page in pages for item in page["Items"]]

    def items_of(self, ids: list[str]) -> list[dict[str, Any]]:
        """The items of `ids` that exist, read by key in BatchGetItems of 100 (strongly consistent)."""
        found: list[dict[str, Any]] = []
        for first in range(0, len(ids), 100):
            request = {
                self.settings.TASKS_TABLE: {
                    "Keys": [{"id": {"S": task_id}} for task_id in ids[first : first + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                answer = self.table.batch_get_item(RequestItems=request)
                found += answer["Responses"].get(self.settings.TASKS_TABLE, [])
                request = answer.get("UnprocessedKeys") or {}
        return found

    def wait_terminal(self, prefix: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """The scenario's items once `count` are terminal.

        Raises:
            TimeoutError: they were not, by the deadline.
        """
        found: list[dict[str, Any]] = []

        def done() -> bool:
            nonlocal found
            found = self.items(prefix)
            return sum(item["status"]["S"] in TERMINAL for item in found) >= count

        wait_for(done, timeout, f"{count} tasks {prefix}* to finish", interval=0.5)
        return found

    def latencies(self, items: list[dict[str, Any]]) -> list[float]:
        """Seconds from publish to COMPLETED, per completed task."""
        return [
            datetime.fromisoformat(item["finishedAt"]["S"]).timestamp() - self.published_at[item["id"]["S"]]
            for item in items
            if item["status"]["S"] == "COMPLETED" and item["id"]["S"] in self.published_at
        ]

    def queue_of(self, function: str) -> str:
        """The queue a consumer function's event source polls."""
        return {
            "process_tasks": self.settings.TASKS_QUEUE,
            "process_high_priority_tasks": self.settings.HIGH_PRIORITY_QUEUE,
            "process_low_priority_tasks": self.settings.LOW_PRIORITY_QUEUE,
            "handle_dead_letters": self.settings.DEAD_LETTER_QUEUE,
        }[function]

    @contextmanager
    def consumers(self, usage: Usage, window: int = 0, functions: tuple[str, ...] = CONSUMERS) -> Iterator[None]:
        """The consumers polling with Lambda's five pollers each, the task consumers with batching `window`."""
        from local.config import load_config
        from local.poller import EventSourceMapping, SqsPoller
        from local.worker import invocation_contexts

        # The local stage's function timeouts: they leave the attempts time after the margin its
        # botocore settings (EMBEDDED_TIMEOUTS) make (chalicelib/consume/deadline.py).
        local_stage = load_config({}, stage="local")

        stop = threading.Event()
        # Every poller thread holds a connection during its long poll (local.worker does the same).
        sqs = usage.wire.session().client("sqs", config=BotoConfig(max_pool_connections=50))
        lock = threading.Lock()
        pollers = []
        for name in functions:
            queue = self.queue_of(name)
            batching = 0 if name == "handle_dead_letters" else window
            function = getattr(self.app, name)

            def invoke(event: dict[str, Any], context: Any, function: Any = function) -> Any:
                with lock:
                    usage.invocations += 1
                return function(event, context)

            timeout = local_stage.lambda_timeout(name)
            mapping = EventSourceMapping(
                name, queue, 10, CONSUMER_CONCURRENCY, timeout, POLL_WAIT_SECONDS, batching_window_seconds=batching
            )
            poller = SqsPoller(sqs, mapping, invoke, invocation_contexts(mapping), "us-east-1", stop)
            assert poller.resolve_queue()
            poller.start()
            pollers.append(poller)
        try:
            yield
        finally:
            stop.set()
            for poller in pollers:
                poller.join(60)

    @contextmanager
    def logging_to(self, usage: Usage) -> Iterator[None]:
        """Count the app's log and metric lines on stdout as CloudWatch Logs bytes."""
        written = StdoutBytes()
        try:
            with contextlib.redirect_stdout(written):  # type: ignore[type-var]
                yield
        finally:
            usage.log_bytes += written.bytes

    def settle(self, usage: Usage, items: list[dict[str, Any]]) -> None:
        """Note the mean item size of the scenario's tasks, which sets the capacity units of each write."""
        if items:
            usage.item_bytes = sum(dynamodb_item_bytes(item) for item in items) / len(items)
