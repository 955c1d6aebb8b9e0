"""Many tasks at once, a worker killed mid-batch, and a clean stop with a batch in flight."""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import E2E_SETTINGS, TERMINAL, Api, Process, Stack, free_port, stack_environment, start, wait_until

pytestmark = pytest.mark.e2e

LOAD_TASKS = 200
# All 200 must be terminal within this; a run on two cores takes a fraction of it.
LOAD_DEADLINE_SECONDS = 90.0
# The chance that the FAILED count falls outside the interval when the system is right.
FALSE_ALARM = 1e-6


def binomial_interval(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The smallest count range holding all but `alpha` of Binomial(n, p), alpha/2 cut from each tail."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, tail = 0, 0.0
    while tail + pmf[low] <= alpha / 2:
        tail += pmf[low]
        low += 1
    high, tail = n, 0.0
    while tail + pmf[high] <= alpha / 2:
        tail += pmf[high]
        high -= 1
    return low, high


def test_200_tasks_at_the_default_failure_chance_all_finish_and_fail_as_often_as_expected(stack: Stack) -> None:
    max_attempts = int(E2E_SETTINGS["MAX_ATTEMPTS"])
    chance = float(E2E_SETTINGS["DEFAULT_FAILURE_CHANCE"])
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{n:03d}" for n in range(LOAD_TASKS)]
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = list(pool.map(lambda task_id: stack.api.publish(task_id, {"n": task_id}), ids))
    assert all(not answer["duplicate"] for answer in accepted)

    views: dict[str, dict[str, Any]] = {}

    def all_terminal() -> bool:
        pending = [task_id for task_id in ids if task_id not in views]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for view in pool.map(stack.api.task, pending):
                if view["status"] in TERMINAL:
                    views[view["id"]] = view
        return len(views) == LOAD_TASKS

    wait_until(all_terminal, LOAD_DEADLINE_SECONDS, f"{LOAD_TASKS} tasks to finish", interval=1.0)
    elapsed = time.monotonic() - started

    failed = [view for view in views.values() if view["status"] == "FAILED"]
    # What each task went through, to read a failure by.
    walks = Counter((view["status"], *(entry["outcome"] for entry in view["history"])) for view in views.values())
    low, high = binomial_interval(LOAD_TASKS, chance**max_attempts, FALSE_ALARM)
    assert low <= len(failed) <= high, f"{len(failed)} of {LOAD_TASKS} FAILED, expected {low} to {high}: {walks}"
    early = [view for view in failed if view["attempts"] != max_attempts]
    assert not early, f"FAILED before the last attempt: {early[:3]}; all: {walks}"
    completed = [view for view in views.values() if view["status"] == "COMPLETED"]
    assert all(view["history"][-1]["outcome"] == "succeeded" for view in completed)
    # A first attempt fails with the default chance, so about that share of tasks was retried.
    retried = sum(1 for view in views.values() if view["attempts"] > 1)
    low_retried, high_retried = binomial_interval(LOAD_TASKS, chance, FALSE_ALARM)
    assert low_retried <= retried <= high_retried, f"{retried} retried, not {low_retried} to {high_retried}: {walks}"
    print(f"{LOAD_TASKS} tasks terminal in {elapsed:.1f} s; {len(failed)} FAILED (interval {low}..{high})")


@dataclass
class Pieces:
    """The stack started one piece at a time, so the worker can die while the queue and table live on."""

    api: Api
    env: dict[str, str]
    log_dir: Path
    processes: list[Process]

    def start_worker(self, name: str) -> Process:
        worker = start(name, ["worker"], self.env, self.log_dir)
        self.processes.append(worker)
        worker.wait_for_line("worker ready")
        return worker


@pytest.fixture
def pieces(tmp_path: Path) -> Iterator[Pieces]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws_port}")
    processes: list[Process] = []
    try:
        aws = start("aws", ["aws"], env, tmp_path)
        processes.append(aws)
        aws.wait_for_line("aws ready")
        api = start("api", ["api"], env, tmp_path)
        processes.append(api)
        api.wait_for_line("api ready")
        yield Pieces(Api(f"http://127.0.0.1:{port}"), env, tmp_path, processes)
    finally:
        for process in reversed(processes):
            process.stop()


def _running_since(view: dict[str, Any]) -> float | None:
    entry = view["history"][-1] if view["history"] else None
    if entry is None or entry["outcome"] != "running":
        return None
    return datetime.fromisoformat(entry["startedAt"].replace("Z", "+00:00")).timestamp()


def test_a_worker_killed_mid_batch_and_restarted_loses_nothing(pieces: Pieces) -> None:
    worker = pieces.start_worker("worker-1")
    ids = [f"crash-{uuid.uuid4().hex[:8]}-{n}" for n in range(10)]
    # A second of work each (simulate's most): the kill lands while attempts hold their leases.
    for task_id in ids:
        pieces.api.publish(task_id, {"simulation": {"executionTime": 1000, "failureChance": 0}})

    def freshly_running() -> str | None:
        # A task whose attempt began under half a second ago is still running when the kill lands.
        # The ten are read side by side: one after another, a loaded machine can read past every window.
        with ThreadPoolExecutor(len(ids)) as pool:
            views = list(pool.map(pieces.api.task, ids))
        for view in views:
            since = _running_since(view)
            if since is not None and time.time() - since < 0.5:
                return str(view["id"])
        return None

    victim = wait_until(freshly_running, 20, "an attempt to be running", interval=0.05)
    worker.popen.send_signal(signal.SIGKILL)
    worker.popen.wait(10)
    worker.kill_group()

    pieces.start_worker("worker-2")
    views = {task_id: pieces.api.wait_terminal(task_id, timeout=40) for task_id in ids}

    assert {view["status"] for view in views.values()} == {"COMPLETED"}
    victim_outcomes = [entry["outcome"] for entry in views[victim]["history"]]
    assert victim_outcomes[0] == "expired" and victim_outcomes[-1] == "succeeded", victim_outcomes
    for view in views.values():
        outcomes = [entry["outcome"] for entry in view["history"]]
        assert outcomes.count("succeeded") == 1, (view["id"], outcomes)
        assert set(outcomes[:-1]) <= {"expired"}, (view["id"], outcomes)


def test_sigterm_lets_the_batch_in_flight_finish_and_leaves_no_process(tmp_path: Path) -> None:
    port, aws_port = free_port(), free_port()
    run = start("run", ["run"], stack_environment(port, aws_port), tmp_path)
    try:
        run.wait_for_line("taskproc is ready")
        api = Api(f"http://127.0.0.1:{port}")
        task_id = api.create({"simulation": {"executionTime": 1000, "failureChance": 0}})
        wait_until(lambda: _running_since(api.task(task_id)), 20, "the attempt to start", interval=0.05)

        run.popen.send_signal(signal.SIGTERM)
        code = run.popen.wait(45)

        assert code == 0, run.output()[-3000:]
        assert not run.group_alive(), "a piece outlived make run"
        assert "process_tasks: 1 records, returned: 1 deleted" in run.output()
    finally:
        run.kill_group()
