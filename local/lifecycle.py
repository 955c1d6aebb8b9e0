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

    Call it from the main thread (Python installs signal handlers from there only).
    """
    if supervised:
        for signum in TERMINATING:
            signal.signal(signum, signal.SIG_IGN)
        _relay_signals(stop, (SUPERVISOR_STOP,))
        threading.Thread(target=_watch_parent, args=(stop, os.getppid()), name="parent-watch", daemon=True).start()
    else:
        _relay_signals(stop, TERMINATING)


def _relay_signals(stop: threading.Event, signals: tuple[signal.Signals, ...]) -> None:
    """Set `stop` from a thread of its own when one of `signals` arrives.

    Python runs a signal handler in the main thread between two bytecodes, which
    may be while that thread holds the lock of `stop`'s condition: inside
    `stop.wait(...)`, or inside the previous signal's handler (two SIGTERMs in a
    row). A handler calling `stop.set()` would then wait forever for a lock its
    own thread holds. So the handler does nothing: the interpreter's C-level
    handler has already written the signal's number to the wakeup pipe, and the
    relay thread, blocked on reading it, sets `stop` like any other thread.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block; a full pipe already holds a stop
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in signals:
        signal.signal(signum, _relayed)
    wanted = frozenset(signals)
    threading.Thread(target=_set_on_wakeup, args=(read_end, wanted, stop), name="signal-relay", daemon=True).start()


def _relayed(_signum: int, _frame: FrameType | None) -> None:
    """Installed so that the signal neither kills the process nor is ignored: the wakeup pipe carries it."""


def _set_on_wakeup(read_end: int, signals: frozenset[int], stop: threading.Event) -> None:
    while received := os.read(read_end, 64):  # each byte one signal's number
        if any(signum in signals for signum in received):
            stop.set()


def ignore_terminating_signals() -> None:
    """Ignore Ctrl-C and SIGTERM from the first instruction on: dispositions set to ignored
    survive exec, so a supervised piece is covered before its own handlers are installed."""
    for signum in TERMINATING:
        signal.signal(signum, signal.SIG_IGN)


def ignore_stop_signals() -> None:
    """Once a piece has stopped, ignore further stop signals until it exits.

    Python puts the default handlers back while the interpreter shuts down, so the
    second SIGTERM of a pair landing then would turn a clean exit into a death by
    signal (and `make` would report an error); ignored dispositions are left alone.
    """
    for signum in (*TERMINATING, SUPERVISOR_STOP):
        signal.signal(signum, signal.SIG_IGN)


def _watch_parent(stop: threading.Event, parent: int) -> None:
    while not stop.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:
            stop.set()
