"""A piece stops on every pattern of stop signals a process group receives, however they land.

`kill -TERM -<group>` under GNU make reaches a piece twice (make forwards the signal
it got itself); Ctrl-C then `timeout`'s SIGTERM, or a CI runner's repeated cleanup,
send two different ones or many in a row. A signal that lands while the main thread
is inside `stop.wait(...)` must still stop the piece, within its deadline, every time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from local.launcher import Launched, clean_environment, free_port
from local.lifecycle import SUPERVISOR_STOP

ROOT = Path(__file__).resolve().parents[2]
RUNS = 40
STOP_DEADLINE_SECONDS = 5.0
READY_DEADLINE_SECONDS = 10.0
# A piece's main thread waits on `stop` in steps (local.pieces._wait). This one waits in steps of
# nothing, so it spends most of its time inside stop.wait holding the event's lock: the moment a
# signal handler that takes that lock deadlocks (such a handler hung here in about a third of runs).
PIECE = textwrap.dedent(
    """
    import threading
    from local.lifecycle import ignore_stop_signals, stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop, supervised={supervised})
    print("ready", flush=True)
    while not stop.wait(0):
        pass
    ignore_stop_signals()  # as local.__main__ does once its piece returns
    print("stopped", flush=True)
    """
)
# What reaches a piece's process group; a supervised piece (under `make run`) gets only the supervisor's signal.
PATTERNS: dict[str, Sequence[signal.Signals]] = {
    "make forwards SIGTERM": (signal.SIGTERM, signal.SIGTERM),
    "Ctrl-C then SIGTERM": (signal.SIGINT, signal.SIGTERM),
    "SIGHUP then SIGTERM": (signal.SIGHUP, signal.SIGTERM),
    "rapid repeats": (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGTERM, signal.SIGINT),
    "supervisor's stop twice": (SUPERVISOR_STOP, SUPERVISOR_STOP),
}
SUPERVISED = {"supervisor's stop twice"}


@contextmanager
def minimal_piece(supervised: bool) -> Iterator[subprocess.Popen[str]]:
    """A process that installs stop_on_signals and waits on its event as a piece's main thread does."""
    process = subprocess.Popen(
        [sys.executable, "-c", PIECE.format(supervised=supervised)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def send_to_group(pid: int, pattern: Sequence[signal.Signals], rng: random.Random) -> None:
    """The pattern to the whole group, back to back or a fraction of a millisecond apart, as make and the shell do."""
    for signum in pattern:
        os.killpg(pid, signum)
        if rng.random() < 0.5:
            time.sleep(rng.random() / 2000)


@pytest.mark.parametrize("pattern", list(PATTERNS), ids=list(PATTERNS))
def test_a_piece_stops_within_its_deadline_on_every_run_of_a_signal_pattern(pattern: str) -> None:
    rng = random.Random(pattern)
    hung = []
    for run in range(RUNS // len(PATTERNS)):
        with minimal_piece(pattern in SUPERVISED) as piece:
            send_to_group(piece.pid, PATTERNS[pattern], rng)
            try:
                code = piece.wait(STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                hung.append(run)
                continue
            assert piece.stdout is not None
            assert (code, piece.stdout.read().strip()) == (0, "stopped")
    assert hung == [], f"{len(hung)} of {RUNS // len(PATTERNS)} runs did not stop within {STOP_DEADLINE_SECONDS} s"


@pytest.fixture(scope="module")
def aws_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    aws = Launched("aws", clean_environment({"AWS_PORT": str(port)}), tmp_path_factory.mktemp("aws") / "aws.log")
    try:
        aws.wait_for()
        yield f"http://127.0.0.1:{port}"
    finally:
        aws.stop()


@pytest.mark.e2e
def test_a_worker_piece_stopped_like_make_worker_exits_cleanly_in_time(aws_url: str, tmp_path: Path) -> None:
    env = clean_environment({"AWS_PORT": aws_url.rsplit(":", 1)[1], "AWS_ENDPOINT_URL": aws_url})
    worker = Launched("worker", env, tmp_path / "worker.log")
    try:
        worker.wait_for()
        send_to_group(worker.popen.pid, PATTERNS["make forwards SIGTERM"], random.Random(0))
        code = worker.popen.wait(STOP_DEADLINE_SECONDS)
    finally:
        worker.kill()
    assert code == 0, worker.output()[-2000:]
    assert "stopping: finishing in-flight batches" in worker.output()
