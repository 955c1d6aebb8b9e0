"""The bench's `flow` section: a capped type's backlog, a rate-limited type's starts, a plain task's requests.

Three measurements, in this process against the embedded endpoint, each with a task type
of the bench's own registered here (docs/architecture.md, "Flow control"):
- capped: `concurrency=5`, a backlog of 2,000 tasks that each work 100 ms, queued straight
  onto the queue with SendMessageBatch before the consumers start. It must drain whole: the
  drain time against the ideal (2,000 x 100 ms / 5), the most attempts running at once, dead
  letters, attempts and deferrals (renewals) per task, AWS requests per task by service, and
  the writes of the cap's item per admitted attempt and per deferral;
- rated: `rate_limit="60/minute"` with the default burst (0), a backlog of 100 tasks (more
  than a minute's worth): the most starts in any 60 s window, against 60 + burst, and the
  spacing of consecutive starts;
- plain: the cost section's single-publish scenario (a type with no option) against the
  same scenario's figures as committed before flow control (BEFORE_FLOW_CONTROL).
Running counts come from the handlers' own start and end times, recorded in memory, not
from the flow items, so a cap or rate that leaked would show; deferrals come from the
consumer's `flow_deferred` events, attempts from the task items.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from tools.bench.cost import Usage, WireCounter
from tools.bench.inprocess import TERMINAL, InProcess, queue_empty, wait_for
from tools.bench.priority import queue_backlog

CAPPED_TYPE = "bench-capped"
CAP = 5
WORK_SECONDS = 0.1
RATED_TYPE = "bench-rated"
RATE_LIMIT = "60/minute"
RATE_COUNT, RATE_WINDOW_SECONDS = 60, 60.0
RATE_BURST = 0  # the default `rate_burst`: the type is registered without one
DEAD_LETTER_EVENTS = ("dead_lettered", "dead_lettered_duplicate")
# The cost section's single-publish scenario (200 tasks of `simulate`, POST /publish each) as
# `make bench` wrote it to docs/bench-figures.json at commit 2fd3cc6 (2026-12-01 11:17 UTC),
# the last before the flow gate was merged: requests per task on the wire.
BEFORE_FLOW_CONTROL_COMMIT = "2fd3cc6"
BEFORE_FLOW_CONTROL = {
    "api_requests": 1.0,
    "sqs_requests": 3.19,
    "dynamodb_requests": 3.0,
    "dynamodb.GetItem": 0.0,
    "dynamodb.PutItem": 1.0,
    "dynamodb.UpdateItem": 2.0,
}


# --- the pure pieces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One attempt as its handler saw it: epoch seconds at its start and its end."""

    task_id: str
    attempt: int
    start: float
    end: float


def most_at_once(runs: list[Run]) -> int:
    """The most runs in progress at any instant, each over [start, end): one ending as another starts is not two."""
    events = sorted([(run.start, 1) for run in runs] + [(run.end, -1) for run in runs])  # -1 sorts first at a tie
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def most_in_window(starts: list[float], window: float) -> int:
    """The most starts in any half-open window [t, t + window) of the given length.

    Some busiest window begins at a start, so it is enough to count from each one.
    """
    ordered = sorted(starts)
    return max((bisect.bisect_left(ordered, first + window) - n for n, first in enumerate(ordered)), default=0)


def spacing(starts: list[float]) -> tuple[float, float] | None:
    """The smallest and the median gap between consecutive starts; None for fewer than two."""
    ordered = sorted(starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    return (min(gaps), statistics.median(gaps)) if gaps else None


# --- what is recorded while a scenario runs -------------------------------------------------------


class Runs:
    """The handlers' own records of their attempts, from every consumer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[Run] = []

    @contextmanager
    def timing(self, task_id: str, attempt: int) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            run = Run(task_id, attempt, start, time.time())
            with self._lock:
                self._runs.append(run)

    def of(self, prefix: str) -> list[Run]:
        with self._lock:
            return [run for run in self._runs if run.task_id.startswith(prefix)]


RUNS = Runs()


class FlowEvents(logging.Handler):
    """Counts the consumer's `flow_deferred` events per task and its dead-letter events."""

    def __init__(self) -> None:
        super().__init__()
        self.deferrals: Counter[str] = Counter()
        self.deferred_by: Counter[str] = Counter()
        self.dead_letters = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            if record.msg == "flow_deferred":
                self.deferrals[getattr(record, "taskId", "?")] += 1
                self.deferred_by[getattr(record, "deferredBy", "?")] += 1
            elif record.msg in DEAD_LETTER_EVENTS:
                self.dead_letters += 1

    @contextmanager
    def listening(self) -> Iterator[FlowEvents]:
        from chalicelib.logs import EVENTS_LOGGER

        events = logging.getLogger(EVENTS_LOGGER)
        events.addHandler(self)
        try:
            yield self
        finally:
            events.removeHandler(self)


@dataclass
class FlowWrites:
    """UpdateItems on flow items, by item key: those that wrote and those their condition refused."""

    written: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    # The GCRA's theoretical arrival times each admitted start wrote (epoch ms): one interval
    # past the gate's own time of the start, so their gaps are the gate's spacing of starts.
    tats: list[int] = field(default_factory=list)


class FlowCounter(WireCounter):
    """The wire counter, also counting the flow table's UpdateItems per item and outcome, and timing
    every DynamoDB call (retries included): an admitted attempt holds its slot across four of them."""

    def __init__(self, flow_table: str) -> None:
        super().__init__()
        self.flow_table = flow_table
        self.flow = FlowWrites()
        self.dynamodb_seconds: list[float] = []
        self._flow_lock = threading.Lock()

    def session(self) -> boto3.session.Session:
        session = super().session()
        session.events.register("before-parameter-build.dynamodb.UpdateItem", self._item)
        session.events.register("after-call.dynamodb.UpdateItem", self._outcome)
        session.events.register("before-parameter-build.dynamodb", self._started)
        session.events.register("after-call.dynamodb", self._ended)
        return session

    def _started(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.monotonic()

    def _ended(self, context: dict[str, Any], **_: Any) -> None:
        if "bench_started" in context:
            with self._flow_lock:
                self.dynamodb_seconds.append(time.monotonic() - context["bench_started"])

    def _item(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == self.flow_table:
            context["flow_item"] = params["Key"]["key"]["S"]
            tat = params.get("ExpressionAttributeValues", {}).get(":tat")
            # A start's write (a refund's, which sets tat back, writes no expiry).
            if tat is not None and "expiresAt" in params.get("UpdateExpression", ""):
                context["flow_tat"] = int(tat["N"])

    def _outcome(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        item = context.get("flow_item")
        if item is None:
            return
        with self._flow_lock:
            refused = parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
            (self.flow.refused if refused else self.flow.written)[item] += 1
            if not refused and "flow_tat" in context:
                self.flow.tats.append(context["flow_tat"])


# --- the scenarios --------------------------------------------------------------------------------


def register_types() -> None:
    """The section's task types: capped at CAP and rate-limited at RATE_LIMIT, each working WORK_SECONDS."""
    from chalicelib.registry import REGISTRY, TaskContext, task_type

    def work(payload: Any, context: TaskContext) -> dict[str, Any]:
        with RUNS.timing(context.task_id, context.attempt):
            time.sleep(WORK_SECONDS)
        return {}

    if REGISTRY.get(CAPPED_TYPE) is None:
        task_type(CAPPED_TYPE, concurrency=CAP)(work)
    if REGISTRY.get(RATED_TYPE) is None:
        task_type(RATED_TYPE, rate_limit=RATE_LIMIT)(work)


def backlog(bench: InProcess, name: str, task_type: str, count: int, timeout: float) -> dict[str, Any]:
    """Queue `count` tasks of `task_type` whole, then run the consumers until every message is settled."""
    counter = FlowCounter(bench.settings.FLOW_TABLE)
    usage = Usage(tasks=count, wire=counter)
    bench.use(usage)
    quiet = boto3.client("sqs")  # uncounted: the bench's backlog and its own look at the queues
    urls = [
        quiet.get_queue_url(QueueName=q)["QueueUrl"]
        for q in (bench.settings.TASKS_QUEUE, bench.settings.DEAD_LETTER_QUEUE)
    ]
    queued_in = queue_backlog(quiet, urls[0], count, name, task_type)
    with FlowEvents().listening() as events, bench.logging_to(usage), bench.consumers(usage):
        started = time.time()
        wait_for(lambda: all(queue_empty(quiet, url) for url in urls), timeout, f"{name}'s backlog to drain", 1.0)
        settled = time.time() - started
    items = bench.items_of([f"{name}-{n}" for n in range(count)])
    runs = RUNS.of(f"{name}-")
    statuses = Counter(item["status"]["S"] for item in items)
    attempts = Counter(int(item.get("attempts", {}).get("N", 0)) for item in items)
    deferrals = [events.deferrals.get(f"{name}-{n}", 0) for n in range(count)]
    per_task = usage.per_task()
    return {
        "name": name,
        "type": task_type,
        "tasks": count,
        "backlog_queued_seconds": round(queued_in, 1),
        "drain_seconds": round(max(run.end for run in runs) - started, 1) if runs else None,
        "settled_seconds": round(settled, 1),
        "statuses": dict(statuses),
        "terminal": sum(statuses[status] for status in TERMINAL),
        "runs": len(runs),
        "most_at_once": most_at_once(runs),
        "attempts_per_task": {str(n): tasks for n, tasks in sorted(attempts.items())},
        "dead_letters": events.dead_letters,
        "deferrals_per_task": {
            "mean": round(statistics.mean(deferrals), 2),
            "median": statistics.median(deferrals),
            "max": max(deferrals),
        },
        "deferred_by": dict(events.deferred_by),
        "requests_per_task": {
            "api": round(per_task["api_requests"], 3),
            "sqs": round(per_task["sqs_requests"], 3),
            "dynamodb": round(per_task["dynamodb_requests"], 3),
            "dynamodb_flow_table": round(
                (sum(counter.flow.written.values()) + sum(counter.flow.refused.values())) / count, 3
            ),
        },
        "requests": {f"{s}.{op}": n for (s, op), n in sorted(usage.wire.requests.items())},
        "dynamodb_call_ms_median": round(statistics.median(counter.dynamodb_seconds) * 1000, 1)
        if counter.dynamodb_seconds
        else None,
        "flow_writes": {"written": dict(counter.flow.written), "refused": dict(counter.flow.refused)},
        "starts": sorted(run.start for run in runs),
        "admitted_at": [tat / 1000 for tat in sorted(counter.flow.tats)],
    }


def writes_per_attempt(row: dict[str, Any], item: str) -> tuple[float, float]:
    """The item's UpdateItems that wrote, per admitted attempt, and those refused, per deferral."""
    admitted = row["runs"]
    deferred = sum(row["deferred_by"].values())
    written = row["flow_writes"]["written"].get(item, 0)
    refused = row["flow_writes"]["refused"].get(item, 0)
    return written / admitted if admitted else 0.0, refused / deferred if deferred else 0.0


def plain_comparison(plain: dict[str, Any]) -> dict[str, Any]:
    """The plain single-publish scenario's requests per task now, beside BEFORE_FLOW_CONTROL."""
    per, requests, tasks = plain["per_task"], plain["requests"], plain["tasks"]
    after = {
        "api_requests": per["api_requests"],
        "sqs_requests": per["sqs_requests"],
        "dynamodb_requests": per["dynamodb_requests"],
        **{op: requests.get(op, 0) / tasks for op in ("dynamodb.GetItem", "dynamodb.PutItem", "dynamodb.UpdateItem")},
    }
    return {
        "tasks": tasks,
        "before_commit": BEFORE_FLOW_CONTROL_COMMIT,
        "before": BEFORE_FLOW_CONTROL,
        "after": {name: round(value, 4) for name, value in after.items()},
        "after_by_operation": {op: round(n / tasks, 4) for op, n in sorted(requests.items())},
        "pause_view_share_of_dynamodb": round(after["dynamodb.GetItem"] / after["dynamodb_requests"], 4)
        if after["dynamodb_requests"]
        else 0.0,
    }


def measure(bench: InProcess, plain: dict[str, Any], capped_tasks: int, rated_tasks: int) -> dict[str, Any]:
    """The capped drain, the rated backlog and the plain task's comparison."""
    register_types()
    capped = backlog(bench, "flow-capped", CAPPED_TYPE, capped_tasks, 900)
    rated = backlog(bench, "flow-rated", RATED_TYPE, rated_tasks, 900)
    semaphore, semaphore_refused = writes_per_attempt(capped, f"concurrency#{CAPPED_TYPE}")
    rate, rate_refused = writes_per_attempt(rated, f"rate#{RATED_TYPE}")
    gaps, admitted = spacing(rated["starts"]), spacing(rated["admitted_at"])
    listed = ("starts", "admitted_at")
    return {
        "capped": {
            **{k: v for k, v in capped.items() if k not in listed},
            "cap": CAP,
            "work_seconds": WORK_SECONDS,
            "ideal_drain_seconds": round(capped_tasks * WORK_SECONDS / CAP, 1),
            "item_writes_per_attempt": round(semaphore, 3),
            "item_refused_writes_per_deferral": round(semaphore_refused, 3),
        },
        "rated": {
            **{k: v for k, v in rated.items() if k not in listed},
            "rate_limit": RATE_LIMIT,
            "burst": RATE_BURST,
            "allowed_per_window": RATE_COUNT + RATE_BURST,
            "most_starts_in_a_window": most_in_window(rated["starts"], RATE_WINDOW_SECONDS),
            "start_spacing_min_s": round(gaps[0], 3) if gaps else None,
            "start_spacing_median_s": round(gaps[1], 3) if gaps else None,
            # The same from the gate's own times of the starts (the rate item's writes): the
            # handlers' starts also carry the lease's acquire between the gate and the handler.
            "gate_most_starts_in_a_window": most_in_window(rated["admitted_at"], RATE_WINDOW_SECONDS),
            "gate_spacing_min_s": round(admitted[0], 3) if admitted else None,
            "gate_spacing_median_s": round(admitted[1], 3) if admitted else None,
            "item_writes_per_attempt": round(rate, 3),
            "item_refused_writes_per_deferral": round(rate_refused, 3),
        },
        "plain": plain_comparison(plain),
    }


def figures(section: dict[str, Any], date: str) -> dict[str, Any]:
    """What docs/bench-figures.json keeps of the section: the flow items' writes per admitted attempt."""
    return {
        "date": date,
        "semaphore": section["capped"]["item_writes_per_attempt"],
        "rate": section["rated"]["item_writes_per_attempt"],
    }


# --- the table ------------------------------------------------------------------------------------


def render(section: dict[str, Any]) -> list[str]:
    capped, rated, plain = section["capped"], section["rated"], section["plain"]
    requests = capped["requests_per_task"]
    deferrals = capped["deferrals_per_task"]
    lines = [
        "",
        "flow: bench-only types in process (5 pollers, batches of 10), each attempt working"
        f" {WORK_SECONDS * 1000:g} ms",
        f"  capped at {capped['cap']}: {capped['tasks']} tasks queued in {capped['backlog_queued_seconds']} s, then"
        f" drained in {capped['drain_seconds']} s (ideal {capped['ideal_drain_seconds']} s; messages settled"
        f" {capped['settled_seconds']} s)",
        f"    {'terminal':>8} {'statuses':<18} {'at once':>7} {'attempts/task':<13} {'dead letters':>12}"
        f" {'deferrals/task mean/median/max':>30}",
        f"    {capped['terminal']:>8} {_counts(capped['statuses']):<18} {capped['most_at_once']:>7}"
        f" {_counts(capped['attempts_per_task']):<13} {capped['dead_letters']:>12}"
        f" {deferrals['mean']:>16.2f} / {deferrals['median']:g} / {deferrals['max']}",
        f"    requests per task: API {requests['api']:.2f}, SQS {requests['sqs']:.2f}, DynamoDB"
        f" {requests['dynamodb']:.2f} (flow table {requests['dynamodb_flow_table']:.2f}); the cap's item:"
        f" {capped['item_writes_per_attempt']:.2f} writes per attempt,"
        f" {capped['item_refused_writes_per_deferral']:.2f} refused per deferral",
        f"    a DynamoDB call took {capped['dynamodb_call_ms_median']} ms (median) on the embedded endpoint: an"
        " admitted attempt holds its slot across four (the slot, the lease, the outcome, the release)",
        f"  rated {rated['rate_limit']} (burst {rated['burst']}): {rated['tasks']} tasks drained in"
        f" {rated['drain_seconds']} s; {_counts(rated['statuses'])}, attempts/task"
        f" {_counts(rated['attempts_per_task'])}, dead letters {rated['dead_letters']}",
        f"    most starts in any {RATE_WINDOW_SECONDS:g} s window: {rated['most_starts_in_a_window']}"
        f" (allowed {rated['allowed_per_window']}); spacing of starts min {rated['start_spacing_min_s']} s,"
        f" median {rated['start_spacing_median_s']} s",
        f"    at the gate (the rate item's writes): most in any {RATE_WINDOW_SECONDS:g} s window"
        f" {rated['gate_most_starts_in_a_window']}, spacing min {rated['gate_spacing_min_s']} s, median"
        f" {rated['gate_spacing_median_s']} s; the rate's item: {rated['item_writes_per_attempt']:.2f}"
        f" writes per attempt, {rated['item_refused_writes_per_deferral']:.2f} refused per deferral,"
        f" deferrals/task mean {rated['deferrals_per_task']['mean']:.2f}",
        f"  a plain task (single publish, {plain['tasks']} tasks), requests per task before flow control"
        f" ({plain['before_commit']}) -> now:",
    ]
    for name in plain["before"]:
        lines.append(f"    {name:<22} {plain['before'][name]:>6.3f} -> {plain['after'][name]:.3f}")
    lines.append(f"    the pause view's GetItem: {plain['pause_view_share_of_dynamodb']:.1%} of the DynamoDB requests")
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())
