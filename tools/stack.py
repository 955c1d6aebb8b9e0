"""Start the offline stack (`python -m local run`) in a subprocess on free ports, for the tools."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RunningStack:
    api_url: str
    aws_url: str
    log: Path


@contextmanager
def offline_stack(log: Path, **overrides: str) -> Iterator[RunningStack]:
    """Run the whole offline stack until the block ends; `overrides` are environment variables.

    Raises:
        RuntimeError: it did not print `ready` in time (its log says why).
    """
    port, aws_port = free_port(), free_port()
    env = {**os.environ, "PORT": str(port), "AWS_PORT": str(aws_port), **overrides}
    env.pop("AWS_ENDPOINT_URL", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "local", "run"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while b"ready" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the offline stack did not start; see {log}")
            time.sleep(0.1)
        yield RunningStack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{aws_port}", log)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
