"""The bench's `fanin` section: one workflow's fan-in latency and its cost on the workflow item.

200 children by default: moto spends about a second on each write of a 1,000-child workflow item
on two shared cores, one write at a time, so `--fanin-children 1000` takes over half an hour here
(docs/workflows.md, "1,000 children ending together", gives that size's units by DynamoDB's rule).

In this process against the embedded endpoint, as the flow section runs (tools/bench/inprocess.py),
not against `python -m local run`: the whole workflow is one `POST /workflows`, which Chalice's local
server answers on one thread, and three processes (endpoint, API, worker) polling each other on a
machine of two shared cores measure the machine more than the fan-in. The endpoint, its patches
and the event-source pollers are the offline stack's own.

The workflow is published with the consumers stopped, so that its children are a backlog that the
five pollers drain as fast as they can: the children end as close together as this machine allows.
Measured:
- fan-in latency: from the last child's terminal write (its `finishedAt`) to the `then` task's
  first attempt (its history's `startedAt`), split at `then`'s item being written (`createdAt`);
- writes on the workflow item per child, counted from the DynamoDB calls that name its key
  (botocore's `before-parameter-build`, `before-send` and `after-call`), not from the app's
  counters: the calls, what DynamoDB did with each (written, refused by its condition), and the
  attempts on the wire, retries included;
- the workflow item's size, from each write's answer (ReturnValues ALL_NEW), and the write units
  each write costs by DynamoDB's rule (one WRU per started KB of the larger of the item before and
  after). moto answers ReturnConsumedCapacity with a constant, so the units are computed, not read.

Throttling. moto does not throttle. With a throttle rate, a share of the attempts to write the
workflow item are answered before they are sent, as DynamoDB answers a hot partition:
`ProvisionedThroughputExceededException` and `ThrottlingException` in turn, HTTP 400. botocore's
standard retry mode sees them as it would see DynamoDB's (they are in its throttling codes), so
its backoff, its attempts and its retry quota are what is measured; a write that runs out of
attempts fails the child's follow-up, and the child's message comes back to count it later.
The run must still end with every child counted once and `then` run once; the figure is the
latency it adds. What this cannot show is DynamoDB's own rate (1,000 WCU a second per partition):
the injection is a share of attempts, not a budget of units.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from tools.bench.cost import Usage, WireCounter, dynamodb_item_bytes
from tools.bench.inprocess import TERMINAL, InProcess, queue_empty, wait_for

THEN_TYPE = "bench-fan-in"
THROTTLE_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")
SUCCEEDS = {"simulation": {"failureChance": 0}}
# The prefix of a workflow item's key (chalicelib/workflows/store.py): a control character no task id holds.
WORKFLOW_KEY_PREFIX = "workflow\x1f"
KB = 1024
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


class ThenRuns:
    """How often the bench's `then` type ran, by workflow: the proof that the fan-in ran it once."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, payload: dict[str, Any], context: Any) -> dict[str, int]:
        workflow_id = context.task_id.removesuffix("/then")
        with self._lock:
            self.runs[workflow_id] += 1
        return {"children": len(payload.get("children", [])), "childrenOf": bool(payload.get("childrenOf"))}


THEN_RUNS = ThenRuns()


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


class WorkflowItemCounter(WireCounter):
    """The wire counter, also counting the calls that write a workflow item and throttling a share of them.

    A call is marked at `before-parameter-build` (its parameters name the key), each of its attempts
    is seen at `before-send` (where a throttled one is answered without being sent), and its outcome
    at `after-call`, once botocore has stopped retrying.
    """

    def __init__(self, throttle_rate: float = 0.0, seed: int = 22) -> None:
        super().__init__()
        self.throttle_rate = throttle_rate
        self.calls: Counter[str] = Counter()  # by operation and outcome: "UpdateItem written", ...
        self.attempts = 0  # UpdateItem attempts on the wire, retries included
        self.throttled = 0  # of those, answered with a throttling error
        self.item_bytes: list[int] = []  # the item's size after each write
        self.wru = 0  # the units of every write and refused write, by the 1 KB rule
        self._random = random.Random(seed)
        self._item_lock = threading.Lock()
        self._last_bytes = 0

    def session(self) -> boto3.session.Session:
        session = super().session()
        session.events.register("before-parameter-build.dynamodb", self._mark)
        session.events.register_first("before-send.dynamodb.UpdateItem", self._attempt)
        session.events.register("after-call.dynamodb", self._outcome)
        return session

    def _mark(self, params: dict[str, Any], context: dict[str, Any], model: Any, **_: Any) -> None:
        key = (params.get("Key") or params.get("Item") or {}).get("id", {}).get("S", "")
        if key.startswith(WORKFLOW_KEY_PREFIX) and model.name in WRITES:
            context["workflow_item"] = model.name

    def _attempt(self, request: Any, **_: Any) -> AWSResponse | None:
        body = json.loads(request.body or b"{}")
        if not body.get("Key", {}).get("id", {}).get("S", "").startswith(WORKFLOW_KEY_PREFIX):
            return None
        with self._item_lock:
            self.attempts += 1
            throttle = self._random.random() < self.throttle_rate
            if throttle:
                code = THROTTLE_CODES[self.throttled % len(THROTTLE_CODES)]
                self.throttled += 1
        if not throttle:
            return None
        error = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected by the bench"}
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": code}, _Body(json.dumps(error).encode()))

    def _outcome(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation = context.get("workflow_item")
        if operation is None:
            return
        code = parsed.get("Error", {}).get("Code")
        outcome = {None: "written", "ConditionalCheckFailedException": "refused"}.get(code, "gave up")
        with self._item_lock:
            self.calls[f"{operation} {outcome}"] += 1
            if "Attributes" in parsed:
                size = dynamodb_item_bytes(parsed["Attributes"])
                self.item_bytes.append(size)
                # A write costs the larger of the item before and after it, in started KB.
                self.wru += math.ceil(max(size, self._last_bytes) / KB)
                self._last_bytes = size
            elif outcome == "refused":
                self.wru += math.ceil(max(self._last_bytes, 1) / KB)  # a refused condition is billed too


def register_then() -> None:
    """The section's `then`: a type with no payload model (it takes `children` or `childrenOf`), counting its runs."""
    from chalicelib.registry import REGISTRY, task_type

    if REGISTRY.get(THEN_TYPE) is None:
        task_type(THEN_TYPE)(THEN_RUNS)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# moto takes about a second to write a workflow item of 1,000 children on this machine's two cores,
# and the endpoint's writes are one at a time (local/atomic_dynamodb.py): allow that long per child.
SECONDS_PER_CHILD = 3.0


def run(bench: InProcess, children: int, throttle_rate: float, timeout: float | None = None) -> dict[str, Any]:
    """Publish one workflow of `children` children, drain it, and read its fan-in from the items and the calls.

    Raises:
        AssertionError: the workflow was refused, or did not end as one fan-in: a child uncounted,
            `then` not run exactly once.
        TimeoutError: it did not end by the deadline.
    """
    from chalice.test import Client

    register_then()
    workflow_id = f"fanin-{children}-t{round(throttle_rate * 100)}"
    counter = WorkflowItemCounter(throttle_rate)
    usage = Usage(tasks=children, wire=counter)
    bench.use(usage)
    quiet = boto3.client("sqs")  # uncounted: the bench's own look at the queues
    urls = [
        quiet.get_queue_url(QueueName=q)["QueueUrl"]
        for q in (bench.settings.TASKS_QUEUE, bench.settings.DEAD_LETTER_QUEUE)
    ]
    body = {
        "id": workflow_id,
        "children": [{"type": "simulate", "payload": SUCCEEDS} for _ in range(children)],
        "then": {"type": THEN_TYPE},
        "onChildFailure": "continue",
    }
    with Client(bench.app.app, stage_name="api") as client:
        started = time.monotonic()
        response = client.http.post("/workflows", body=json.dumps(body), headers={"Content-Type": "application/json"})
        published = time.monotonic() - started
    assert response.status_code == 201, response.body
    then_id = f"{workflow_id}/then"
    child_ids = [f"{workflow_id}/{n}" for n in range(1, children + 1)]
    with bench.logging_to(usage), bench.consumers(usage):
        consuming = time.monotonic()

        def then_ended() -> bool:
            found = bench.items_of([then_id])
            return bool(found) and found[0]["status"]["S"] in TERMINAL

        deadline = timeout if timeout is not None else max(600.0, children * SECONDS_PER_CHILD)
        wait_for(then_ended, deadline, f"{workflow_id}'s then to end", interval=0.5)
        drained = time.monotonic() - consuming
        wait_for(lambda: all(queue_empty(quiet, url) for url in urls), 300, f"{workflow_id}'s messages to settle", 1.0)
    items = {item["id"]["S"]: item for item in bench.items_of([*child_ids, then_id])}
    then = items.pop(then_id)
    statuses = Counter(item["status"]["S"] for item in items.values())
    assert statuses == {"COMPLETED": children}, f"children ended {dict(statuses)}"
    assert THEN_RUNS.runs[workflow_id] == 1, f"then ran {THEN_RUNS.runs[workflow_id]} times"
    stored = bench.table.get_item(
        TableName=bench.settings.TASKS_TABLE, Key={"id": {"S": WORKFLOW_KEY_PREFIX + workflow_id}}, ConsistentRead=True
    )["Item"]
    counted = len(stored["ended"]["M"])
    assert counted == children, f"{counted} of {children} children counted"
    finishes = sorted(_epoch(item["finishedAt"]["S"]) for item in items.values())
    first_attempt = next(entry["M"] for entry in then["history"]["L"] if entry["M"]["attempt"]["N"] == "1")
    then_started = _epoch(first_attempt["startedAt"]["S"])
    then_created = _epoch(then["createdAt"]["S"])
    counts = dict(counter.calls)
    updates = sum(n for name, n in counts.items() if name.startswith("UpdateItem"))
    size = dynamodb_item_bytes(stored)
    return {
        "workflow": workflow_id,
        "children": children,
        "throttle_rate": throttle_rate,
        "publish_seconds": round(published, 2),
        "drain_seconds": round(drained, 1),
        "children_span_seconds": round(finishes[-1] - finishes[0], 2),
        "fan_in_seconds": round(then_started - finishes[-1], 3),
        "then_written_after_seconds": round(then_created - finishes[-1], 3),
        "then_started_after_written_seconds": round(then_started - then_created, 3),
        "then_runs": THEN_RUNS.runs[workflow_id],
        "then_attempts": int(then["attempts"]["N"]),
        "then_status": then["status"]["S"],
        "then_reads": "childrenOf" if json.loads(then["result"]["S"])["childrenOf"] else "children",
        "workflow_item_calls": counts,
        "workflow_item_updates_per_child": round(updates / children, 3),
        "workflow_item_written_per_child": round(counts.get("UpdateItem written", 0) / children, 3),
        "workflow_item_attempts": counter.attempts,
        "workflow_item_attempts_per_child": round(counter.attempts / children, 3),
        "throttled_attempts": counter.throttled,
        "gave_up_calls": sum(n for name, n in counts.items() if name.endswith("gave up")),
        "item_bytes_first_write": counter.item_bytes[0] if counter.item_bytes else None,
        "item_bytes": size,
        "wru_per_write_at_end": math.ceil(size / KB),
        "wru_per_child": round(counter.wru / children, 2),
        "requests_per_child": {f"{s}.{op}": round(n / children, 3) for (s, op), n in sorted(counter.requests.items())},
    }


def measure(bench: InProcess, children: int, throttle_rate: float) -> dict[str, Any]:
    """The workflow without throttling, and again with `throttle_rate` of its item's writes throttled (if above 0)."""
    rows = [run(bench, children, 0.0)]
    if throttle_rate > 0:
        rows.append(run(bench, children, throttle_rate))
    section: dict[str, Any] = {"runs": rows}
    if len(rows) == 2:
        section["throttle_added_fan_in_seconds"] = round(rows[1]["fan_in_seconds"] - rows[0]["fan_in_seconds"], 3)
        section["throttle_added_drain_seconds"] = round(rows[1]["drain_seconds"] - rows[0]["drain_seconds"], 1)
    return section


def figures(section: dict[str, Any], date: str) -> dict[str, Any]:
    """What docs/bench-figures.json keeps of the section: the unthrottled run's cost per child."""
    row = section["runs"][0]
    return {
        "date": date,
        "children": row["children"],
        "workflow_item_updates_per_child": row["workflow_item_updates_per_child"],
        "item_bytes": row["item_bytes"],
        "wru_per_child": row["wru_per_child"],
        "fan_in_seconds": row["fan_in_seconds"],
    }


def render(section: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "fan-in: one workflow in process (children `simulate` queued whole, then 5 pollers, batches of 10;"
        " then = a bench type)",
        f"  {'children':>8} {'throttled':>9} {'publish s':>9} {'drain s':>7} {'fan-in s':>8}"
        f" {'(write / start)':>15} {'updates/child':>13} {'attempts/child':>14} {'item KB':>7}"
        f" {'WRU/write':>9} {'WRU/child':>9} {'then runs':>9}",
    ]
    for row in section["runs"]:
        share = f"{row['throttle_rate']:.0%} ({row['throttled_attempts']})"
        split = f"{row['then_written_after_seconds']:.2f} / {row['then_started_after_written_seconds']:.2f}"
        lines.append(
            f"  {row['children']:>8} {share:>9} {row['publish_seconds']:>9.1f} {row['drain_seconds']:>7.1f}"
            f" {row['fan_in_seconds']:>8.3f} {split:>15} {row['workflow_item_updates_per_child']:>13.3f}"
            f" {row['workflow_item_attempts_per_child']:>14.3f} {row['item_bytes'] / KB:>7.1f}"
            f" {row['wru_per_write_at_end']:>9} {row['wru_per_child']:>9.2f} {row['then_runs']:>9}"
        )
        lines.append(f"    calls on the workflow item: {_counts(row['workflow_item_calls'])}")
    if "throttle_added_fan_in_seconds" in section:
        lines.append(
            f"  throttling added {section['throttle_added_fan_in_seconds']:.3f} s to the fan-in and"
            f" {section['throttle_added_drain_seconds']:.1f} s to the drain; every child counted once, then run once"
        )
    lines.append(
        "  WRU: DynamoDB's rule (a started KB of the larger item, before or after), from each write's ALL_NEW"
        " answer; moto's ReturnConsumedCapacity is a constant"
    )
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
