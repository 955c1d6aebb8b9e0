"""An attempt's heartbeat: the handler says it is alive, the lease and the message stay its own.

A long task type (`@task_type(..., heartbeat_seconds=h)`) runs under a lease of
LEASE_HEARTBEATS x h instead of the stage's lease, and its handler calls
`context.heartbeat(progress)` at least every h seconds. Each heartbeat that writes
is one conditional UpdateItem under the lease (the lease's expiry moved on, the
progress stored) and one ChangeMessageVisibility of the message the attempt holds,
so that the message reappears only when the lease has run out. A consumer that
dies is taken over about LEASE_HEARTBEATS x h (plus the visibility margin and a
poll) after its last heartbeat, not when a 15-minute timeout ends.

Timeline of one attempt, h = heartbeat_seconds, L = LEASE_HEARTBEATS x h:

    acquire      lease until t0 + L; message hidden until t0 + L + margin
    heartbeat    lease until t + L; message hidden until t + L + margin
                 (a call within COALESCE_SHARE x h of the last write writes nothing;
                 its progress goes out with the next write)
    dies         the lease ends L after the last write; the message shows margin later,
                 and the next acquire takes the task over, recording this attempt expired
    cancelled    an operator's cancel makes the next heartbeat raise TaskCancelled
    lost         a heartbeat refused because another consumer holds the lease raises
                 AttemptAbandoned: the handler must stop, its result will not be kept

Hand-written because the lease is taskproc's own (store.py); no library keeps it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib.errors import CancelRequested, LeaseLost, StoreError
from chalicelib.registry import LEASE_HEARTBEATS, AttemptAbandoned, TaskCancelled
from chalicelib.tasks.queue import Queue, VisibilityChange
from chalicelib.tasks.store import Acquired, TaskStore

# A heartbeat this soon after the last write (a share of heartbeat_seconds) writes nothing.
COALESCE_SHARE = 1 / 3
# The message shows this long after the lease ends, so that its next receive finds it over.
VISIBILITY_MARGIN_SECONDS = 1
MAX_PROGRESS_BYTES = 4 * 1024

logger = logging.getLogger(__name__)


def lease_seconds(heartbeat_seconds: float) -> float:
    """The lease of an attempt of a type that heartbeats every `heartbeat_seconds`."""
    return LEASE_HEARTBEATS * heartbeat_seconds


def progress_json(progress: Any) -> str:
    """`progress` as the JSON text stored on the task.

    Raises:
        ValueError: it is not JSON, or longer than MAX_PROGRESS_BYTES.
    """
    try:
        text = json.dumps(progress, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"progress must be a JSON value: {exc}") from exc
    size = len(text.encode("utf-8"))
    if size > MAX_PROGRESS_BYTES:
        raise ValueError(f"progress may be at most {MAX_PROGRESS_BYTES} bytes of JSON; it has {size}")
    return text


class Heartbeat:
    """Keeps one attempt's lease and message alive while its handler runs; thread-safe."""

    def __init__(
        self,
        store: TaskStore,
        queue: Queue,
        acquired: Acquired,
        message_id: str,
        receipt_handle: str,
        heartbeat_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._queue = queue
        self._acquired = acquired
        self._change = (message_id, receipt_handle)
        self._lease = lease_seconds(heartbeat_seconds)
        self._floor = heartbeat_seconds * COALESCE_SHARE
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write = clock()
        self._pending: str | None = None
        self.lost = False  # the lease went to another consumer: nothing of this attempt is kept
        self.cancelled = False  # an operator cancelled the task; the heartbeat said so
        self.writes = 0

    def hide_message(self) -> None:
        """Hide the attempt's message for the lease and its margin; called once at the start."""
        message_id, receipt = self._change
        change = VisibilityChange(message_id, receipt, math.ceil(self._lease) + VISIBILITY_MARGIN_SECONDS)
        # A change that fails lets the message show early: its delivery finds the task leased and waits.
        for failed in self._queue.change_visibility([change]):
            logger.warning("the visibility of message %s was not extended", failed)

    def beat(self, progress: Any = None) -> None:
        """Extend the lease and the message's visibility, storing `progress` (None keeps the last).

        Raises:
            ValueError: `progress` is not JSON or too long.
            TaskCancelled: an operator cancelled the task; stop, the attempt ends CANCELLED.
            AttemptAbandoned: the lease was lost; stop, the result will not be kept.
        """
        text = None if progress is None else progress_json(progress)
        with self._lock:
            if self.lost:
                raise AttemptAbandoned(f"task {self._acquired.task.id!r} lost its lease; stop, nothing will be kept")
            if self.cancelled:
                raise TaskCancelled(f"task {self._acquired.task.id!r} was cancelled by an operator")
            if text is not None:
                self._pending = text
            now = self._clock()
            if now - self._last_write < self._floor:
                return
            self._write(now)

    def _write(self, now: float) -> None:
        try:
            self._store.heartbeat(self._acquired, self._lease, self._pending)
        except LeaseLost as exc:
            self.lost = True
            raise AttemptAbandoned(str(exc)) from exc
        except CancelRequested as exc:
            self.cancelled = True
            raise TaskCancelled(str(exc)) from exc
        except StoreError:
            return  # the lease still runs for two more heartbeats: the next one tries again
        self._last_write, self._pending = now, None
        self.writes += 1
        self.hide_message()

    @property
    def unwritten_progress(self) -> str | None:
        """The last progress a coalesced heartbeat has not written yet (JSON text), or None."""
        with self._lock:
            return self._pending

    def cancel_requested(self) -> bool:
        """Whether an operator asked to cancel the task (one strongly consistent read)."""
        record = self._store.get(self._acquired.task.id)
        return bool(record and record.cancel_requested and record.lease and record.lease.owner == self._acquired.owner)
