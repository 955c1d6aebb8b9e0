"""Make moto's SQS hand a message to one receive at a time, as SQS does.

moto's ReceiveMessage checks that a message is visible and then marks it
received, with nothing in between that stops a concurrent receive from doing the
same. Under several concurrent pollers (what Lambda runs, and what the offline
worker runs) two receives can both take one message: its receive count rises by
two for one delivery, and a task can reach the dead-letter queue attempts early.
Two receives can also both move a message to the dead-letter queue, and the
second fails with an internal error.

SQS hides a received message from every other receive. This module restores
that: each scan of a queue runs under one lock, with a zero wait, and the long
poll waits outside the lock, so a waiting receive never holds up the others.
Deletes and visibility changes take the same lock, so none lands in the middle
of a scan. It patches moto in the embedded endpoint's process only.
"""

from __future__ import annotations

import threading
import time
from typing import Any

_lock = threading.RLock()
MIN_WAIT_SECONDS = 0.05
_patched = False


def make_receives_atomic() -> None:
    """Patch moto's SQS backend (once per process)."""
    global _patched
    if _patched:
        return
    from moto.sqs.models import SQSBackend

    receive = SQSBackend.receive_message
    delete = SQSBackend.delete_message
    change_visibility = SQSBackend.change_message_visibility

    def atomic_receive(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Any]:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _lock:
                # A zero wait makes moto scan once and return.
                result = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            remaining = deadline - time.monotonic()
            if result or remaining <= 0:
                return list(result)
            # Woken by a send; messages whose visibility ends are found by the next scan, within a second.
            waited_from = time.monotonic()
            self.get_queue(queue_name).wait_for_messages(min(1.0, remaining))
            if time.monotonic() - waited_from < MIN_WAIT_SECONDS:
                # Visible messages that no scan may take (a FIFO group in flight) end the wait at
                # once; pause instead of spinning.
                time.sleep(MIN_WAIT_SECONDS)

    def atomic_delete(self: Any, queue_name: str, receipt_handle: str) -> None:
        with _lock:
            delete(self, queue_name, receipt_handle)

    def atomic_change_visibility(self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
        with _lock:
            change_visibility(self, queue_name, receipt_handle, visibility_timeout)

    SQSBackend.receive_message = atomic_receive  # type: ignore[method-assign]
    SQSBackend.delete_message = atomic_delete  # type: ignore[method-assign]
    SQSBackend.change_message_visibility = atomic_change_visibility  # type: ignore[method-assign]
    _patched = True
