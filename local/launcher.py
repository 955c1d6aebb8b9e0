"""Start the offline stack, or one of its pieces, as a child process on free loopback ports.

The one way the tools and the tests start `python -m local run|aws|api|worker`:
each process runs in a session of its own (a kill reaches it and whatever it
started), writes its output to a log file, and is waited on until it prints a
ready line (each piece's own by default, any text on request) or exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from local.config import EMBEDDED_CREDENTIALS, LOOPBACK, PROJECT_DIR

# What each piece prints once it serves; `run` prints it once all three do.
READY_LINES = {"aws": "aws ready:", "api": "api ready:", "worker": "worker ready:", "run": "taskproc is ready"}
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.1


class LaunchError(Exception):
    """A process exited, or did not print its ready line in time; the message holds its last output."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def clean_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without AWS profiles, endpoints or keys, with dummy credentials and `overrides`."""
    dropped = {"PORT", "STAGE"}
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_") and name not in dropped}
    env.update(EMBEDDED_CREDENTIALS)
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # No shared config or credentials file can add a profile's endpoint or keys.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "PYTHONUNBUFFERED": "1",
            "STAGE": "local",
        }
    )
    env.update(overrides)
    return env


class Launched:
    """One `python -m local <piece> [args]` process, in its own session, its output in `log`."""

    def __init__(self, piece: str, env: Mapping[str, str], log: Path, args: tuple[str, ...] = ()) -> None:
        self.piece = piece
        self.name = log.stem
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "local", piece, *args],
                cwd=PROJECT_DIR,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str | None = None, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        """Wait until a line of the output holds `text` (the piece's ready line by default); returns that line.

        Raises:
            LaunchError: the process exited first, or the deadline passed.
        """
        wanted = text or READY_LINES[self.piece]
        deadline = time.monotonic() + timeout
        while True:
            line = next((line for line in self.output().splitlines() if wanted in line), None)
            if line is not None:
                return line
            if not self.alive:
                raise LaunchError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise LaunchError(f"{self.name} did not print {wanted!r} in {timeout:.0f} s:\n{self.output()[-4000:]}")
            time.sleep(POLL_SECONDS)

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone, group and all
            os.killpg(self.popen.pid, signum)

    def group_alive(self) -> bool:
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler runs, no batch is settled."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(STOP_TIMEOUT_SECONDS)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM the process, then SIGKILL its group; returns the exit code of a clean stop, else None."""
        code: int | None = self.popen.returncode
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                code = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
        self.kill()  # whatever it started goes too
        return code


def launch(
    piece: str,
    env: Mapping[str, str],
    log: Path,
    args: tuple[str, ...] = (),
    ready: str | None = None,
    timeout: float = READY_TIMEOUT_SECONDS,
) -> Launched:
    """Start a piece and wait for `ready` (its ready line by default); the piece is stopped if it never prints it.

    Raises:
        LaunchError: the piece did not become ready.
    """
    started = Launched(piece, env, log, args)
    try:
        started.wait_for(ready, timeout)
    except LaunchError:
        started.stop()
        raise
    return started


@dataclass(frozen=True)
class RunningStack:
    """The whole offline stack (`python -m local run`) and where it serves."""

    api_url: str
    aws_url: str
    log: Path
    process: Launched


@contextlib.contextmanager
def offline_stack(
    log: Path, env: Mapping[str, str], ready: str | None = None, timeout: float = READY_TIMEOUT_SECONDS
) -> Iterator[RunningStack]:
    """`python -m local run` on free ports with `env` (PORT and AWS_PORT set here), until the block ends.

    Raises:
        LaunchError: it did not print `ready` (the stack's ready line by default) in time.
    """
    port, aws_port = free_port(), free_port()
    ports = {"PORT": str(port), "AWS_PORT": str(aws_port), "CONSOLE_PORT": str(free_port())}
    process = launch("run", {**env, **ports}, log, ready=ready, timeout=timeout)
    try:
        yield RunningStack(f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{aws_port}", log, process)
    finally:
        process.stop(timeout=45)
