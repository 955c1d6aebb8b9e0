"""How a piece of the offline stack learns that it should stop, and says that it is up."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

PARENT_CHECK_SECONDS = 0.5


def ready_line(piece: str, detail: str) -> str:
    """The line a piece prints once it serves; `make run` waits for it from each piece."""
    return f"{piece} ready: {detail}"


def announce_ready(piece: str, detail: str) -> None:
    print(ready_line(piece, detail), flush=True)


def configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=level,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # botocore's pool warnings say nothing a user of the offline stack can act on.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # "Found credentials in environment variables", once per client.
    logging.getLogger("botocore").setLevel(logging.WARNING)


# What the supervisor sends a piece to stop it; see stop_on_signals.
SUPERVISOR_STOP = signal.SIGUSR1
TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals(stop: threading.Event, supervised: bool) -> None:
    """Set `stop` on SIGINT, SIGTERM or SIGHUP; when supervised, on SIGUSR1 or the supervisor's exit only.

    Under `make run` the pieces share the supervisor's process group, so Ctrl-C
    (and `kill -TERM -<group>`, `timeout`, a CI runner's cleanup) reaches all of
    them at once. A supervised piece leaves those to the supervisor, which stops
    the pieces in the order that lets in-flight batches finish against a live
    endpoint. It also stops when its supervisor disappears, so a killed
    supervisor leaves no orphans behind.
    """

    def handle(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if supervised:
        for signum in TERMINATING:
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(SUPERVISOR_STOP, handle)
        threading.Thread(target=_watch_parent, args=(stop, os.getppid()), name="parent-watch", daemon=True).start()
    else:
        for signum in TERMINATING:
            signal.signal(signum, handle)


def ignore_terminating_signals() -> None:
    """Ignore Ctrl-C and SIGTERM from the first instruction on: dispositions set to ignored
    survive exec, so a supervised piece is covered before its own handlers are installed."""
    for signum in TERMINATING:
        signal.signal(signum, signal.SIG_IGN)


def _watch_parent(stop: threading.Event, parent: int) -> None:
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:
            stop.set()
