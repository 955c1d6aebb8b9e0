"""`make bench`: AWS requests per task, batch wall time, cold start and offline throughput.

Figures, not pass or fail. Everything runs against moto's server on this machine,
so absolute times are moto's and this machine's; the ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from tools.stack import PROJECT_DIR, free_port, offline_stack

FAKE_AWS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class RequestCounter:
    """Counts API calls (not retries) per operation, by botocore's before-call event."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    def session(self) -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("before-call", self)
        return session


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from local.atomic_sqs import make_receives_atomic

    make_receives_atomic()  # as the offline stack does: one receive per message at a time
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


def create_stack(stage: str, visibility: int = 30) -> None:
    template = (PROJECT_DIR / "infra" / "resources.yaml").read_text()
    boto3.client("cloudformation").create_stack(
        StackName=f"taskproc-{stage}",
        TemplateBody=template,
        Parameters=[
            {"ParameterKey": "Stage", "ParameterValue": stage},
            {"ParameterKey": "QueueVisibilityTimeout", "ParameterValue": str(visibility)},
        ],
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)


class InProcess:
    """The app with its consumers behind local event-source pollers, in this process, on one stage."""

    def __init__(self, stage: str, **settings: Any) -> None:
        sys.path.insert(0, str(PROJECT_DIR))
        os.environ.update(TASKS_QUEUE=f"taskproc-{stage}-tasks", DEAD_LETTER_QUEUE=f"taskproc-{stage}-dead-letters")
        import app
        from chalicelib.logs import EVENTS_LOGGER
        from chalicelib.settings import Settings

        # One log line per task event costs more than the work measured here.
        logging.getLogger(EVENTS_LOGGER).setLevel(logging.WARNING)
        self.app = app
        self.stage = stage
        self.settings = Settings(
            TASKS_TABLE=f"taskproc-{stage}-tasks",
            TASKS_QUEUE=f"taskproc-{stage}-tasks",
            DEAD_LETTER_QUEUE=f"taskproc-{stage}-dead-letters",
            **settings,
        )
        self.table = boto3.client("dynamodb")

    def use(self, counter: RequestCounter) -> None:
        from chalicelib.runtime import build_runtime, set_runtime

        set_runtime(build_runtime(self.settings, session=counter.session()))

    def publish(self, ids: list[str], payload: dict[str, Any]) -> None:
        from chalice.test import Client

        with Client(self.app.app, stage_name="local") as client:
            for task_id in ids:
                body = json.dumps({"id": task_id, "payload": payload})
                response = client.http.post("/publish", body=body, headers={"Content-Type": "application/json"})
                assert response.status_code == 201, response.body

    def terminal_count(self) -> int:
        pages = self.table.get_paginator("scan").paginate(
            TableName=self.settings.TASKS_TABLE,
            Select="COUNT",
            FilterExpression="#s IN (:c, :f)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": {"S": "COMPLETED"}, ":f": {"S": "FAILED"}},
        )
        return sum(page["Count"] for page in pages)

    @contextmanager
    def consumers(self, event_source: RequestCounter, dead_letters: bool = False) -> Iterator[None]:
        from chalice.local import LambdaContext

        from local.poller import EventSourceMapping, SqsPoller

        stop = threading.Event()
        sqs = event_source.session().client("sqs")
        sources = [("process_tasks", self.settings.TASKS_QUEUE)]
        if dead_letters:
            sources.append(("handle_dead_letters", self.settings.DEAD_LETTER_QUEUE))
        pollers = []
        for name, queue in sources:
            mapping = EventSourceMapping(name, queue, 10, 5, 30, 1)
            poller = SqsPoller(
                sqs, mapping, getattr(self.app, name), lambda n=name: LambdaContext(n, 256), "us-east-1", stop
            )
            assert poller.resolve_queue()
            poller.start()
            pollers.append(poller)
        try:
            yield
        finally:
            stop.set()
            for poller in pollers:
                poller.join(30)


def requests_per_task(tasks: int, failing: int) -> dict[str, Any]:
    """AWS calls per task on the success path, and per failed attempt, counted on the clients."""
    with moto_server():
        create_stack("bench")
        bench = InProcess("bench", MAX_ATTEMPTS=3, BACKOFF_BASE_SECONDS=1, BACKOFF_MAX_SECONDS=1, LEASE_SECONDS=10)
        publish, consume, event_source = RequestCounter(), RequestCounter(), RequestCounter()
        bench.use(publish)
        bench.publish([f"ok-{n}" for n in range(tasks)], {"simulation": {"failureChance": 0}})
        bench.use(consume)
        with bench.consumers(event_source):
            wait_for(lambda: bench.terminal_count() >= tasks, 600, "the success-path tasks")

        fail_publish, fail_consume, fail_source = RequestCounter(), RequestCounter(), RequestCounter()
        bench.use(fail_publish)
        bench.publish([f"bad-{n}" for n in range(failing)], {"simulation": {"failureChance": 1}})
        bench.use(fail_consume)
        with bench.consumers(fail_source, dead_letters=True):
            wait_for(lambda: bench.terminal_count() >= tasks + failing, 600, "the failing tasks")
            # Each failing task's message still has to reach the dead-letter queue and its handler.
            dlq = boto3.client("sqs").get_queue_url(QueueName=bench.settings.DEAD_LETTER_QUEUE)["QueueUrl"]
            wait_for(lambda: fail_consume.calls["GetItem"] >= failing and _depth(dlq) == 0, 120, "the dead letters")
    attempts = failing * 3
    return {
        "tasks": tasks,
        "failing_tasks": failing,
        "publish_per_task": _per(publish.calls, tasks),
        "consume_per_task": _per(consume.calls, tasks),
        "event_source_per_task": _per(event_source.calls, tasks),
        "failed_attempt_consume": _per(fail_consume.calls, attempts),
        "failed_attempt_event_source": _per(fail_source.calls, attempts),
        "floor": {"publish": 2.0, "consume": 2.1},
        "publish_total_per_task": sum(publish.calls.values()) / tasks,
        "consume_total_per_task": (sum(consume.calls.values()) + event_source.calls["DeleteMessageBatch"]) / tasks,
    }


def _depth(queue_url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _per(calls: Counter[str], count: int) -> dict[str, float]:
    return {name: round(value / count, 3) for name, value in sorted(calls.items())}


def batch_wall_time(rounds: int = 5) -> dict[str, Any]:
    """Wall time of one consumer batch of ten 400 ms tasks."""
    from chalice.local import LambdaContext

    from local.poller import lambda_record

    times = []
    with moto_server():
        create_stack("batch")
        bench = InProcess("batch", DEFAULT_FAILURE_CHANCE=0)
        bench.use(RequestCounter())
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=bench.settings.TASKS_QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for round_ in range(rounds):
            bench.publish([f"b{round_}-{n}" for n in range(10)], {"simulation": {"executionTime": 400}})
            messages: list[dict[str, Any]] = []
            while len(messages) < 10:
                messages += sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10 - len(messages), MessageSystemAttributeNames=["All"]
                ).get("Messages", [])
            event = {"Records": [lambda_record(m, arn, "us-east-1") for m in messages]}
            started = time.perf_counter()
            bench.app.process_tasks(event, LambdaContext("process_tasks", 256))
            times.append(time.perf_counter() - started)
    return {"rounds": rounds, "median_ms": statistics.median(times) * 1000, "ideal_ms": 400, "serial_ms": 4000}


COLD_APP = """
import json, time
started = time.perf_counter()
import app
imported = time.perf_counter()
event = {"resource": "/health", "path": "/health", "httpMethod": "GET", "headers": {}, "multiValueHeaders": {},
         "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
         "stageVariables": None, "body": None, "isBase64Encoded": False,
         "requestContext": {"resourcePath": "/health", "httpMethod": "GET", "path": "/api/health", "apiId": "bench",
                            "stage": "api", "identity": {"sourceIp": "127.0.0.1"}}}
response = app.app(event, None)
assert response["statusCode"] == 200, response
health = time.perf_counter()
import boto3
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName="taskproc-cold-tasks")["QueueUrl"]
message = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"], WaitTimeSeconds=5)["Messages"][0]
record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
          "attributes": message["Attributes"], "messageAttributes": {}, "eventSource": "aws:sqs"}
health_done = time.perf_counter()
app.process_tasks({"Records": [record]}, None)
finished = time.perf_counter()
print(json.dumps({"import": imported - started, "health": health - imported, "batch": finished - health_done,
                  "total": finished - started - (health_done - health)}))
"""

COLD_FLOOR = """
import json, time
started = time.perf_counter()
import boto3, pydantic, chalice
boto3.client("dynamodb"); boto3.client("sqs")
print(json.dumps({"total": time.perf_counter() - started}))
"""


def cold_start(rounds: int = 5) -> dict[str, Any]:
    """A fresh interpreter importing app, serving GET /health and one consumer batch, against the floor."""
    results: dict[str, list[float]] = {"import": [], "health": [], "batch": [], "total": [], "floor": []}
    with moto_server():
        create_stack("cold")
        env = {
            **os.environ,
            "TASKS_TABLE": "taskproc-cold-tasks",
            "TASKS_QUEUE": "taskproc-cold-tasks",
            "DEAD_LETTER_QUEUE": "taskproc-cold-dead-letters",
            "DEFAULT_FAILURE_CHANCE": "0",
        }
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName="taskproc-cold-tasks")["QueueUrl"]
        for n in range(rounds):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": f"cold-{n}", "payload": {}}))
            for script, key in ((COLD_APP, "app"), (COLD_FLOOR, "floor")):
                output = subprocess.run(
                    [sys.executable, "-c", script], cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True
                ).stdout
                figures = json.loads(output.strip().splitlines()[-1])
                if key == "floor":
                    results["floor"].append(figures["total"])
                else:
                    for name in ("import", "health", "batch", "total"):
                        results[name].append(figures[name])
    medians = {name: statistics.median(values) * 1000 for name, values in results.items()}
    medians["ratio"] = medians["total"] / medians["floor"]
    return {"rounds": rounds, "median_ms": medians}


def offline_throughput(sizes: list[int], out: Path) -> list[dict[str, Any]]:
    """Tasks per second through the offline stack, beside the same AWS calls issued directly."""
    from tools.loadtest import LoadOptions, run

    figures = []
    for size in sizes:
        with offline_stack(out / f"stack-{size}.log", DEFAULT_FAILURE_CHANCE="0") as stack:
            options = LoadOptions(
                url=stack.api_url,
                tasks=size,
                concurrency=16,
                failure_chance=0,
                execution_time=0,
                deadline_seconds=1800,
                poll_interval=1.0,
                progress=False,
            )
            started = time.monotonic()
            summary, _ = run(options)
            elapsed = time.monotonic() - started
            os.environ.update(FAKE_AWS)
            floor = raw_floor(stack.aws_url, size)
        figures.append(
            {
                "tasks": size,
                "terminal": sum(summary.by_status.values()),
                "seconds": round(elapsed, 1),
                "tasks_per_second": round(summary.throughput_per_second, 1),
                "floor_tasks_per_second": round(floor, 1),
                "ratio": round(summary.throughput_per_second / floor, 3),
            }
        )
    return figures


def raw_floor(endpoint: str, size: int, threads: int = 16, backlog: int = 200, deadline: float = 900) -> float:
    """The same calls the product makes per task, issued directly: PutItem and SendMessage to publish;
    receive, two UpdateItems and a share of DeleteMessageBatch to consume. Tasks per second.

    Publishing waits while `backlog` messages are unconsumed: moto scans a whole queue per
    receive, so a deep queue would measure moto, not the calls.
    """
    from concurrent.futures import ThreadPoolExecutor

    from botocore.config import Config

    config = Config(max_pool_connections=threads * 2, read_timeout=30, retries={"mode": "standard"})
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, config=config)
    sqs = boto3.client("sqs", endpoint_url=endpoint, config=config)
    name = f"floor-{size}-{int(time.time())}"
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    room = threading.Semaphore(backlog)
    consumed = Counter[str]()
    lock = threading.Lock()
    started = time.monotonic()
    ends = started + deadline

    def publish(n: int) -> None:
        while not room.acquire(timeout=1):
            if time.monotonic() > ends:
                return
        ddb.put_item(TableName=name, Item={"id": {"S": str(n)}, "status": {"S": "PENDING"}})
        sqs.send_message(QueueUrl=url, MessageBody=str(n))

    def consume() -> None:
        while consumed["n"] < size and time.monotonic() < ends:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                for status in ("PROCESSING", "COMPLETED"):
                    ddb.update_item(
                        TableName=name,
                        Key={"id": {"S": message["Body"]}},
                        UpdateExpression="SET #s = :s",
                        ExpressionAttributeNames={"#s": "status"},
                        ExpressionAttributeValues={":s": {"S": status}},
                    )
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
                with lock:
                    consumed["n"] += len(messages)
                for _ in messages:
                    room.release()

    with ThreadPoolExecutor(threads + 5) as pool:
        consumers = [pool.submit(consume) for _ in range(5)]
        list(pool.map(publish, range(size)))
        for future in consumers:
            future.result()
    return consumed["n"] / (time.monotonic() - started)


def queue_depth_costs(depths: tuple[int, ...] = (0, 1000, 3000)) -> list[dict[str, Any]]:
    """moto's SQS scans its whole queue per call: the cost of one send and one receive by depth."""
    rows = []
    with moto_server():
        sqs = boto3.client("sqs")
        for depth in depths:
            url = sqs.create_queue(QueueName=f"depth-{depth}")["QueueUrl"]
            for start in range(0, depth, 10):
                sqs.send_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(min(10, depth - start))]
                )
            sends = []
            for _ in range(10):
                started = time.perf_counter()
                sqs.send_message(QueueUrl=url, MessageBody="x")
                sends.append(time.perf_counter() - started)
            receives = []
            for _ in range(3):
                started = time.perf_counter()
                sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
                receives.append(time.perf_counter() - started)
            rows.append(
                {
                    "depth": depth,
                    "send_ms": statistics.median(sends) * 1000,
                    "receive_ms": statistics.median(receives) * 1000,
                }
            )
    return rows


def render(report: dict[str, Any]) -> str:
    lines = [f"machine        {report['machine']}"]
    if "requests" in report:
        r = report["requests"]
        lines.append(f"requests per task ({r['tasks']} tasks; failed attempts from {r['failing_tasks']} tasks x 3)")
        for label, key in (
            ("  publish", "publish_per_task"),
            ("  consume", "consume_per_task"),
            ("  event source", "event_source_per_task"),
            ("  per failed attempt", "failed_attempt_consume"),
            ("  ... event source", "failed_attempt_event_source"),
        ):
            calls = ", ".join(f"{name} {value:g}" for name, value in r[key].items())
            lines.append(f"{label:<22} {calls}")
        lines.append(
            f"  vs floor             publish {r['publish_total_per_task']:.2f} / 2 = "
            f"{r['publish_total_per_task'] / 2:.2f}x; consume {r['consume_total_per_task']:.2f} / 2.1 = "
            f"{r['consume_total_per_task'] / 2.1:.2f}x"
        )
    if "batch" in report:
        b = report["batch"]
        lines.append(
            f"batch of ten 400 ms tasks  {b['median_ms']:.0f} ms median of {b['rounds']} "
            f"(ideal 400 ms, one at a time 4000 ms)"
        )
    if "cold_start" in report:
        c = report["cold_start"]["median_ms"]
        lines.append(
            f"cold start     import app {c['import']:.0f} ms + first /health {c['health']:.0f} ms + first batch "
            f"{c['batch']:.0f} ms = {c['total']:.0f} ms; floor {c['floor']:.0f} ms; ratio {c['ratio']:.2f}"
        )
    for row in report.get("throughput", []):
        lines.append(
            f"offline e2e    {row['tasks']} tasks: {row['tasks_per_second']} tasks/s "
            f"(floor {row['floor_tasks_per_second']} tasks/s, ratio {row['ratio']}); {row['seconds']} s in all"
        )
    for row in report.get("queue_depth", []):
        lines.append(
            f"moto SQS at depth {row['depth']:>5}: send {row['send_ms']:.1f} ms, receive {row['receive_ms']:.1f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks for the request count")
    parser.add_argument("--failing", type=int, default=100, help="always-failing tasks for the per-attempt count")
    parser.add_argument("--throughput", default="1000,5000", help="offline e2e sizes, comma-separated; '' skips")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: requests,batch,cold,depth")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "out")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    if "requests" not in skip:
        report["requests"] = requests_per_task(args.tasks, args.failing)
    if "batch" not in skip:
        report["batch"] = batch_wall_time()
    if "cold" not in skip:
        report["cold_start"] = cold_start()
    sizes = [int(size) for size in args.throughput.split(",") if size.strip()]
    if sizes:
        report["throughput"] = offline_throughput(sizes, args.out)
    if "depth" not in skip:
        report["queue_depth"] = queue_depth_costs()
    print(render(report))
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"written        {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
