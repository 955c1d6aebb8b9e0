"""`GET /stats` on the offline stack: the throughput comes back from the EMF lines the pieces printed."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.stack import Stack, wait_until

SUCCEEDS = {"simulation": {"failureChance": 0}}
FAILS = {"simulation": {"failureChance": 1}}


def _completed(stats: dict[str, Any], scope: str) -> int:
    return sum(stats["throughput"]["perMinute"]["series"].get(scope, {}).get("completed", []))


def test_tasks_run_offline_show_in_the_throughput_per_minute_per_hour_and_latency(stack: Stack) -> None:
    status, before = stack.api.call("GET", "/stats")
    assert status == 200, before
    run = uuid.uuid4().hex[:8]
    ids = [f"stats-{run}-{n}" for n in range(3)]
    for task_id in ids:
        stack.api.publish(task_id, SUCCEEDS)
    for task_id in ids:
        assert stack.api.wait_terminal(task_id, timeout=60)["status"] == "COMPLETED"

    def counted() -> dict[str, Any] | None:
        status, stats = stack.api.call("GET", "/stats")
        assert status == 200, stats
        done = stats["throughput"] and _completed(stats, "total") >= _completed(before, "total") + len(ids)
        return stats if done else None

    stats = wait_until(counted, 60, "the completed tasks in GET /stats' throughput")

    throughput = stats["throughput"]
    minute, hour = throughput["perMinute"], throughput["perHour"]
    assert (minute["stepSeconds"], len(minute["series"]["total"]["completed"])) == (60, 60)
    assert (hour["stepSeconds"], len(hour["series"]["total"]["accepted"])) == (3600, 24)
    assert _completed(stats, "simulate") >= len(ids)  # the per-type series, found through the registry
    assert sum(hour["series"]["total"]["accepted"]) >= len(ids)
    assert throughput["latency"]["total"]["endToEndMs"]["p50"] is not None
    assert stats["counts"]["COMPLETED"] >= len(ids)
    assert "offline metrics sink" in stats["sources"]["throughput.perMinute"]["source"]
