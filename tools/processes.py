"""The offline stack's pieces (`python -m local aws|api|worker`) as child processes on free ports, for the tools.

A thin face of local.launcher (the one way the stack is started), under the names
the chaos tools and the fuzzing fixtures use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from local.config import EMBEDDED_CREDENTIALS, LOOPBACK, PROJECT_DIR
from local.launcher import (
    READY_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    Launched,
    LaunchError,
    clean_environment,
    free_port,
)

DUMMY_CREDENTIALS = EMBEDDED_CREDENTIALS
PieceError = LaunchError
piece_environment = clean_environment

__all__ = [
    "DUMMY_CREDENTIALS",
    "LOOPBACK",
    "PROJECT_DIR",
    "Piece",
    "PieceError",
    "free_port",
    "piece_environment",
    "start_piece",
]


class Piece(Launched):
    """One `python -m local <piece>` process whose output goes to `<log_dir>/<name>.log`."""

    def __init__(self, piece: str, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(piece, env, log_dir / f"{name}.log")

    @property
    def log_path(self) -> Path:
        return self.log

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait for the piece's ready line.

        Raises:
            PieceError: the piece exited first, or the deadline passed.
        """
        self.wait_for(timeout=timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        return super().stop(timeout)


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
