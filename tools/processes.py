"""The offline stack's pieces (`python -m local aws|api|worker`) as child processes on free ports.

Each piece runs in its own process group, so a kill reaches the piece and
anything it started, and nothing outlives the tool that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.1
# The embedded endpoint accepts any credentials; these keep real ones from ever being sent.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class PieceError(Exception):
    """A piece exited, or did not print its ready line in time; the message holds its last output."""


def free_port() -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def piece_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without AWS profiles, with dummy credentials and `overrides` on top."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in {"PORT", "STAGE"}
    }
    env.update(DUMMY_CREDENTIALS)
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


class Piece:
    """One `python -m local <piece>` process whose output goes to a log file."""

    def __init__(self, piece: str, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.piece = piece
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local", piece],
                cwd=PROJECT_DIR,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait for the piece's `<piece> ready:` line.

        Raises:
            PieceError: the piece exited first, or the deadline passed.
        """
        marker = f"{self.piece} ready:"
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if not self.alive:
                raise PieceError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise PieceError(f"{self.name} not ready after {timeout:.0f} s:\n{self.output()[-2000:]}")
            time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler runs, no batch is settled."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_SECONDS)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the group, then SIGKILL it if it has not exited within `timeout`."""
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_SECONDS)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone, group and all
            os.killpg(self.process.pid, signum)


def start_piece(piece: str, name: str, env: Mapping[str, str], log_dir: Path) -> Piece:
    """Start a piece and wait for its ready line; the piece is stopped again if it never gets there.

    Raises:
        PieceError: the piece did not become ready.
    """
    started = Piece(piece, name, env, log_dir)
    try:
        started.wait_ready()
    except PieceError:
        started.stop()
        raise
    return started
