"""Priority classes offline, over HTTP: the offline worker polls each class's queue with pollers of
its own, so a high task overtakes default and low backlogs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Api, Process, free_port, stack_environment, start, wait_until

pytestmark = pytest.mark.e2e

# A second of work each: a backlog takes several rounds of the local stage's five pollers of ten
# records each, so it is still waiting when a high task, published after it, is done.
SLOW = {"simulation": {"failureChance": 0, "executionTime": 1000}}
QUICK = {"simulation": {"failureChance": 0}}
BACKLOG = {"low": 200, "default": 150}
# The high task is received by its own idle pollers within a poll (POLL_WAIT_SECONDS, 1 s here).
HIGH_DEADLINE_SECONDS = 30.0


@dataclass
class Pieces:
    """The endpoint and the API started one piece at a time; the worker when the test says."""

    api: Api
    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start_worker(self) -> None:
        worker = start("worker", ["worker"], self.env, self.log_dir)
        self.processes.append(worker)
        worker.wait_for_line("worker ready")


@pytest.fixture
def pieces(tmp_path: Path) -> Iterator[Pieces]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws_port}")
    running = Pieces(Api(f"http://127.0.0.1:{port}"), env, tmp_path)
    try:
        for piece in ("aws", "api"):
            process = start(piece, [piece], env, tmp_path)
            running.processes.append(process)
            process.wait_for_line(f"{piece} ready")
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()


def publish_backlog(api: Api, priority: str, count: int, prefix: str) -> None:
    for first in range(0, count, 100):
        entries = [
            {"id": f"{prefix}-{priority}-{n}", "payload": SLOW, "priority": priority}
            for n in range(first, min(count, first + 100))
        ]
        status, answer = api.call("POST", "/publish/batch", {"tasks": entries})
        assert status == 200 and all(not r.get("error") for r in answer["results"]), answer


def queues(api: Api) -> dict[str, Any]:
    status, stats = api.call("GET", "/stats")
    assert status == 200, stats
    return dict(stats["queues"])


def drained(api: Api) -> bool:
    return all(sum(depth[k] for k in ("visible", "inFlight", "delayed")) == 0 for depth in queues(api).values())


def test_a_high_task_overtakes_low_and_default_backlogs_queued_before_it(pieces: Pieces) -> None:
    api, prefix = pieces.api, f"backlog-{uuid.uuid4().hex[:8]}"
    for priority, count in BACKLOG.items():
        publish_backlog(api, priority, count, prefix)
    before = queues(api)
    assert (before["lowPriority"]["visible"], before["tasks"]["visible"]) == (BACKLOG["low"], BACKLOG["default"])

    pieces.start_worker()
    vip = f"vip-{uuid.uuid4()}"
    status, answer = api.call("POST", "/publish", {"id": vip, "payload": QUICK, "priority": "high"})
    assert status == 201, answer
    view = api.wait_terminal(vip, timeout=HIGH_DEADLINE_SECONDS)
    waiting = queues(api)

    assert (view["status"], view["priority"]) == ("COMPLETED", "high")
    # Both backlogs were queued whole before it and still hold messages nobody has received yet.
    assert waiting["lowPriority"]["visible"] > 0, waiting
    assert waiting["tasks"]["visible"] > 0, waiting
    # Overtaken, not starved: the backlogs drain too, each through its own class's consumer.
    wait_until(lambda: drained(api), 180, "the backlogs to drain", interval=1.0)
    for priority, count in BACKLOG.items():
        last = api.task(f"{prefix}-{priority}-{count - 1}")
        assert (last["status"], last["priority"]) == ("COMPLETED", priority)
