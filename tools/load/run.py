"""Load and error-rate tool: publish N tasks, wait until every one is terminal, report.

    python -m tools.load --url http://127.0.0.1:8000 --tasks 200 --failure-chance 0.3

Works against the offline stack or a deployed API. It answers the question the
fault-tolerant-system seed's `test:error-rate` asked: is the share of tasks that end
FAILED what `failureChance ** maxAttempts` predicts?
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tools.http import HttpError, get_json, post_json
from tools.load.results import TaskResult

TERMINAL = {"COMPLETED", "FAILED"}
SERVER_DEFAULT_FAILURE_CHANCE = 0.3


@dataclass(frozen=True)
class LoadOptions:
    url: str
    tasks: int = 200
    concurrency: int = 16
    failure_chance: float | None = None
    execution_time: float | None = None
    deadline_seconds: float = 600.0
    poll_interval: float = 0.5
    expected_failure_chance: float = SERVER_DEFAULT_FAILURE_CHANCE
    progress: bool = True


@dataclass
class Summary:
    tasks: int
    by_status: dict[str, int]
    not_terminal: int
    max_attempts: int
    failure_chance: float
    expected_failed_share: float
    observed_failed_share: float
    interval_95: tuple[float, float]
    verdict: str
    attempts_per_task: dict[int, int]
    mean_attempts: float
    latency_seconds: dict[str, float]
    publish_seconds: float
    wall_seconds: float
    throughput_per_second: float
    publish_errors: int = 0
    notes: list[str] = field(default_factory=list)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound near 0 and with few trials)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def task_body(task_id: str, options: LoadOptions) -> dict[str, Any]:
    simulation: dict[str, float] = {}
    if options.execution_time is not None:
        simulation["executionTime"] = options.execution_time
    if options.failure_chance is not None:
        simulation["failureChance"] = options.failure_chance
    return {"id": task_id, "payload": {"simulation": simulation} if simulation else {}}


def publish_all(options: LoadOptions, run_id: str) -> tuple[list[str], int]:
    """Publish the tasks concurrently; returns the accepted ids and the count of refusals."""
    ids = [f"load-{run_id}-{n:06d}" for n in range(options.tasks)]
    accepted: list[str] = []
    errors = 0

    def publish(task_id: str) -> str | None:
        try:
            post_json(f"{options.url}/publish", task_body(task_id, options))
        except HttpError as exc:
            print(f"publish {task_id}: {exc}", file=sys.stderr)
            return None
        return task_id

    with ThreadPoolExecutor(options.concurrency) as pool, _bar(options, len(ids), "publish") as bar:
        for result in pool.map(publish, ids):
            bar.update(1)
            if result is None:
                errors += 1
            else:
                accepted.append(result)
    return accepted, errors


def wait_until_terminal(options: LoadOptions, ids: list[str], deadline: float) -> dict[str, dict[str, Any]]:
    """Poll every task that is not terminal until all are, or until `deadline` (monotonic)."""
    latest: dict[str, dict[str, Any]] = {}
    pending = list(ids)

    def read(task_id: str) -> tuple[str, dict[str, Any] | None]:
        try:
            return task_id, get_json(f"{options.url}/tasks/{_quote(task_id)}")
        except HttpError:
            return task_id, None

    with ThreadPoolExecutor(options.concurrency) as pool, _bar(options, len(ids), "terminal") as bar:
        while pending and time.monotonic() < deadline:
            still: list[str] = []
            for task_id, task in pool.map(read, pending):
                if task is not None:
                    latest[task_id] = task
                if task is not None and task["status"] in TERMINAL:
                    bar.update(1)
                else:
                    still.append(task_id)
            pending = still
            if pending:
                time.sleep(min(options.poll_interval, max(0.0, deadline - time.monotonic())))
    return latest


def result_of(task: dict[str, Any]) -> TaskResult:
    latency = None
    if task.get("finishedAt"):
        latency = (_parse_time(task["finishedAt"]) - _parse_time(task["createdAt"])).total_seconds()
    return TaskResult(
        id=task["id"],
        status=task["status"],
        attempts=task["attempts"],
        max_attempts=task["maxAttempts"],
        created_at=task["createdAt"],
        finished_at=task.get("finishedAt"),
        latency_seconds=latency,
        last_error=task.get("lastError"),
    )


def summarize(
    results: list[TaskResult], options: LoadOptions, publish_seconds: float, wall_seconds: float, publish_errors: int
) -> Summary:
    by_status = Counter(r.status for r in results)
    terminal = [r for r in results if r.status in TERMINAL]
    failed = by_status.get("FAILED", 0)
    max_attempts = max((r.max_attempts for r in results), default=0)
    chance = options.expected_failure_chance if options.failure_chance is None else options.failure_chance
    expected = chance**max_attempts if max_attempts else math.nan
    observed = failed / len(terminal) if terminal else math.nan
    low, high = wilson_interval(failed, len(terminal))
    verdict = (
        "consistent with failureChance ** maxAttempts"
        if terminal and low <= expected <= high
        else "NOT consistent with failureChance ** maxAttempts"
    )
    latencies = [r.latency_seconds for r in terminal if r.latency_seconds is not None]
    finished = [_parse_time(r.finished_at) for r in terminal if r.finished_at]
    created = [_parse_time(r.created_at) for r in results]
    span = (max(finished) - min(created)).total_seconds() if finished and created else math.nan
    return Summary(
        tasks=options.tasks,
        by_status=dict(sorted(by_status.items())),
        not_terminal=options.tasks - publish_errors - len(terminal),
        max_attempts=max_attempts,
        failure_chance=chance,
        expected_failed_share=expected,
        observed_failed_share=observed,
        interval_95=(low, high),
        verdict=verdict,
        attempts_per_task=dict(sorted(Counter(r.attempts for r in terminal).items())),
        mean_attempts=statistics.fmean(r.attempts for r in terminal) if terminal else math.nan,
        latency_seconds={q: percentile(latencies, n) for q, n in (("p50", 50), ("p95", 95), ("p99", 99))},
        publish_seconds=publish_seconds,
        wall_seconds=wall_seconds,
        throughput_per_second=len(terminal) / span if span and span > 0 else math.nan,
        publish_errors=publish_errors,
    )


def render(summary: Summary) -> str:
    statuses = ", ".join(f"{status} {count}" for status, count in summary.by_status.items())
    low, high = summary.interval_95
    attempts = ", ".join(f"{n}: {count}" for n, count in summary.attempts_per_task.items())
    latency = ", ".join(f"{q} {value:.2f} s" for q, value in summary.latency_seconds.items())
    return "\n".join(
        [
            f"tasks          {summary.tasks} ({summary.publish_errors} refused at publish, "
            f"{summary.not_terminal} not terminal by the deadline)",
            f"statuses       {statuses}",
            f"final failures {summary.observed_failed_share:.2%} observed, 95% interval [{low:.2%}, {high:.2%}]; "
            f"expected {summary.failure_chance:g} ** {summary.max_attempts} = {summary.expected_failed_share:.2%}",
            f"verdict        {summary.verdict}",
            f"attempts       mean {summary.mean_attempts:.2f}; per task {{{attempts}}}",
            f"latency        publish to terminal: {latency}",
            f"throughput     {summary.throughput_per_second:.1f} tasks/s terminal; "
            f"publish took {summary.publish_seconds:.1f} s, whole run {summary.wall_seconds:.1f} s",
        ]
    )


def run(options: LoadOptions) -> tuple[Summary, list[TaskResult]]:
    """Publish, wait, summarize. The deadline counts from the start of the run."""
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    ids, errors = publish_all(options, run_id)
    published = time.monotonic()
    latest = wait_until_terminal(options, ids, started + options.deadline_seconds)
    results = [result_of(task) for task in latest.values()]
    summary = summarize(results, options, published - started, time.monotonic() - started, errors)
    return summary, results


def write_outputs(results: list[TaskResult], summary: Summary, csv_path: Path | None, json_path: Path | None) -> None:
    if csv_path:
        import csv

        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(results[0]) if results else []))
            writer.writeheader()
            writer.writerows(asdict(r) for r in results)
    if json_path:
        json_path.write_text(json.dumps({"summary": asdict(summary), "tasks": [asdict(r) for r in results]}, indent=2))


def _bar(options: LoadOptions, total: int, label: str) -> tqdm:
    return tqdm(total=total, desc=f"{label:>8}", unit="task", disable=not options.progress, file=sys.stderr)


def _quote(task_id: str) -> str:
    from urllib.parse import quote

    return quote(task_id, safe="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight while publishing and polling")
    parser.add_argument(
        "--failure-chance", type=float, help="payload.simulation.failureChance (server default if unset)"
    )
    parser.add_argument("--execution-time", type=float, help="payload.simulation.executionTime in ms")
    parser.add_argument(
        "--default-failure-chance",
        type=float,
        default=SERVER_DEFAULT_FAILURE_CHANCE,
        help="the server's DEFAULT_FAILURE_CHANCE, for the expectation when --failure-chance is unset",
    )
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds the whole run may take")
    parser.add_argument("--csv", type=Path, help="write one row per task")
    parser.add_argument("--json", type=Path, help="write the summary and the tasks")
    parser.add_argument("--chart", type=Path, help="write a PNG: latency histogram and status timeline")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--offline", action="store_true", help="start the offline stack on free ports for this run")
    args = parser.parse_args(argv)
    if args.offline:
        from tools.stack import PROJECT_DIR, offline_stack

        with offline_stack(PROJECT_DIR / "out" / "loadtest-stack.log") as stack:
            print(f"offline stack  {stack.api_url} (log: {stack.log})", file=sys.stderr)
            return _run(args, stack.api_url)
    return _run(args, args.url)


def _run(args: argparse.Namespace, url: str) -> int:
    options = LoadOptions(
        url=url.rstrip("/"),
        tasks=args.tasks,
        concurrency=args.concurrency,
        failure_chance=args.failure_chance,
        execution_time=args.execution_time,
        deadline_seconds=args.deadline,
        expected_failure_chance=args.default_failure_chance,
        progress=not args.quiet,
    )
    summary, results = run(options)
    print(render(summary))
    write_outputs(results, summary, args.csv, args.json)
    if args.chart:
        from tools.load.chart import draw

        draw(results, args.chart)
        print(f"chart          {args.chart}")
    return 0 if summary.not_terminal == 0 and summary.publish_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
