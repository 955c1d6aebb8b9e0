"""Each function's policy grants what its code calls, and nothing else.

The handlers run under moto through representative scenarios (publish, batch,
unique keys, read, list, stats, retry, cancel, bulk retry, task types, pause and resume, health; a
consumer's success, failure, backoff, takeover and poison message, in every priority class's
consumer; dead letters, redriven into each class's queue; tasks that run at a time, their timers
dispatched by the ticker into each class's queue or dropped after a cancel, and a message that
arrives before its time held back), while botocore's
`before-parameter-build` event records every AWS request with the function that
made it. Every recorded (action, resource) must be allowed by that function's
`.chalice/policy-<stage>-<function>.json`, and every grant in it must have been
used or be one the Lambda service exercises for the function (RUNTIME_GRANTS).
The calls are discovered, not listed, so a change of the code paths changes
what the policies must hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from infra import stack
from tests.conftest import TEMPLATE, FakeClock
from tests.deploy.conftest import PACKAGED_STAGES, ROOT
from tests.integration.faults import inject_errors
from tests.integration.lambda_sqs import Delivery, deliver, lambda_records

FUNCTIONS = (
    "api_handler",
    "process_tasks",
    "process_high_priority_tasks",
    "process_low_priority_tasks",
    "handle_dead_letters",
    "tick",
)
REGION, ACCOUNT = "us-east-1", "123456789012"
# botocore's service name -> IAM's action prefix.
IAM_PREFIX = {"dynamodb": "dynamodb", "sqs": "sqs", "cloudwatch": "cloudwatch", "secretsmanager": "secretsmanager"}
# IAM authorises a batch call with its single-message action.
BATCH_ACTIONS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}
SUCCEEDS = {"simulation": {"failureChance": 0}}
FAILS = {"simulation": {"failureChance": 1}}
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}
JSON = {"Content-Type": "application/json"}
# The queue each consumer's event source polls.
POLLED = {
    "process_tasks": "tasks",
    "process_high_priority_tasks": "tasks-high",
    "process_low_priority_tasks": "tasks-low",
    "handle_dead_letters": "dead-letters",
}
# The consumer of each priority class other than the default, by the class's name.
CLASS_CONSUMERS = {"high": "process_high_priority_tasks", "low": "process_low_priority_tasks"}


def runtime_grants(stage: str, function: str) -> set[tuple[str, str]]:
    """What Lambda itself does with a function's role: write its logs, its traces, and poll its queue."""
    log_group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{function_name(stage, function)}"
    grants = {("logs:CreateLogStream", f"{log_group}:*"), ("logs:PutLogEvents", f"{log_group}:*")}
    if xray_enabled(stage):
        grants |= {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
    if function in POLLED:
        queue = f"arn:aws:sqs:*:*:taskproc-{stage}-{POLLED[function]}"
        grants |= {(action, queue) for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")}
    return grants


def function_name(stage: str, function: str) -> str:
    """The name `chalice deploy` and the packaged template give the function."""
    return f"taskproc-{stage}" if function == "api_handler" else f"taskproc-{stage}-{function}"


def xray_enabled(stage: str) -> bool:
    return bool(json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage].get("xray", False))


def policy_path(stage: str, function: str) -> Path:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return ROOT / ".chalice" / config["stages"][stage]["lambda_functions"][function]["iam_policy_file"]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(stage: str, function: str) -> set[tuple[str, str]]:
    """(action, resource pattern) for every Allow in the function's policy file."""
    document = json.loads(policy_path(stage, function).read_text())
    pairs = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow", statement
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action} in {policy_path(stage, function).name}"
            pairs |= {(action, resource) for resource in _as_list(statement["Resource"])}
    return pairs


@dataclass
class Recorder:
    """Every AWS request a function's clients make while it runs, as (action, service, resource)."""

    function: str
    active: bool = False
    calls: set[tuple[str, str, str]] = field(default_factory=set)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not self.active:
            return
        service = model.service_model.service_name
        assert service in IAM_PREFIX, f"{self.function} calls {service}, which this test cannot map to IAM yet"
        action = f"{IAM_PREFIX[service]}:{model.name}"
        self.calls.add((BATCH_ACTIONS.get(action, action), service, _resource_key(service, params)))


def _resource_key(service: str, params: dict[str, Any]) -> str:
    if service == "dynamodb":
        if "RequestItems" in params:  # BatchGetItem: the walk's batches read one table each
            (table,) = params["RequestItems"]
            return str(table)
        table = params["TableName"]
        return f"{table}/index/{params['IndexName']}" if params.get("IndexName") else table
    if service == "sqs":
        return str(params.get("QueueName") or params["QueueUrl"].rsplit("/", 1)[-1])
    if service == "secretsmanager":
        return str(params["SecretId"])
    return "*"


@dataclass
class Walk:
    """A stage's app over moto with one runtime (one container) per function, each recorded on its own.

    Separate runtimes matter: a queue URL or the cursor key one function has looked
    up must not hide the request another function makes for it.
    """

    stage: str
    client: Client
    runtimes: dict[str, Any]
    recorders: dict[str, Recorder]
    clock: FakeClock
    sqs: Any
    secrets: Any

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        from chalicelib.runtime import set_runtime

        set_runtime(self.runtimes[function])
        self.recorders[function].active = True
        try:
            yield
        finally:
            self.recorders[function].active = False

    def url(self, queue: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=f"taskproc-{self.stage}-{queue}")["QueueUrl"])

    def send(self, queue: str, body: Any) -> None:
        """Put a message on a queue as someone outside the functions would."""
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.url(queue), MessageBody=text)

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        with self.running("api_handler"):
            if method in ("GET", "DELETE"):
                response = self.client.http.request(method, path)
            else:
                payload = json.dumps(body) if body is not None else b""
                response = self.client.http.request(method, path, body=payload, headers=JSON)
        return response.status_code, json.loads(response.body)

    def publish(self, task_id: str, payload: dict[str, Any], priority: str = "default") -> None:
        status, answer = self.http("POST", "/publish", {"id": task_id, "payload": payload, "priority": priority})
        assert status == 201, answer

    def deliver(self, function: str) -> Delivery:
        with self.running(function):
            return deliver(self.client, function, self.sqs, self.url(POLLED[function]))

    def drain(self, function: str) -> None:
        """Deliver until the function's queue is empty, waiting out every backoff."""
        for _ in range(50):
            delivery = self.deliver(function)
            if not delivery.records:
                return
            self.clock.advance(901)
            for record in delivery.records:
                # What is left of the batch comes back now, as if its visibility timeout had passed.
                with suppress(self.sqs.exceptions.ReceiptHandleIsInvalid):
                    self.sqs.change_message_visibility(
                        QueueUrl=self.url(POLLED[function]), ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                    )
        raise AssertionError(f"{function}'s queue did not drain")

    def calls(self, function: str) -> set[tuple[str, str]]:
        """(action, resource ARN) for every request the function made."""
        resolved = set()
        for action, service, key in self.recorders[function].calls:
            if service == "dynamodb":
                arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{key}"
            elif service == "sqs":
                arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{key}"
            elif service == "secretsmanager":
                arn = str(self.secrets.describe_secret(SecretId=key)["ARN"])
            else:
                arn = key
            resolved.add((action, arn))
        return resolved


@pytest.fixture(scope="module", params=PACKAGED_STAGES)
def walk(request: pytest.FixtureRequest) -> Iterator[Walk]:
    """Run every scenario once per stage, with that stage's names and settings, and keep what was called."""
    from moto import mock_aws

    from chalicelib.runtime import build_runtime, set_runtime
    from chalicelib.settings import Settings

    stage = request.param
    config = stack.load_stage(stage)
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name, value in {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        plain = boto3.session.Session()
        plain.client("cloudformation").create_stack(
            StackName=f"taskproc-{stage}-data",
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in config.parameters().items()],
        )
        secrets = plain.client("secretsmanager")
        secrets.create_secret(Name=config.environment["CURSOR_SECRET_ID"], SecretString="k" * 64)
        secrets.create_secret(Name=config.environment["CALLBACK_SECRET_ID"], SecretString="c" * 64)

        values = {**config.environment, "AWS_LAMBDA_FUNCTION_NAME": function_name(stage, "api_handler")}
        settings = Settings(**{name: value for name, value in values.items() if name in Settings.model_fields})
        clock = FakeClock()
        recorders, runtimes = {}, {}
        for function in FUNCTIONS:
            recorders[function] = Recorder(function)
            session = boto3.session.Session()
            # On the session, before any client exists: every client the runtime makes carries it.
            session.events.register("before-parameter-build", recorders[function])
            runtimes[function] = build_runtime(settings, session=session, clock=clock)
        import app

        try:
            with Client(app.app, stage_name="local") as client:
                walk = Walk(stage, client, runtimes, recorders, clock, plain.client("sqs"), secrets)
                _run_scenarios(walk)
                _run_callback_scenarios(walk)
                _run_chain_scenarios(walk)
                _run_time_scenarios(walk)
                _run_workflow_scenarios(walk)
                yield walk
        finally:
            set_runtime(None)


def _delivered(w: Walk, function: str, task_id: str) -> dict[str, Any]:
    """The record of `task_id` in one delivery to `function`. An earlier scenario's message whose visibility
    (real seconds, in moto) ran out on a slow machine may come in the same batch; it is handled as ever."""
    (record,) = [r for r in w.deliver(function).records if json.loads(r["body"])["id"] == task_id]
    return record


def _run_scenarios(w: Walk) -> None:
    # The client's side: publish (new, duplicate, delayed), a batch, the payload-only form, a
    # publish the queue refuses, a status read, and health.
    w.publish("ok", SUCCEEDS)
    w.publish("ok", SUCCEEDS)
    status, _ = w.http("POST", "/publish", {"id": "later", "payload": SUCCEEDS, "delaySeconds": 5})
    assert status == 201
    batch = {"tasks": [{"id": f"b{n}", "payload": SUCCEEDS} for n in range(3)]}
    status, answer = w.http("POST", "/publish/batch", batch)
    assert status == 200 and len(answer["results"]) == 3
    assert w.http("POST", "/tasks", SUCCEEDS)[0] == 201
    # Tags at publish, in a batch entry and on the payload-only form.
    assert w.http("POST", "/publish", {"id": "tagged", "payload": DOOMED, "tags": ["walk"]})[0] == 201
    assert w.http("POST", "/publish/batch", {"tasks": [{"id": "bt", "payload": SUCCEEDS, "tags": ["walk"]}]})[0] == 200
    assert w.http("POST", "/tasks?tag=walk", SUCCEEDS)[0] == 201
    with inject_errors(w.runtimes["api_handler"].tasks_queue._client, "SendMessage", status=500, code="InternalError"):
        assert w.http("POST", "/publish", {"id": "refused", "payload": SUCCEEDS})[0] == 503
    assert w.http("GET", "/health")[0] == 200
    assert w.http("GET", "/openapi.json")[0] == 200
    # Unique keys: a claim, a publish it holds back, a terminal-mode claim whose holder is read, a
    # claim released because the send failed, and a batch entry's claim.
    unique = {"uniqueKey": "walk", "uniqueFor": 60}
    assert w.http("POST", "/publish", {"id": "u1", "payload": SUCCEEDS, **unique})[1]["duplicate"] is False
    assert w.http("POST", "/publish", {"id": "u2", "payload": SUCCEEDS, **unique})[1]["existingId"] == "u1"
    until_done = {"uniqueKey": "walk-terminal", "uniqueUntil": "terminal"}
    assert w.http("POST", "/publish", {"id": "u3", "payload": SUCCEEDS, **until_done})[0] == 201
    assert w.http("POST", "/publish", {"id": "u4", "payload": SUCCEEDS, **until_done})[1]["existingId"] == "u3"
    with inject_errors(w.runtimes["api_handler"].tasks_queue._client, "SendMessage", status=500, code="InternalError"):
        body = {"id": "u5", "payload": SUCCEEDS, "uniqueKey": "walk-5", "uniqueFor": 9}
        assert w.http("POST", "/publish", body)[0] == 503
    status, answer = w.http("POST", "/publish/batch", {"tasks": [{"id": "u6", "payload": SUCCEEDS, **unique}]})
    assert status == 200 and answer["results"][0]["existingId"] == "u1"

    # The consumer: success, permanent failure, backoff up to the last attempt, a takeover of an
    # expired lease, a poison message.
    for n in range(3):
        w.publish(f"doomed{n}", DOOMED)
    w.publish("flaky", FAILS)
    w.publish("pending", SUCCEEDS)
    w.drain("process_tasks")
    from chalicelib.models import Task

    w.publish("orphan", SUCCEEDS)
    with w.running("process_tasks"):  # a consumer that dies holding the lease
        w.runtimes["process_tasks"].store.acquire(
            Task(id="orphan", payload=SUCCEEDS), "dead-consumer", "m-0", 3, lease_seconds=60
        )
    w.clock.advance(61)
    w.send("tasks", "not json at all")
    # Expiry: a task that expires unrun, and a message carrying an expiry whose task was never
    # stored (its publish died after the send), which the consumer stores before expiring it.
    status, _ = w.http("POST", "/publish", {"id": "stale", "payload": SUCCEEDS, "expiresInSeconds": 1})
    assert status == 201
    w.sqs.send_message(
        QueueUrl=w.url("tasks"),
        MessageBody=json.dumps({"id": "stale-orphan", "payload": SUCCEEDS}),
        MessageAttributes={"startBy": {"DataType": "String", "StringValue": str(int(w.clock.now * 1000) + 1000)}},
    )
    w.clock.advance(2)
    w.drain("process_tasks")
    assert w.http("GET", "/tasks/stale-orphan")[1]["lastError"] == "expired before it started"

    # Long work: a heartbeating type whose handler heartbeats and checks for a cancel.
    from chalicelib.registry import Registry, TaskType

    def peek(payload: Any, context: Any) -> str:
        w.clock.advance(2)
        context.heartbeat({"done": 1, "total": 1})
        return "cancelled" if context.cancel_requested() else "done"

    for function in ("process_tasks", *CLASS_CONSUMERS.values()):
        registry = Registry()
        for name in w.runtimes[function].registry.names():
            registry.register(w.runtimes[function].registry.get(name))  # type: ignore[arg-type]
        registry.register(TaskType("peek", peek, timeout_seconds=20, heartbeat_seconds=2))
        w.runtimes[function].registry = registry
    w.send("tasks", {"id": "long", "type": "peek", "payload": {}})
    w.drain("process_tasks")

    # Each other priority class: its tasks published, batched, failed, backed off, heartbeating and
    # poisoned in its own queue, through its own consumer.
    for priority, function in CLASS_CONSUMERS.items():
        w.publish(f"{priority}-ok", SUCCEEDS, priority)
        w.publish(f"{priority}-flaky", FAILS, priority)
        batch = {"tasks": [{"id": f"{priority}-b{n}", "payload": SUCCEEDS, "priority": priority} for n in range(2)]}
        assert w.http("POST", "/publish/batch", batch)[0] == 200
        w.send(POLLED[function], {"id": f"{priority}-long", "type": "peek", "payload": {}})
        w.send(POLLED[function], "not json at all")
        w.drain(function)

    # Dead letters: poison messages (one with a usable id), a task never stored, a task whose
    # message ran out of receives with attempts left (SQS keeps the message id), and a batch
    # one of whose records meets a table error, so the rest are finished on their own.
    w.send("tasks", {"id": "poison-id", "payload": 5})
    w.drain("process_tasks")
    w.send("dead-letters", {"id": "never-stored", "payload": SUCCEEDS})
    w.drain("handle_dead_letters")
    w.publish("early", FAILS)
    # The delayed task's message (SQS's delay runs on the real clock) may come along in this batch.
    record = _delivered(w, "process_tasks", "early")
    w.send("dead-letters", record["body"])
    (redriven,) = lambda_records(w.sqs, w.url("dead-letters"))
    with w.running("handle_dead_letters"):
        w.client.lambda_.invoke("handle_dead_letters", {"Records": [{**redriven, "messageId": record["messageId"]}]})
    w.sqs.delete_message(QueueUrl=w.url("dead-letters"), ReceiptHandle=redriven["receiptHandle"])
    # ... and a task of each other class, redriven into its class's queue.
    for priority, function in CLASS_CONSUMERS.items():
        w.publish(f"{priority}-early", FAILS, priority)
        record = _delivered(w, function, f"{priority}-early")
        w.send("dead-letters", record["body"])
        (redriven,) = lambda_records(w.sqs, w.url("dead-letters"))
        with w.running("handle_dead_letters"):
            event = {"Records": [{**redriven, "messageId": record["messageId"]}]}
            w.client.lambda_.invoke("handle_dead_letters", event)
        w.sqs.delete_message(QueueUrl=w.url("dead-letters"), ReceiptHandle=redriven["receiptHandle"])
        w.drain(function)
    for n in range(2):
        w.send("dead-letters", {"id": f"gone{n}", "payload": SUCCEEDS})
    dynamodb = w.runtimes["handle_dead_letters"].store._client
    with inject_errors(dynamodb, "GetItem", status=400, code="ValidationException", times=1):
        assert w.deliver("handle_dead_letters").records
    w.drain("handle_dead_letters")
    w.drain("process_tasks")

    # The operator's side: read, list page by page, stats, retry, cancel, bulk retry.
    assert w.http("GET", "/tasks/ok")[1]["status"] == "COMPLETED"
    assert w.http("GET", "/tasks/ok?waitSeconds=20")[1]["status"] == "COMPLETED"  # a long-poll's reads
    status, page = w.http("GET", "/tasks?status=FAILED&tag=walk")
    assert status == 200 and [task["id"] for task in page["tasks"]] == ["tagged"], page
    status, page = w.http("GET", "/tasks?status=FAILED&limit=1")
    assert status == 200 and page["nextCursor"], page
    assert w.http("GET", f"/tasks?status=FAILED&limit=1&cursor={page['nextCursor']}")[0] == 200
    assert w.http("GET", "/stats")[0] == 200
    assert w.http("GET", "/stuck")[0] == 200  # a bounded Scan of the task table
    assert w.http("POST", "/tasks/doomed0/retry")[0] == 202
    assert w.http("POST", "/tasks/stale/retry", {"expiresInSeconds": 60})[0] == 202
    w.publish("to-cancel", SUCCEEDS)
    assert w.http("POST", "/tasks/to-cancel/cancel")[0] in (200, 202)
    assert w.http("POST", "/retries", {"status": "FAILED"})[0] == 200
    # Task types: the list, one type with its history, a pause (twice: the second changes nothing) and
    # a resume, of a type no task of this walk has.
    assert w.http("GET", "/types")[0] == 200
    for _ in range(2):
        assert w.http("POST", "/types/checksum/pause")[0] == 200
    assert w.http("GET", "/types/checksum")[1]["paused"] is True
    assert w.http("POST", "/types/checksum/resume")[0] == 200
    w.drain("process_tasks")
    for function in CLASS_CONSUMERS.values():
        w.drain(function)

    # Schedules: create (and a taken id), list page by page, read, replace, pause, resume, trigger,
    # backfill, delete.
    hourly = {"type": "simulate", "payload": SUCCEEDS, "rate": "1 hour"}
    for n in range(2):
        assert w.http("POST", "/schedules", {"id": f"walk-{n}", **hourly})[0] == 201
    assert w.http("POST", "/schedules", {"id": "walk-0", **hourly})[0] == 409
    status, page = w.http("GET", "/schedules?limit=1")
    assert status == 200 and page["nextCursor"], page
    assert w.http("GET", f"/schedules?limit=1&cursor={page['nextCursor']}")[0] == 200
    assert w.http("GET", "/schedules/walk-0")[0] == 200
    assert w.http("PUT", "/schedules/walk-0", {**hourly, "rate": "2 hours"})[0] == 200
    assert w.http("POST", "/schedules/walk-0/pause")[0] == 200
    assert w.http("POST", "/schedules/walk-0/resume")[0] == 200
    assert w.http("POST", "/schedules/walk-0/trigger")[0] == 201
    w.clock.advance(4 * 3600)
    backfill = {"from": "2000-01-01T00:00:00Z", "to": "2000-01-01T03:00:00Z"}
    assert w.http("POST", "/schedules/walk-1/backfill", backfill)[0] == 200
    assert w.http("GET", "/schedules/walk-0")[1]["lastFiring"]["status"] == "PENDING"
    assert w.http("DELETE", "/schedules/walk-1")[0] == 200
    w.drain("process_tasks")

    # Flow control, in every class's consumer: a capped type (its slot taken and given back), a
    # rate-limited type whose second start is deferred (its message renewed on the class's queue),
    # and a paused type.
    w.runtimes["api_handler"].pauses.pause("walk-held", by="policy-walk")  # not recorded: the types routes' part
    for function, queue in (("process_tasks", "tasks"), *((f, POLLED[f]) for f in CLASS_CONSUMERS.values())):
        consumer = w.runtimes[function]
        for flow_type in (
            TaskType("walk-capped", lambda p, c: "ok", concurrency=1, concurrency_key="k", key_concurrency=1),
            TaskType("walk-rated", lambda p, c: "ok", rate_limit="1/hour"),
            TaskType("walk-held", lambda p, c: "ok"),
        ):
            if consumer.registry.get(flow_type.name) is None:
                consumer.registry.register(flow_type)
        w.send(queue, {"id": f"{queue}-capped-1", "type": "walk-capped", "payload": {"k": "a"}})
        w.send(queue, {"id": f"{queue}-rated-1", "type": "walk-rated", "payload": {}})
        w.send(queue, {"id": f"{queue}-rated-2", "type": "walk-rated", "payload": {}})
        w.clock.advance(consumer.pauses.refresh_seconds)
        w.send(queue, {"id": f"{queue}-held-1", "type": "walk-held", "payload": {}})
        for _ in range(3):
            w.deliver(function)


def _run_callback_scenarios(w: Walk) -> None:
    """Completion callbacks: published after a consumer's terminal write in every class, after an
    operator's cancel, and by the dead-letter handler; delivered (signed with the stage's secret) by
    every class's consumer to a receiver on loopback. The walk's runtimes are a deployed stage's, whose
    URL rules would refuse loopback: they take the offline rules here, the IAM calls being the same."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from chalicelib.callbacks.url import UrlPolicy

    received: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/done"
    for runtime in w.runtimes.values():
        runtime.callback_urls = UrlPolicy(deployed=False)
    try:
        for priority, function in (("default", "process_tasks"), *CLASS_CONSUMERS.items()):
            body = {
                "id": f"{priority}-called-back",
                "payload": SUCCEEDS,
                "priority": priority,
                "callback": {"url": url},
            }
            assert w.http("POST", "/publish", body)[0] == 201
            w.drain(function)
        # A terminal task whose dead letter comes back with its callback unpublished.
        body = {"id": "dead-called-back", "payload": SUCCEEDS, "callback": {"url": url}}
        assert w.http("POST", "/publish", body)[0] == 201
        record = _delivered(w, "process_tasks", "dead-called-back")
        w.runtimes["api_handler"].store.client.delete_item(
            TableName=f"taskproc-{w.stage}-tasks", Key={"id": {"S": "dead-called-back/callback"}}
        )
        w.send("dead-letters", record["body"])
        w.drain("handle_dead_letters")
        body = {"id": "cancelled-called-back", "payload": SUCCEEDS, "callback": {"url": url}}
        assert w.http("POST", "/publish", body)[0] == 201
        assert w.http("POST", "/tasks/cancelled-called-back/cancel")[0] == 200
        w.drain("process_tasks")
    finally:
        server.shutdown()
        server.server_close()
    assert len({json.loads(body)["id"] for body in received}) == 5, received


def _run_chain_scenarios(w: Walk) -> None:
    """Chains: each step published after a consumer's COMPLETED write in every class, one too large to
    send stored FAILED, one published by the dead-letter handler, and the views that read the steps."""
    steps = [{"type": "simulate", "payload": SUCCEEDS}, {"type": "simulate", "payload": SUCCEEDS}]
    for priority, function in (("default", "process_tasks"), *CLASS_CONSUMERS.items()):
        body = {"id": f"{priority}-chained", "payload": SUCCEEDS, "priority": priority, "then": steps}
        assert w.http("POST", "/publish", body)[0] == 201
        w.drain(function)
        status, view = w.http("GET", f"/tasks/{priority}-chained")
        assert status == 200 and [step["state"] for step in view["then"]] == ["published", "published"], view
    # A root whose dead letter comes back with its first step unpublished.
    body = {"id": "dead-chained", "payload": SUCCEEDS, "then": steps[:1]}
    assert w.http("POST", "/publish", body)[0] == 201
    record = _delivered(w, "process_tasks", "dead-chained")
    w.runtimes["api_handler"].store.client.delete_item(
        TableName=f"taskproc-{w.stage}-tasks", Key={"id": {"S": "dead-chained/then/1"}}
    )
    w.send("dead-letters", record["body"])
    w.drain("handle_dead_letters")
    w.drain("process_tasks")
    assert w.http("GET", "/tasks/dead-chained%2Fthen%2F1")[1]["status"] == "COMPLETED"


def _run_workflow_scenarios(w: Walk) -> None:
    """Workflows: published by the API (and published again), read; a child's failure that fails its
    workflow and cancels its siblings; a fan-in that publishes `then`, and again from a dead letter
    that finds the last child ended with `then` missing; a retried child re-opening its workflow."""
    children = [{"payload": DOOMED}, {"payload": SUCCEEDS}, {"payload": SUCCEEDS}]
    failing = {"id": "wf-fails", "children": children, "then": {"type": "simulate", "payload": SUCCEEDS}}
    assert w.http("POST", "/workflows", failing)[0] == 201
    assert w.http("POST", "/workflows", failing)[0] == 201
    w.drain("process_tasks")
    status, view = w.http("GET", "/workflows/wf-fails")
    assert status == 200 and view["status"] == "FAILED", view
    assert w.http("POST", "/tasks/wf-fails%2F1/retry")[0] == 202
    assert w.http("GET", "/workflows/wf-fails")[1]["status"] == "RUNNING"
    w.drain("process_tasks")
    fans_in = {
        "id": "wf-fans-in",
        "children": [{"payload": SUCCEEDS}],
        "then": {"type": "simulate", "payload": SUCCEEDS},
        "onChildFailure": "continue",
    }
    assert w.http("POST", "/workflows", fans_in)[0] == 201
    w.drain("process_tasks")
    w.runtimes["api_handler"].store.client.delete_item(
        TableName=f"taskproc-{w.stage}-tasks", Key={"id": {"S": "wf-fans-in/then"}}
    )
    child = {
        "id": "wf-fans-in/1",
        "type": "simulate",
        "payload": SUCCEEDS,
        "workflow": {"id": "wf-fans-in", "child": 1},
    }
    w.send("dead-letters", child)
    w.drain("handle_dead_letters")
    w.drain("process_tasks")
    assert w.http("GET", "/workflows/wf-fans-in")[1]["status"] == "COMPLETED"
    # A child's id that is another task's: refused before the workflow is written; and, for a workflow
    # an earlier POST stored before the id was taken, ended FAILED by the POST again.
    from chalicelib.workflows.service import parse
    from chalicelib.workflows.store import workflow_store

    assert w.http("POST", "/publish", {"id": "wf-held", "payload": SUCCEEDS})[0] == 201
    held = {
        "id": "wf-held-by",
        "children": [{"payload": SUCCEEDS}, {"id": "wf-held", "payload": SUCCEEDS}],
        "then": {"type": "simulate", "payload": SUCCEEDS},
    }
    assert w.http("POST", "/workflows", held)[0] == 409
    api = w.runtimes["api_handler"]
    workflow_store(api).create(parse(held, api))
    assert w.http("POST", "/workflows", held)[0] == 409
    assert w.http("GET", "/workflows/wf-held-by")[1]["status"] == "FAILED"
    w.drain("process_tasks")


def _run_time_scenarios(w: Walk) -> None:
    """Tasks that run at a time: timers written by a publish and a batch (and a repeat of a publish
    whose put never happened), dispatched by the ticker into each class's queue, one deleted unsent
    after a cancel, one already recorded; and a consumer holding back a message that came early."""
    from tests.integration.test_never_stranded import ProcessKilled, killed_after

    day = 86_400

    def run_at(seconds: float) -> str:
        from chalicelib.tasks.record import iso_from_ms

        return iso_from_ms(int((w.clock.now + seconds) * 1000))

    for priority in ("high", "default", "low"):
        body = {"id": f"timed-{priority}", "payload": SUCCEEDS, "runAt": run_at(day), "priority": priority}
        assert w.http("POST", "/publish", body)[0] == 201
    batch = {"tasks": [{"id": "timed-batch", "payload": SUCCEEDS, "runAt": run_at(day)}]}
    assert w.http("POST", "/publish/batch", batch)[0] == 200
    orphan = {"id": "timed-orphan", "payload": SUCCEEDS, "runAt": run_at(day)}
    with (
        w.running("api_handler"),
        killed_after(w.runtimes["api_handler"].dynamodb, "PutItem"),
        suppress(ProcessKilled),
    ):
        w.client.http.post("/publish", body=json.dumps(orphan), headers=JSON)
    assert w.http("POST", "/publish", orphan)[0] == 201
    assert w.http("POST", "/publish", {"id": "timed-cancelled", "payload": SUCCEEDS, "runAt": run_at(day)})[0] == 201
    assert w.http("POST", "/tasks/timed-cancelled/cancel")[0] == 200
    # A schedule due at the tick, whose firing the ticker publishes (`skip` reads its last firing's task).
    minutely = {"type": "simulate", "payload": SUCCEEDS, "rate": "1 minute", "overlap": "skip"}
    assert w.http("POST", "/schedules", {"id": "walk-minutely", **minutely, "catchupWindowSeconds": 60})[0] == 201
    # Due in a minute: sent with the rest of the wait, which the consumer, a minute early, holds back.
    w.clock.advance(day - 60)
    event = w.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
    )
    strip = lambda params, **_: params.pop("DelaySeconds", None)  # noqa: E731 - arrives early
    for runtime in w.runtimes.values():
        runtime.tasks_queue._client.meta.events.register("before-parameter-build.sqs.SendMessage", strip)
    try:
        with w.running("tick"):
            counts = w.client.lambda_.invoke("tick", event).payload
        assert counts["timersDispatched"] == 5 and counts["timersSkipped"] == 1, counts
        w.deliver("process_tasks")
    finally:
        for runtime in w.runtimes.values():
            runtime.tasks_queue._client.meta.events.unregister("before-parameter-build.sqs.SendMessage", strip)
    w.clock.advance(60)
    for function in ("process_tasks", *CLASS_CONSUMERS.values()):
        w.drain(function)
    assert w.http("GET", "/tasks/timed-high")[1]["status"] == "COMPLETED"


def _allowed(pairs: set[tuple[str, str]], action: str, resource: str) -> bool:
    return any(granted == action and fnmatchcase(resource, pattern) for granted, pattern in pairs)


def test_every_function_made_some_calls_in_the_walk(walk: Walk) -> None:
    for function in FUNCTIONS:
        assert walk.calls(function), f"{function} made no AWS call: the scenarios do not reach it"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_call_a_function_makes_is_allowed_by_its_own_policy(walk: Walk, function: str) -> None:
    granted = grants(walk.stage, function)
    refused = sorted(call for call in walk.calls(function) if not _allowed(granted, *call))
    assert not refused, f"{policy_path(walk.stage, function).name} does not allow: {refused}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_function_s_policy_grants_nothing_it_never_calls_beyond_what_lambda_does_for_it(
    walk: Walk, function: str
) -> None:
    calls = walk.calls(function)
    expected = runtime_grants(walk.stage, function)
    unused = sorted(
        (action, pattern)
        for action, pattern in grants(walk.stage, function) - expected
        if not any(called == action and fnmatchcase(resource, pattern) for called, resource in calls)
    )
    assert not unused, f"{policy_path(walk.stage, function).name} grants what {function} never calls: {unused}"
    missing = sorted(expected - grants(walk.stage, function))
    assert not missing, f"{policy_path(walk.stage, function).name} lacks what Lambda needs: {missing}"


def test_only_the_api_reads_the_cursor_secret_only_the_task_consumers_the_callback_secret_and_only_stats_metrics(
    walk: Walk,
) -> None:
    readers = {}
    for function in FUNCTIONS:
        actions = {action for action, _ in grants(walk.stage, function)}
        assert "cloudwatch:GetMetricData" not in actions or function == "api_handler", function
        reads = {resource for action, resource in walk.calls(function) if action.startswith("secretsmanager:")}
        assert {action for action, resource in walk.calls(function) if resource in reads} <= {
            "secretsmanager:GetSecretValue"
        }
        readers[function] = {resource.split(":secret:")[1].rsplit("-", 1)[0] for resource in reads}
    assert readers == {
        "api_handler": {f"taskproc-{walk.stage}-cursor"},
        "process_tasks": {f"taskproc-{walk.stage}-callback"},
        "process_high_priority_tasks": {f"taskproc-{walk.stage}-callback"},
        "process_low_priority_tasks": {f"taskproc-{walk.stage}-callback"},
        "handle_dead_letters": set(),
        "tick": set(),
    }
