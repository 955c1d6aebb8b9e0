"""`make bench`: the embedded queue at depth, burst drains, the batching window, and the cost per million tasks.

Figures, not pass or fail, printed side by side in one run:
- depth: SendMessage, ReceiveMessage of 10 and DeleteMessageBatch of 10 on the
  embedded endpoint at 0, 1,000 and 10,000 messages, before (moto with atomic
  receives only) and after local/embedded_sqs.py's depth patches;
- drain: bursts of 500 and of 10,000 tasks published through POST /publish/batch
  to the offline stack (`python -m local run`), and how fast each drains;
- window: requests and invocations per task and publish-to-COMPLETED latency at a
  trickle (a task every 100 ms) and at a burst, with the batching window at 0 and 1 s;
- cost: AWS requests per task counted on the wire for single publish, batch
  publish of 100, a task that fails once then succeeds, a permanent failure and
  the two window settings, priced per million tasks with the split by service;
- flow: a type capped at 5 draining a 2,000-task backlog, a 60/minute type's starts in any
  minute, and a plain task's requests before and after flow control (tools/bench/flow.py);
- priority: high tasks' publish-to-COMPLETED latency (p50, p95) behind a
  10,000-task low backlog, against the same with no backlog (tools/bench/priority.py);
- fanin: one workflow (200 children; `--fanin-children 1000` for the issue's size, which moto
  takes over half an hour to write here): the fan-in's latency, the writes on the workflow item
  per child, its size and write units, and the same with a share of those writes throttled
  (tools/bench/fanin.py).
The cost section's per-task figures, the flow section's writes of a flow item per
attempt and the fanin section's cost per child are also written to docs/bench-figures.json,
which tools/bench/capacity.py turns into docs/capacity.md's table.
Everything runs against moto on this machine: absolute times are moto's and this
machine's; the ratios and the request counts are the point.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import requests

from local.config import PROJECT_DIR
from local.launcher import clean_environment, free_port, launch
from tools.bench import fanin, flow, priority, queuedepth
from tools.bench.cost import ASSUMPTIONS, PRICES, PRICES_READ, Usage, dollars_per_million
from tools.bench.inprocess import InProcess, create_stack, moto_server, queue_empty, wait_for

SECTIONS = ("depth", "drain", "window", "cost", "flow", "priority", "fanin")
SUCCEEDS = {"simulation": {"failureChance": 0}}
PERMANENT = {"simulation": {"failureChance": 1, "permanentFailure": True}}
FAILS_ONCE_TYPE = "bench-fails-once"
TRICKLE_INTERVAL = 0.1


# --- depth ----------------------------------------------------------------------------------------


def depth_table(reps: int, reps_before: int) -> dict[str, Any]:
    """Both variants, each in its own interpreter (the patches are process-wide)."""
    return {
        "before": queuedepth.measure_in_subprocess("atomic", queuedepth.DEPTHS, reps_before),
        "after": queuedepth.measure_in_subprocess("embedded", queuedepth.DEPTHS, reps),
    }


# --- drain ----------------------------------------------------------------------------------------


def drain(sizes: list[int], out: Path) -> list[dict[str, Any]]:
    """Publish a burst to the offline stack's endpoint and API, then start the consumers and time the drain.

    The consumers start once the whole burst is queued, so the rate is the queue's
    at its depth, not the publishing's.
    """
    rows = []
    for size in sizes:
        logs = out / f"drain-{size}"
        aws_port, api_port = free_port(), free_port()
        aws_url = f"http://127.0.0.1:{aws_port}"
        env = clean_environment({"AWS_PORT": str(aws_port), "DEFAULT_FAILURE_CHANCE": "0", "LOG_LEVEL": "WARNING"})
        pieces = [launch("aws", env, logs / "aws.log")]
        try:
            with_endpoint = {**env, "AWS_ENDPOINT_URL": aws_url}
            pieces.append(launch("api", {**with_endpoint, "PORT": str(api_port)}, logs / "api.log"))
            credentials = {
                "region_name": "us-east-1",
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
            table = boto3.client("dynamodb", endpoint_url=aws_url, **credentials)
            sqs = boto3.client("sqs", endpoint_url=aws_url, **credentials)
            queues = [sqs.get_queue_url(QueueName=f"taskproc-local-{q}")["QueueUrl"] for q in ("tasks", "dead-letters")]
            started = time.monotonic()
            how = _publish_burst(f"http://127.0.0.1:{api_port}", aws_url, [f"drain-{size}-{n}" for n in range(size)])
            published = time.monotonic() - started
            pieces.append(launch("worker", with_endpoint, logs / "worker.log"))
            consuming = time.monotonic()
            # Every message deleted means every task settled; the queues' counts are cheap to ask for, while
            # a scan of the table at each look would take the endpoint's time from the drain.
            wait_for(
                lambda q=sqs, u=queues: all(queue_empty(q, url) for url in u),
                1800,
                f"{size} tasks to drain",
                interval=0.5,
            )
            elapsed = time.monotonic() - consuming
            terminal = _terminal(table)
            assert terminal == size, f"queues empty but {terminal} of {size} tasks terminal"
        finally:
            for piece in reversed(pieces):
                piece.stop()
        rows.append(
            {
                "tasks": size,
                "published_by": how,
                "publish_seconds": round(published, 1),
                "seconds": round(elapsed, 1),
                "tasks_per_second": round(size / elapsed, 1),
            }
        )
    return rows


def _publish_burst(api_url: str, aws_url: str, ids: list[str]) -> str:
    """POST /publish/batch in 100s from 4 clients; how the burst was published.

    When the route answers 404 (not built yet), the burst goes through the app's own
    publish code (chalicelib.publish.api.publish: a PutItem and a SendMessage per task) from
    this process, on 16 threads: Chalice's local server publishes one by one too slowly
    for a burst of 10,000.

    Raises:
        AssertionError: a task was refused.
    """
    chunks = [ids[start : start + 100] for start in range(0, len(ids), 100)]
    first = {"tasks": [{"id": task_id, "payload": SUCCEEDS} for task_id in chunks[0]]}
    probe = requests.post(f"{api_url}/publish/batch", json=first, timeout=60)
    if probe.status_code in (403, 404):
        _publish_in_process(aws_url, ids)
        return "chalicelib.publish.api.publish in process (POST /publish/batch: 404)"
    assert probe.status_code == 200, probe.text

    def batch(chunk: list[str]) -> None:
        body = {"tasks": [{"id": task_id, "payload": SUCCEEDS} for task_id in chunk]}
        response = requests.post(f"{api_url}/publish/batch", json=body, timeout=60)
        assert response.status_code == 200 and all("error" not in r for r in response.json()["results"]), response.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, chunks[1:]))
    return "POST /publish/batch of 100"


def _publish_in_process(aws_url: str, ids: list[str]) -> None:
    sys.path.insert(0, str(PROJECT_DIR))
    import app  # noqa: F401 - registers the task types
    from chalicelib.logs import EVENTS_LOGGER
    from chalicelib.publish import api
    from chalicelib.runtime import build_runtime
    from chalicelib.settings import Settings

    events = logging.getLogger(EVENTS_LOGGER)
    level = events.level
    events.setLevel(logging.WARNING)  # a line per task would slow the burst down

    names = {name: "taskproc-local-tasks" for name in ("TASKS_TABLE", "TASKS_QUEUE")}
    settings = Settings(
        **names,
        FLOW_TABLE="taskproc-local-flow",
        SCHEDULES_TABLE="taskproc-local-schedules",
        DEAD_LETTER_QUEUE="taskproc-local-dead-letters",
    )
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    os.environ["AWS_ENDPOINT_URL"] = aws_url  # the clients are made now, and keep it
    try:
        runtime = build_runtime(settings, session=session)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL")

    def one(task_id: str) -> None:
        assert not api.publish({"id": task_id, "payload": SUCCEEDS}, runtime).duplicate

    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, ids))
    finally:
        events.setLevel(level)


def _terminal(table: Any) -> int:
    pages = table.get_paginator("scan").paginate(
        TableName="taskproc-local-tasks",
        Select="COUNT",
        FilterExpression="#s IN (:c, :f, :x)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": {"S": "COMPLETED"}, ":f": {"S": "FAILED"}, ":x": {"S": "CANCELLED"}},
    )
    return sum(page["Count"] for page in pages)


# --- in-process scenarios: the window and the cost ------------------------------------------------


def _register_fails_once() -> None:
    """A task type of the bench only: its first attempt fails, its second succeeds."""
    from chalicelib.registry import REGISTRY, TaskContext, TaskFailed, task_type

    if REGISTRY.get(FAILS_ONCE_TYPE) is not None:
        return

    @task_type(FAILS_ONCE_TYPE)
    def fails_once(payload: Any, context: TaskContext) -> dict[str, Any]:
        if context.attempt == 1:
            raise TaskFailed("fails its first attempt, by design")
        return {}


def scenario(
    bench: InProcess, name: str, count: int, publish: Callable[[Usage, list[str]], None], window: int = 0
) -> dict[str, Any]:
    """Publish `count` tasks with the consumers running; count everything until all are terminal and settled."""
    usage = Usage(tasks=count)
    bench.use(usage)
    ids = [f"{name}-{n}" for n in range(count)]
    quiet = boto3.client("sqs")  # uncounted: the bench's own look at the queues
    urls = [
        quiet.get_queue_url(QueueName=q)["QueueUrl"]
        for q in (bench.settings.TASKS_QUEUE, bench.settings.DEAD_LETTER_QUEUE)
    ]
    with bench.logging_to(usage), bench.consumers(usage, window):
        publish(usage, ids)
        items = bench.wait_terminal(f"{name}-", count, 600)
        wait_for(lambda: all(queue_empty(quiet, url) for url in urls), 120, f"{name}'s messages to settle")
    bench.settle(usage, items)
    latencies = bench.latencies(items)
    statuses: dict[str, int] = {}
    for item in items:
        statuses[item["status"]["S"]] = statuses.get(item["status"]["S"], 0) + 1
    return {
        "name": name,
        "tasks": count,
        "window": window,
        "statuses": statuses,
        "per_task": usage.per_task(),
        "requests": {f"{s}.{op}": n for (s, op), n in sorted(usage.wire.requests.items())},
        "dollars_per_million": dollars_per_million(usage.per_task()),
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "batch_route": bench.batch_route,
    }


def in_process(
    sections: set[str],
    tasks: int,
    trickle: int,
    burst: int,
    high_tasks: int = 50,
    low_backlog: int = 10_000,
    capped_backlog: int = 2_000,
    rated_backlog: int = 100,
    fanin_children: int = 200,
    fanin_throttle: float = 0.25,
) -> dict[str, Any]:
    """The window, cost, flow, fan-in and priority scenarios, on one embedded endpoint and one in-process app."""
    results: dict[str, Any] = {}
    with moto_server():
        create_stack("bench")
        bench = InProcess(
            "bench",
            MAX_ATTEMPTS=3,
            BACKOFF_BASE_SECONDS=1,
            BACKOFF_MAX_SECONDS=1,
            LEASE_SECONDS=10,
            DEFAULT_FAILURE_CHANCE=0,
        )
        _register_fails_once()

        def single(payload: dict[str, Any], task_type: str | None = None, interval: float = 0.0) -> Any:
            return lambda usage, ids: bench.publish(usage, ids, payload, task_type, interval)

        def batches(usage: Usage, ids: list[str]) -> None:
            bench.publish_batches(usage, ids, SUCCEEDS)

        if "window" in sections:
            results["window"] = [
                scenario(bench, f"{kind}-w{window}", count, single(SUCCEEDS, interval=interval), window)
                for window in (0, 1)
                for kind, count, interval in (("trickle", trickle, TRICKLE_INTERVAL), ("burst", burst, 0.0))
            ]
        if "cost" in sections:
            results["cost"] = [
                scenario(bench, "single", tasks, single(SUCCEEDS)),
                scenario(bench, "batch100", tasks, batches),
                scenario(bench, "fails-once", tasks, single({}, FAILS_ONCE_TYPE)),
                scenario(bench, "permanent", tasks, single(PERMANENT)),
            ]
        if "flow" in sections:
            # A plain task's requests now: the cost section's single publishes, or the same scenario anew.
            plain = results["cost"][0] if "cost" in results else scenario(bench, "plain", tasks, single(SUCCEEDS))
            results["flow"] = flow.measure(bench, plain, capped_backlog, rated_backlog)
        if "fanin" in sections:
            results["fanin"] = fanin.measure(bench, fanin_children, fanin_throttle)
        if "priority" in sections:
            # Last: its backlog is left in the low queue when the endpoint stops.
            results["priority"] = priority.measure(bench, high_tasks, low_backlog)
    return results


# --- the report -----------------------------------------------------------------------------------


def figures(report: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """What docs/bench-figures.json keeps for the capacity table: the cost section's units per task, by
    scenario, and the flow section's writes per attempt; a section not run keeps its `kept` figures."""
    written = dict(kept)
    if "cost" in report:
        written.update(date=report["date"], machine=report["machine"], scenarios=_scenarios(report))
    if "flow" in report:
        written["flow"] = flow.figures(report["flow"], report["date"])
    if "fanin" in report:
        written["fanin"] = fanin.figures(report["fanin"], report["date"])
    return written


def _scenarios(report: dict[str, Any]) -> dict[str, Any]:
    return {
        row["name"]: {
            "tasks": row["tasks"],
            "statuses": row["statuses"],
            "per_task": {name: round(value, 4) for name, value in row["per_task"].items()},
            "requests_per_task": {op: round(n / row["tasks"], 4) for op, n in row["requests"].items()},
        }
        for row in report["cost"]
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"machine        {report['machine']}", f"date           {report['date']}"]
    if "depth" in report:
        lines += [
            "",
            "embedded SQS, ms per call (median): before = atomic receives only; after = embedded_sqs.py",
            f"{'depth':>7} | {'send':>8} {'recv 10':>8} {'del 10':>8} | {'send':>6} {'recv 10':>7} {'del 10':>6}"
            f" | after vs depth 0",
            f"{'':>7} | {'before':^26} | {'after':^22} |",
        ]
        after0 = report["depth"]["after"][0]
        for old, new in zip(report["depth"]["before"], report["depth"]["after"], strict=True):
            ratios = "/".join(f"{new[k] / after0[k]:.2f}" for k in ("send_ms", "receive_ms", "delete_ms"))
            lines.append(
                f"{old['depth']:>7} | {old['send_ms']:>8.1f} {old['receive_ms']:>8.1f} {old['delete_ms']:>8.1f} | "
                f"{new['send_ms']:>6.1f} {new['receive_ms']:>7.1f} {new['delete_ms']:>6.1f} | {ratios}"
            )
    if "drain" in report:
        lines += ["", "burst drain offline (python -m local aws, api, worker; drained = all terminal)"]
        rows = report["drain"]
        for row in rows:
            lines.append(
                f"  {row['tasks']:>6} tasks published in {row['publish_seconds']} s by "
                f"{row['published_by']}; consumers started; all terminal {row['seconds']} s later "
                f"= {row['tasks_per_second']} tasks/s"
            )
        if len(rows) >= 2:
            ratio = rows[-1]["tasks_per_second"] / rows[0]["tasks_per_second"]
            lines.append(f"  rate of the largest burst vs the smallest: {ratio:.2f}x")
    if "window" in report:
        lines += [
            "",
            "batching window (in process; 5 pollers; single publishes)",
            f"  {'scenario':<14} {'tasks':>5} {'API+SQS+DDB req/task':>21} {'invocations/task':>16} "
            f"{'idle recv/task':>14} {'latency p50/p95 s':>18}",
        ]
        for row in report["window"]:
            lines.append(_usage_line(row))
    if "cost" in report:
        rows = [*report["cost"], *[r for r in report.get("window", []) if r["name"].startswith("trickle")]]
        services = ["API Gateway", "Lambda", "SQS", "DynamoDB", "CloudWatch Logs", "total"]
        lines += [
            "",
            f"cost per million tasks, $ (list prices read {PRICES_READ}: "
            + ", ".join(f"{k} {v:g}" for k, v in PRICES.items())
            + ")",
            f"  assumptions: {json.dumps(ASSUMPTIONS)}",
            f"  {'scenario':<14} " + " ".join(f"{s:>15}" for s in services) + "   requests per task on the wire",
        ]
        for row in rows:
            cost = row["dollars_per_million"]
            per = row["per_task"]
            wire = (
                f"API {per['api_requests']:.2f}, SQS {per['sqs_requests']:.2f} "
                f"(billed {per['sqs_billed']:.2f}), DynamoDB {per['dynamodb_requests']:.2f} "
                f"({per['wru']:.1f} WRU, {per['rru']:.1f} RRU), Lambda {per['lambda_invocations']:.2f}"
            )
            label = row["name"] + ("" if row["batch_route"] or row["name"] != "batch100" else "*")
            lines.append(f"  {label:<14} " + " ".join(f"{cost[s]:>15.3f}" for s in services) + f"   {wire}")
        if any(not row["batch_route"] for row in rows if row["name"] == "batch100"):
            lines.append("  * POST /publish/batch answered 404: this row is single publishes")
    if "flow" in report:
        lines += flow.render(report["flow"])
    if "priority" in report:
        lines += priority.render(report["priority"])
    if "fanin" in report:
        lines += fanin.render(report["fanin"])
    return "\n".join(lines)


def _usage_line(row: dict[str, Any]) -> str:
    per = row["per_task"]
    aws = per["api_requests"] + per["sqs_requests"] + per["dynamodb_requests"]
    p50, p95 = row["latency_median_s"], row["latency_p95_s"]
    latency = f"{p50:.2f} / {p95:.2f}" if p50 is not None else "-"
    return (
        f"  {row['name']:<14} {row['tasks']:>5} {aws:>21.2f} {per['consumer_invocations']:>16.3f} "
        f"{per['idle_receives']:>14.2f} {latency:>18}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--drain", default="500,10000", help="burst sizes for the drain, comma-separated")
    parser.add_argument("--tasks", type=int, default=200, help="tasks per cost scenario")
    parser.add_argument("--trickle", type=int, default=50, help="tasks of the trickle (one per 100 ms)")
    parser.add_argument("--burst", type=int, default=200, help="tasks of the window's burst")
    parser.add_argument("--depth-reps", type=int, default=15, help="calls per kind and depth, after")
    parser.add_argument("--depth-reps-before", type=int, default=3, help="... before (a receive takes seconds)")
    parser.add_argument("--high-tasks", type=int, default=50, help="high tasks of the priority trickle")
    parser.add_argument("--low-backlog", type=int, default=10_000, help="low tasks queued before the high ones")
    parser.add_argument("--capped-backlog", type=int, default=2_000, help="tasks of the capped type's backlog")
    parser.add_argument("--rated-backlog", type=int, default=100, help="tasks of the 60/minute type's backlog")
    parser.add_argument(
        "--fanin-children",
        type=int,
        default=200,
        help="children of the fan-in's workflow (1,000 takes moto over half an hour on two cores: docs/workflows.md)",
    )
    parser.add_argument(
        "--fanin-throttle",
        type=float,
        default=0.25,
        help="share of the workflow item's write attempts answered as throttled in the fan-in's second run (0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller everything: a run of about two minutes")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "out")
    parser.add_argument(
        "--figures",
        type=Path,
        default=PROJECT_DIR / "docs" / "bench-figures.json",
        help="where the cost section's per-task figures go (the capacity table's input)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.drain, args.tasks, args.trickle, args.burst = "200,2000", 50, 20, 50
        args.high_tasks, args.low_backlog = 20, 2000
        args.capped_backlog, args.rated_backlog = 200, 70
        args.fanin_children = 50
        args.depth_reps, args.depth_reps_before = 5, 1
    sections = set(filter(None, args.sections.split(",")))
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if "depth" in sections:
        report["depth"] = depth_table(args.depth_reps, args.depth_reps_before)
    if "drain" in sections:
        report["drain"] = drain([int(size) for size in args.drain.split(",") if size.strip()], args.out)
    if sections & {"window", "cost", "flow", "priority", "fanin"}:
        report.update(
            in_process(
                sections,
                args.tasks,
                args.trickle,
                args.burst,
                args.high_tasks,
                args.low_backlog,
                args.capped_backlog,
                args.rated_backlog,
                args.fanin_children,
                args.fanin_throttle,
            )
        )
    print(render(report))
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"written        {args.out / 'bench.json'}")
    if "cost" in report or "flow" in report or "fanin" in report:
        kept = json.loads(args.figures.read_text()) if args.figures.exists() else {}
        args.figures.write_text(json.dumps(figures(report, kept), indent=2) + "\n")
        print(f"written        {args.figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
