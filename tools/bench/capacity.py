"""Capacity on paper: which AWS limit binds first at 100, 1,000 and 10,000 tasks a second.

docs/capacity.md's tables are this module's output, written between two marker comments
(`make capacity`); tests/unit/test_capacity.py recomputes them and fails when the doc
differs. Three inputs, kept apart because they are known in different ways:
- measured: the AWS requests, write units and consumer invocations per task that
  `make bench`'s cost section counts on the wire (docs/bench-figures.json);
- documented: AWS's quotas, the named constants below, each with the page it was read from;
- configured: the prod stage's settings in .chalice/config.json (reserved concurrency, the
  API stage's throttle, the event source's maximum concurrency, attempts and backoff).
Every load is a task rate times a per-task figure, so a limit is reached at its quota over
its per-task figure; nothing is fitted. No library plans AWS capacity from a project's own
request counts, hence this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.consume.backoff import backoff_ceiling
from chalicelib.flow.pause import PAUSE_REFRESH_SECONDS
from chalicelib.tasks.index import SHARDS
from local.config import PROJECT_DIR
from tools.bench.cost import ASSUMPTIONS

FIGURES = PROJECT_DIR / "docs" / "bench-figures.json"
CONFIG = PROJECT_DIR / ".chalice" / "config.json"
DOC = PROJECT_DIR / "docs" / "capacity.md"
BEGIN = "<!-- capacity:begin (make capacity writes this part; edit tools/bench/capacity.py) -->"
END = "<!-- capacity:end -->"

STAGE = "prod"
RATES = (100, 1_000, 10_000)
FAILING = (0.0, 0.3)  # the chance that an attempt fails; 0.3 is the stages' DEFAULT_FAILURE_CHANCE
PUBLISH = {"single": "POST /publish", "batch100": "POST /publish/batch of 100"}
RETRIED = "fails-once"  # the bench's scenario whose first attempt fails and second succeeds


@dataclass(frozen=True)
class Quota:
    """One of AWS's documented limits, and where it is written."""

    value: float
    unit: str
    source: str


# AWS's documented defaults, read on QUOTAS_READ from the pages named (AWS documentation,
# us-east-1 and most Regions; some newer Regions have lower API Gateway defaults).
QUOTAS_READ = "2026-12-01"
DYNAMODB_PARTITION_WRITES = Quota(
    1_000,
    "WCU/s per partition",
    "DynamoDB Developer Guide, Understanding DynamoDB warm throughput in different scenarios",
)
DYNAMODB_PARTITION_READS = Quota(3_000, "RCU/s per partition", DYNAMODB_PARTITION_WRITES.source)
DYNAMODB_TABLE_WRITES = Quota(
    40_000, "WRU/s per on-demand table", "DynamoDB Developer Guide, DynamoDB maximum throughput for on-demand tables"
)
DYNAMODB_NEW_TABLE_WRITES = Quota(
    4_000,
    "writes/s a new on-demand table sustains (it then takes up to twice its previous peak within 30 minutes)",
    "DynamoDB Developer Guide, Pre-warming a table for on-demand capacity mode",
)
LAMBDA_ACCOUNT_CONCURRENCY = Quota(
    1_000,
    "concurrent executions per account and Region",
    "Lambda Developer Guide, Lambda quotas",
)
LAMBDA_SQS_MAPPING_CONCURRENCY = Quota(
    1_250,
    "concurrent invokes per SQS event source mapping (standard mode; MaximumConcurrency takes 2 to 1,000)",
    "Lambda Developer Guide, Configuring scaling behavior for SQS event source mappings",
)
LAMBDA_SQS_START_CONCURRENCY = 5  # ... a mapping starts at 5 concurrent invokes
LAMBDA_SQS_SCALE_PER_MINUTE = 300  # ... and adds up to 300 a minute (60 before November 2023)
SQS_IN_FLIGHT = Quota(
    120_000, "in-flight messages per standard queue", "SQS Developer Guide, Amazon SQS standard queue quotas"
)
API_GATEWAY_ACCOUNT = Quota(
    10_000, "requests/s per account and Region (burst 5,000)", "API Gateway Developer Guide, Amazon API Gateway quotas"
)
QUOTAS = {
    "DynamoDB, a partition's writes": DYNAMODB_PARTITION_WRITES,
    "DynamoDB, a partition's reads": DYNAMODB_PARTITION_READS,
    "DynamoDB, an on-demand table's writes": DYNAMODB_TABLE_WRITES,
    "DynamoDB, a new on-demand table": DYNAMODB_NEW_TABLE_WRITES,
    "Lambda, concurrency": LAMBDA_ACCOUNT_CONCURRENCY,
    "Lambda, an SQS event source mapping": LAMBDA_SQS_MAPPING_CONCURRENCY,
    "SQS, in-flight messages": SQS_IN_FLIGHT,
    "API Gateway, the account's throttle": API_GATEWAY_ACCOUNT,
}
# SQS standard queues take "a nearly unlimited number of API calls per second, per API action"
# (SQS Developer Guide, Amazon SQS standard queues): no ceiling, so requests/s are shown, not a limit.

# Flow control's writes per attempt, from the design (chalicelib/flow/): a capped type's
# semaphore item `concurrency#<type>` takes one UpdateItem when an attempt starts and one when
# it is released; a rate-limited type's `rate#<type>` one when it starts. The bench's flow
# section measures them (tools/bench/flow.py: the item's writes per admitted attempt) into the
# "flow" part of docs/bench-figures.json, which replaces these.
DESIGN_FLOW_WRITES = {"semaphore": 2.0, "rate": 1.0}

# The listing index's writes (chalicelib/tasks/index.py): a failed attempt that is retried puts its
# task into RETRYING#<shard> and the next acquire takes it out; a last failed attempt puts it
# into FAILED#<shard>. One WCU each: an index entry is well under 1 KB.
INDEX_WRITES_PER_RETRIED_ATTEMPT = 2
INDEX_WRITES_PER_LAST_FAILURE = 1
# Equal jitter (chalicelib/consume/backoff.py) hides a retry for half its ceiling plus up to half again.
MEAN_BACKOFF_OF_CEILING = 0.75
PAUSES_ITEM_RCU = 1  # one strongly consistent read of an item under 4 KB


@dataclass(frozen=True)
class Stage:
    """The settings of .chalice/config.json that move a limit."""

    name: str
    api_rate_limit: float
    api_burst_limit: float
    api_reserved: int
    consumer_reserved: int
    consumer_max_concurrency: int
    max_attempts: int
    backoff_base: float
    backoff_max: float

    @classmethod
    def of(cls, config: dict[str, Any], name: str = STAGE) -> Stage:
        stage = config["stages"][name]
        env = {**config["environment_variables"], **stage["environment_variables"]}
        functions = stage["lambda_functions"]
        return cls(
            name=name,
            api_rate_limit=stage["api_throttle"]["rate_limit"],
            api_burst_limit=stage["api_throttle"]["burst_limit"],
            api_reserved=functions["api_handler"]["reserved_concurrency"],
            consumer_reserved=functions["process_tasks"]["reserved_concurrency"],
            consumer_max_concurrency=int(env["CONSUMER_MAX_CONCURRENCY"]),
            max_attempts=int(env["MAX_ATTEMPTS"]),
            backoff_base=float(env["BACKOFF_BASE_SECONDS"]),
            backoff_max=float(env["BACKOFF_MAX_SECONDS"]),
        )


@dataclass(frozen=True)
class PerTask:
    """What one task costs at a chance of failing attempts: the bench's figures, retries added."""

    attempts: float
    retried: float  # failed attempts that another attempt follows
    last_failures: float  # tasks whose every attempt fails
    api_requests: float
    sqs_requests: float
    wru: float
    api_seconds: float
    consumer_seconds: float
    in_flight_seconds: float  # how long the task's messages are in flight, all attempts and backoffs


MEASURED = ("api_requests", "sqs_requests", "wru", "api_seconds", "consumer_seconds")


def per_task(figures: dict[str, Any], publish: str, failing: float, stage: Stage) -> PerTask:
    """The publish mode's measured task, plus what a retried attempt adds times the retried attempts.

    A retried attempt's cost is measured: the bench's task that fails once then succeeds, less
    the task that succeeds at once. Each attempt fails independently with `failing`, up to the
    stage's MAX_ATTEMPTS; a task whose last attempt fails is counted like one that completes
    (its dead-letter trip is not in the bench's figures).
    """
    scenarios = figures["scenarios"]
    base, once, plain = (scenarios[name]["per_task"] for name in (publish, RETRIED, "single"))
    retried = sum(failing**k for k in range(1, stage.max_attempts))
    measured = {name: base[name] + retried * (once[name] - plain[name]) for name in MEASURED}
    hidden = sum(
        failing**k * MEAN_BACKOFF_OF_CEILING * backoff_ceiling(k, stage.backoff_base, stage.backoff_max)
        for k in range(1, stage.max_attempts)
    )
    return PerTask(
        attempts=1 + retried,
        retried=retried,
        last_failures=failing**stage.max_attempts,
        in_flight_seconds=(1 + retried) * ASSUMPTIONS["consumer_seconds"] + hidden,
        **measured,
    )


def index_writes(task: PerTask) -> float:
    """Listing-index writes per task, over all shards."""
    return task.retried * INDEX_WRITES_PER_RETRIED_ATTEMPT + task.last_failures * INDEX_WRITES_PER_LAST_FAILURE


def index_shard_writes(task: PerTask) -> float:
    """Writes per second to the hottest listing-index shard, per task a second."""
    retrying = task.retried * INDEX_WRITES_PER_RETRIED_ATTEMPT / SHARDS
    failed = task.last_failures * INDEX_WRITES_PER_LAST_FAILURE / SHARDS
    return max(retrying, failed)


def consumer_concurrency(task: PerTask) -> float:
    return task.consumer_seconds


@dataclass(frozen=True)
class Limit:
    """A ceiling and the load on it per task a second."""

    name: str
    short: str
    # "prod setting", "AWS quota", "AWS warm-up" (a new table's, which on-demand outgrows in time)
    # or "capped type" (a flow-controlled type's own item, weighed apart: other types never touch it)
    kind: str
    quota: float
    unit: str
    load: Callable[[PerTask], float]
    moved_by: str

    def ceiling(self, task: PerTask) -> float | None:
        """Tasks a second at which the limit is reached; None when the task puts no load on it."""
        per = self.load(task)
        return self.quota / per if per > 0 else None

    def use(self, task: PerTask, tasks_per_second: float) -> float:
        return tasks_per_second * self.load(task) / self.quota


def limits(stage: Stage, flow: dict[str, float]) -> list[Limit]:
    """Every limit the table weighs, the stage's own settings first."""
    consumer_cap = min(stage.consumer_reserved, stage.consumer_max_concurrency)
    return [
        Limit(
            f"API Gateway stage throttle ({stage.name} `api_throttle`, burst {stage.api_burst_limit:,.0f})",
            "stage throttle",
            "prod setting",
            stage.api_rate_limit,
            "requests/s",
            lambda t: t.api_requests,
            "`api_throttle.rate_limit` in .chalice/config.json; batch publishes (100 tasks a request)",
        ),
        Limit(
            f"api_handler reserved concurrency ({stage.name})",
            "api_handler concurrency",
            "prod setting",
            stage.api_reserved,
            "concurrent",
            lambda t: t.api_seconds,
            "`reserved_concurrency` of api_handler; batch publishes",
        ),
        Limit(
            f"process_tasks concurrency ({stage.name}: reserved {stage.consumer_reserved}, "
            f"event source maximum {stage.consumer_max_concurrency})",
            "process_tasks concurrency",
            "prod setting",
            consumer_cap,
            "concurrent",
            consumer_concurrency,
            "`reserved_concurrency` of process_tasks with CONSUMER_MAX_CONCURRENCY, together; "
            "fuller batches (CONSUMER_MAX_BATCHING_WINDOW_SECONDS)",
        ),
        Limit(
            "API Gateway account throttle",
            "account API throttle",
            "AWS quota",
            API_GATEWAY_ACCOUNT.value,
            API_GATEWAY_ACCOUNT.unit,
            lambda t: t.api_requests,
            "a Service Quotas increase; batch publishes",
        ),
        Limit(
            "Lambda concurrency, all functions unreserved",
            "account Lambda concurrency",
            "AWS quota",
            LAMBDA_ACCOUNT_CONCURRENCY.value,
            "concurrent executions",
            lambda t: t.api_seconds + t.consumer_seconds,
            "a Service Quotas increase (to tens of thousands); fuller batches",
        ),
        Limit(
            "SQS event source mapping concurrency",
            "event source concurrency",
            "AWS quota",
            LAMBDA_SQS_MAPPING_CONCURRENCY.value,
            "concurrent invokes",
            consumer_concurrency,
            "the mapping's provisioned mode; more queues, each with its mapping (one per priority class)",
        ),
        Limit(
            "SQS in-flight messages (running, and hidden for a backoff)",
            "SQS in flight",
            "AWS quota",
            SQS_IN_FLIGHT.value,
            "messages",
            lambda t: t.in_flight_seconds,
            "BACKOFF_BASE_SECONDS and BACKOFF_MAX_SECONDS (a retry waits in flight); a support request; more queues",
        ),
        Limit(
            "Tasks table writes, on-demand table quota",
            "table writes",
            "AWS quota",
            DYNAMODB_TABLE_WRITES.value,
            "WRU/s",
            lambda t: t.wru,
            "a Service Quotas increase",
        ),
        Limit(
            "Tasks table writes, a new on-demand table",
            "new table's writes",
            "AWS warm-up",
            DYNAMODB_NEW_TABLE_WRITES.value,
            "WRU/s",
            lambda t: t.wru,
            "warm throughput (pre-warming the table); time: on-demand takes twice its previous peak",
        ),
        Limit(
            f"Listing index, hottest of {SHARDS} shards (RETRYING#n)",
            "index shard",
            "AWS quota",
            DYNAMODB_PARTITION_WRITES.value,
            "WCU/s per partition",
            index_shard_writes,
            "`SHARDS` in chalicelib/tasks/index.py (a page then queries more shards)",
        ),
        Limit(
            f"Pauses item reads (each consumer container every {PAUSE_REFRESH_SECONDS:g} s)",
            "pauses item",
            "AWS quota",
            DYNAMODB_PARTITION_READS.value,
            "RCU/s per partition",
            lambda t: consumer_concurrency(t) / PAUSE_REFRESH_SECONDS * PAUSES_ITEM_RCU,
            "`PAUSE_REFRESH_SECONDS` in chalicelib/flow/pause.py",
        ),
        Limit(
            "Semaphore item `concurrency#<type>`, every task of one capped type",
            "semaphore item",
            "capped type",
            DYNAMODB_PARTITION_WRITES.value,
            "WCU/s per partition",
            lambda t: t.attempts * flow["semaphore"],
            "per-key caps (an item per key); the type split into several types",
        ),
        Limit(
            "Rate item `rate#<type>`, every task of one rate-limited type",
            "rate item",
            "capped type",
            DYNAMODB_PARTITION_WRITES.value,
            "WCU/s per partition",
            lambda t: t.attempts * flow["rate"],
            "per-key rate limits (an item per key)",
        ),
    ]


def flow_writes(figures: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Flow control's writes per attempt: the bench's, once it measures them, else the design's."""
    measured = figures.get("flow")
    if measured:
        writes = {name: float(measured.get(name, design)) for name, design in DESIGN_FLOW_WRITES.items()}
        # The flow section can run without the cost section, so it carries its own date.
        return writes, f"measured by the bench's flow section on {measured.get('date', figures['date'])}"
    return dict(DESIGN_FLOW_WRITES), "from the design (no flow figures from the bench yet)"


# --- the tables -----------------------------------------------------------------------------------


def number(value: float | None) -> str:
    if value is None:
        return "never"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def percent(use: float) -> str:
    return f"{use * 100:,.0f}%" if use >= 0.01 else "<1%"


def render(figures: dict[str, Any], config: dict[str, Any]) -> str:
    """The doc's generated part: the inputs, where each limit binds, and the three rates."""
    stage = Stage.of(config)
    flow, flow_source = flow_writes(figures)
    table = limits(stage, flow)
    cases = [(publish, failing) for publish in PUBLISH for failing in FAILING]
    tasks = {case: per_task(figures, *case, stage) for case in cases}
    label = {case: f"{case[0]}, {case[1]:.0%}" for case in cases}
    tasks_measured = ", ".join(f"{name} {s['tasks']}" for name, s in figures["scenarios"].items())
    lines = [
        f"Bench figures of {figures['date']} ({figures['machine']}; tasks per scenario: {tasks_measured}); "
        f"AWS quotas read {QUOTAS_READ}; the `{stage.name}` stage's settings; flow control's writes per "
        f"attempt {flow_source} (semaphore {flow['semaphore']:g}, rate {flow['rate']:g}).",
        "",
        f"| AWS's documented quota (defaults, read {QUOTAS_READ}) | value | where |",
        "| --- | ---: | --- |",
        *(f"| {name} | {quota.value:,.0f} {quota.unit} | {quota.source} |" for name, quota in QUOTAS.items()),
        f"| Lambda, an SQS event source mapping's scaling | from {LAMBDA_SQS_START_CONCURRENCY}, "
        f"+{LAMBDA_SQS_SCALE_PER_MINUTE} a minute | {LAMBDA_SQS_MAPPING_CONCURRENCY.source} |",
        "| SQS, API requests to a standard queue | nearly unlimited per action | SQS Developer Guide, "
        "Amazon SQS standard queues |",
        "",
        "Per task, by publish mode and chance of a failing attempt (single = `POST /publish`, "
        "batch100 = `POST /publish/batch` of 100):",
        "",
        "| per task | " + " | ".join(label[case] for case in cases) + " |",
        "| --- | " + " | ".join("---:" for _ in cases) + " |",
    ]
    api_ms, consumer_ms = (round(ASSUMPTIONS[name] * 1000) for name in ("api_seconds", "consumer_seconds"))
    rows: list[tuple[str, Callable[[PerTask], float]]] = [
        ("attempts", lambda t: t.attempts),
        ("API Gateway requests (measured)", lambda t: t.api_requests),
        ("SQS requests (measured)", lambda t: t.sqs_requests),
        ("tasks table WRU (measured)", lambda t: t.wru),
        ("listing-index writes (index.py's rules)", index_writes),
        (f"api_handler seconds (measured requests x assumed {api_ms} ms)", lambda t: t.api_seconds),
        (f"process_tasks seconds (measured invocations x assumed {consumer_ms} ms)", lambda t: t.consumer_seconds),
        (f"seconds in flight in SQS (attempts x {consumer_ms} ms + backoffs)", lambda t: t.in_flight_seconds),
    ]
    for name, value in rows:
        lines.append(f"| {name} | " + " | ".join(f"{value(tasks[case]):.3f}" for case in cases) + " |")
    lines += [
        "",
        "Where each limit is reached, in tasks per second (its quota over its load per task):",
        "",
        "| limit | kind | quota | " + " | ".join(label[case] for case in cases) + " | moved by |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in cases) + " | --- |",
    ]
    for limit in table:
        ceilings = " | ".join(number(limit.ceiling(tasks[case])) for case in cases)
        lines.append(
            f"| {limit.name} | {limit.kind} | {limit.quota:,.0f} {limit.unit} | {ceilings} | {limit.moved_by} |"
        )
    lines += [
        "",
        "At 100, 1,000 and 10,000 tasks a second: the load, and the limit nearest (over 100%: it binds).",
        "",
        "| tasks/s | publish, failing | API req/s | Lambda concurrent | SQS req/s | in flight | table WRU/s "
        "| hottest index shard WCU/s | nearest prod setting | nearest AWS quota | a new table's writes "
        "| one capped type's semaphore item |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    semaphore = next(limit for limit in table if limit.short == "semaphore item")
    warm = next(limit for limit in table if limit.kind == "AWS warm-up")
    for rate in RATES:
        for case in cases:
            task = tasks[case]
            nearest = {kind: _nearest(table, kind, task, rate) for kind in ("prod setting", "AWS quota")}
            lines.append(
                f"| {rate:,} | {label[case]} | {number(rate * task.api_requests)} "
                f"| {number(rate * (task.api_seconds + task.consumer_seconds))} | {number(rate * task.sqs_requests)} "
                f"| {number(rate * task.in_flight_seconds)} | {number(rate * task.wru)} "
                f"| {number(rate * index_shard_writes(task))} | {nearest['prod setting']} | {nearest['AWS quota']} "
                f"| {_use(warm, task, rate)} | {_use(semaphore, task, rate)} |"
            )
    heaviest = tasks[("single", FAILING[-1])]
    ramp = [f"{rate:,}/s: {_ramp_minutes(rate * consumer_concurrency(heaviest)):.1f} min" for rate in RATES]
    lines += [
        "",
        f"The event source's ramp from {LAMBDA_SQS_START_CONCURRENCY} to the process_tasks concurrency a "
        f"single-publish load with {FAILING[-1]:.0%} failing attempts needs (up to "
        f"{LAMBDA_SQS_SCALE_PER_MINUTE} more a minute, were nothing capped): " + "; ".join(ramp) + ".",
    ]
    lines += workflow_item_lines(figures)
    return "\n".join(lines)


def workflow_item_lines(figures: dict[str, Any]) -> list[str]:
    """A workflow's own item, apart from the per-task table: every child's end is one write on it, so one
    partition's write rate bounds how fast one workflow's children can be counted, whatever the table's."""
    fanin = figures.get("fanin")
    if not fanin:
        return []
    children, wru = fanin["children"], fanin["wru_per_child"]
    quota = DYNAMODB_PARTITION_WRITES.value
    return [
        "",
        f"A workflow's item (the bench's fan-in section on {fanin['date']}: {children:,} children,"
        f" {fanin['workflow_item_updates_per_child']:g} writes on the item per child, the item"
        f" {fanin['item_bytes'] / 1024:,.1f} KB at the end, {wru:g} WRU per child by the 1 KB rule): at"
        f" {quota:,.0f} WCU/s per partition one workflow's children are counted at most"
        f" {number(quota / wru)} a second; {children:,} ending together take"
        f" {number(children * wru / quota)} s of its partition, throttled and retried past that"
        " (docs/workflows.md, Cost).",
    ]


def _nearest(table: list[Limit], kind: str, task: PerTask, rate: float) -> str:
    candidates = [limit for limit in table if limit.kind == kind]
    limit = max(candidates, key=lambda candidate: candidate.use(task, rate))
    return _use(limit, task, rate, named=True)


def _use(limit: Limit, task: PerTask, rate: float, named: bool = False) -> str:
    use = limit.use(task, rate)
    text = f"{limit.short} {percent(use)}" if named else percent(use)
    return f"**{text}**" if use >= 1 else text


def _ramp_minutes(concurrency: float) -> float:
    return max(0.0, concurrency - LAMBDA_SQS_START_CONCURRENCY) / LAMBDA_SQS_SCALE_PER_MINUTE


# --- the doc --------------------------------------------------------------------------------------


def rewrite(doc: str, block: str) -> str:
    """`doc` with its generated part replaced by `block`.

    Raises:
        ValueError: the doc lacks the begin or end marker, or has them out of order.
    """
    start, stop = doc.find(BEGIN), doc.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"the doc needs {BEGIN!r} and then {END!r}")
    return f"{doc[: start + len(BEGIN)]}\n{block}\n{doc[stop:]}"


def generated(figures_path: Path = FIGURES, config_path: Path = CONFIG) -> str:
    return render(json.loads(figures_path.read_text()), json.loads(config_path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", type=Path, default=FIGURES, help="the bench's per-task figures")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is not what the figures give")
    args = parser.parse_args(argv)
    doc = args.doc.read_text()
    new = rewrite(doc, generated(args.figures))
    if args.check:
        if new != doc:
            print(f"{args.doc} differs from what {args.figures} gives: run make capacity", file=sys.stderr)
            return 1
        return 0
    args.doc.write_text(new)
    print(f"written {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
