"""The bench's `priority` section: a high task's latency behind a 10,000-task low backlog, and with none.

Every class's consumer runs behind its own local event-source pollers (five each, as
Lambda starts), in this process, against the embedded endpoint. The backlog's messages
are queued straight onto the low queue with SendMessageBatch (the low consumer stores
each task as it receives it, as for a publish that died after its send), so that
10,000 tasks take seconds to queue rather than minutes to publish; the low consumer
works on them throughout. Then high tasks are published one by one through
`POST /publish`, a trickle of one every 100 ms, and each one's latency is the time
from its publish to its COMPLETED (`finishedAt`). The same trickle with no backlog
is the baseline. On AWS the classes share nothing but the table; here they also share
this machine's cores and one endpoint, which the low consumer keeps busy, so the
difference between the two rows is an upper bound of what a backlog costs a high task.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from tools.bench.cost import Usage
from tools.bench.inprocess import TERMINAL, InProcess, wait_for

SUCCEEDS = {"simulation": {"failureChance": 0}}
ALL_CONSUMERS = ("process_tasks", "process_high_priority_tasks", "process_low_priority_tasks", "handle_dead_letters")
TRICKLE_INTERVAL = 0.1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def queue_backlog(sqs: Any, url: str, count: int, prefix: str, task_type: str = "simulate") -> float:
    """Queue `count` tasks' messages in SendMessageBatch calls of 10, side by side; the seconds it took."""
    started = time.monotonic()

    def send(first: int) -> None:
        entries = [
            {"Id": str(n), "MessageBody": json.dumps({"id": f"{prefix}-{n}", "type": task_type, "payload": SUCCEEDS})}
            for n in range(first, min(count, first + 10))
        ]
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, count, 10)))
    return time.monotonic() - started


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def terminal_items(bench: InProcess, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """The items of `ids` once all are terminal, read by key (a scan would read the whole backlog each time).

    Raises:
        TimeoutError: they were not, by the deadline.
    """
    found: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        for first in range(0, len(ids), 100):
            keys = [{"id": {"S": task_id}} for task_id in ids[first : first + 100] if task_id not in found]
            if not keys:
                continue
            answer = bench.table.batch_get_item(
                RequestItems={bench.settings.TASKS_TABLE: {"Keys": keys, "ConsistentRead": True}}
            )
            for item in answer["Responses"].get(bench.settings.TASKS_TABLE, []):
                if item["status"]["S"] in TERMINAL:
                    found[item["id"]["S"]] = item
        return len(found) == len(ids)

    wait_for(done, timeout, f"{len(ids)} high tasks to finish", interval=0.5)
    return list(found.values())


def high_trickle(bench: InProcess, name: str, count: int, backlog: int) -> dict[str, Any]:
    """`count` high tasks published a tenth of a second apart, behind `backlog` low tasks queued first."""
    usage = Usage(tasks=count)
    bench.use(usage)
    quiet = boto3.client("sqs")  # uncounted: the bench's own look at the queues
    low_url = quiet.get_queue_url(QueueName=bench.settings.LOW_PRIORITY_QUEUE)["QueueUrl"]
    queued_in = queue_backlog(quiet, low_url, backlog, f"{name}-low") if backlog else 0.0
    ids = [f"{name}-high-{n}" for n in range(count)]
    with bench.logging_to(usage), bench.consumers(usage, functions=ALL_CONSUMERS):
        if backlog:
            # The low consumer is at work on its backlog before the first high task arrives.
            time.sleep(2)
        waiting_before, first_look = visible(quiet, low_url), time.monotonic()
        bench.publish(usage, ids, SUCCEEDS, None, TRICKLE_INTERVAL)
        items = terminal_items(bench, ids, 300)
        waiting_after, elapsed = visible(quiet, low_url), time.monotonic() - first_look
    latencies = bench.latencies(items)
    assert len(latencies) == count, f"{len(latencies)} of {count} high tasks completed"
    # What a high task published with the backlog in one queue would have waited: the backlog
    # over the rate the low consumer drained it at meanwhile (SQS has no priorities).
    drain_rate = (waiting_before - waiting_after) / elapsed if backlog else None
    return {
        "name": name,
        "high_tasks": count,
        "low_backlog": backlog,
        "backlog_queued_seconds": round(queued_in, 1),
        "low_waiting_at_first_high": waiting_before,
        "low_waiting_at_last_high": waiting_after,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(percentile(latencies, 0.95), 3),
        "latency_max_s": round(max(latencies), 3),
        "low_drained_per_second": round(drain_rate, 1) if drain_rate else None,
        "one_queue_wait_estimate_s": round(backlog / drain_rate, 1) if drain_rate else None,
    }


def measure(bench: InProcess, high_tasks: int, backlog: int) -> list[dict[str, Any]]:
    """The baseline (no backlog), then the same trickle behind the backlog."""
    return [
        high_trickle(bench, "prio-none", high_tasks, 0),
        high_trickle(bench, "prio-backlog", high_tasks, backlog),
    ]


def render(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "priority: high tasks published every 100 ms, publish to COMPLETED (in process; 5 pollers per class)",
        f"  {'low backlog':>11} {'high tasks':>10} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"
        f"   low messages waiting at the first / last high task",
    ]
    for row in rows:
        lines.append(
            f"  {row['low_backlog']:>11} {row['high_tasks']:>10} {row['latency_p50_s']:>7.2f}"
            f" {row['latency_p95_s']:>7.2f} {row['latency_max_s']:>7.2f}"
            f"   {row['low_waiting_at_first_high']} / {row['low_waiting_at_last_high']}"
        )
    for row in rows:
        if row["one_queue_wait_estimate_s"]:
            lines.append(
                f"  in one queue, a task published behind the {row['low_backlog']} would wait about"
                f" {row['one_queue_wait_estimate_s']} s (the backlog at the {row['low_drained_per_second']}"
                " tasks/s the low consumer drained it meanwhile)"
            )
    return lines
