"""The embedded endpoint's SQS: moto's, with one receive at a time per message and a cost per call flat in depth.

This patches moto 5.2.5 (the version requirements-dev.txt pins), in the embedded
endpoint's process only (`local.aws.EmbeddedAws.start` calls `install`). A moto
whose patched functions differ from the ones read for this module makes `install`
raise, and tests/local/test_embedded_sqs_depth.py fail, rather than run with
patches that no longer fit.

Atomic receives. moto's ReceiveMessage checks that a message is visible and then
marks it received, with nothing in between that stops a concurrent receive from
doing the same. Under several concurrent pollers (what Lambda runs, and what the
offline worker runs) two receives could both take one message: its receive count
rose by two for one delivery, and a task could reach the dead-letter queue
attempts early. SQS hides a received message from every other receive; so does
this module: each scan of a queue runs under one lock with a zero wait, and the
long poll waits outside it, so a waiting receive never holds up the others.
Deletes and visibility changes take the same lock.

Flat in depth. Profiled at 10,000 messages, moto spent its time in:
- `is_message_valid_based_on_retention_period`, run for every received message,
  which reads one attribute through `get_queue_attributes`; that builds the whole
  attribute dictionary three times, and each build counts every message of the
  queue three times (visible, in flight, delayed);
- SendMessage reading `ContentBasedDeduplication` through the same dictionary;
- every visibility and delay check reading the clock through naive-datetime
  conversions (`unix_time_millis`), several per message per scan;
- ReceiveMessage listing every visible message before taking ten;
- DeleteMessage and ChangeMessageVisibility finding a receipt handle by asking every
  message for the list of all its handles, and deletes rebuilding the list.
Here the retention period and the deduplication flag are read from the queue
itself, the clock is `time.time()`, a receive stops scanning once it has its
messages, and a receipt handle finds its message through an index filled when the
handle is issued. The replaced functions are moto's own, less those costs: same
order, redrive at `maxReceiveCount`, receive counts, visibility, delays, FIFO groups,
retention and errors.

Why a patch: no library makes an in-process SQS flat in depth. moto is the one
embedded emulator that also serves the CloudFormation, DynamoDB and SQS the stack
needs from one pip install; its aim is fidelity for test-sized queues, and its
SQS models keep messages in a list scanned per call. ElasticMQ and LocalStack
are separate servers (a JVM, a container), not packages of this stack.
"""

from __future__ import annotations

import hashlib
import inspect
import string
import threading
import time
import weakref
from copy import deepcopy
from typing import Any

MOTO_VERSION = "5.2.5"
# The first 16 hex digits of the sha256 of moto's source of each function this module
# replaces, wraps or copies: a moto that changed any of them needs this module read again.
RELIED_ON = {
    "Message.mark_received": "98e7ec115c7fcb9f",
    "Message.visible": "5129b573308de62a",
    "Message.delayed": "e2fd48abf582683a",
    "Queue.messages": "03a531dbcbcf9aee",
    "Queue.add_message": "f27c9231c1f20433",
    "Queue.delete_message": "fa6fd5b9bd2cafb4",
    "Queue.wait_for_messages": "58432562ccf2e13e",
    "Queue._set_attributes": "4b7aaf3f46363f13",
    "SQSBackend.send_message": "bf161af09a9e6b86",
    "SQSBackend.receive_message": "065f3e5e7d214408",
    "SQSBackend.delete_message": "9eb658afdceb6bd9",
    "SQSBackend.delete_message_batch": "53c0bc5d5f51468a",
    "SQSBackend.change_message_visibility": "f0e9df5f66627114",
    "SQSBackend.is_message_valid_based_on_retention_period": "cca23b94a5f3af9d",
}
MIN_WAIT_SECONDS = 0.05
MAXIMUM_MESSAGE_DELAY = 900
MAXIMUM_TOTAL_VISIBILITY_MS = 43_200 * 1000

_lock = threading.RLock()
# Every receipt handle issued, to its message (which keeps all its handles, as SQS accepts old ones).
_receipts: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_installed: set[str] = set()
# moto's own functions, kept when patched, so that moto_drift() still reads moto's.
_originals: dict[str, Any] = {}


class EmbeddedSqsError(Exception):
    """The installed moto is not the one these patches were written against."""


def moto_drift() -> list[str]:
    """What differs between the installed moto and the one this module patches; empty when nothing does."""
    import moto
    from moto.sqs.models import Message, Queue, SQSBackend

    drift = [] if moto.__version__ == MOTO_VERSION else [f"moto {moto.__version__}, not {MOTO_VERSION}"]
    classes = {"Message": Message, "Queue": Queue, "SQSBackend": SQSBackend}
    for name, digest in RELIED_ON.items():
        owner, attribute = name.split(".")
        found = _originals.get(name) or inspect.getattr_static(classes[owner], attribute, None)
        if isinstance(found, property):
            found = found.fget
        if found is None:
            drift.append(f"{name} is gone")
            continue
        source = inspect.getsource(found)
        if hashlib.sha256(source.encode()).hexdigest()[:16] != digest:
            drift.append(f"{name} changed")
    return drift


def install() -> None:
    """Make the embedded SQS atomic per receive and flat in depth (once per process).

    Raises:
        EmbeddedSqsError: the installed moto is not the version patched here.
    """
    if "flat" in _installed:
        return
    drift = moto_drift()
    if drift:
        raise EmbeddedSqsError(f"local/embedded_sqs.py patches moto {MOTO_VERSION}: {'; '.join(drift)}")
    from moto.sqs.models import Message, Queue, SQSBackend

    classes = {"Message": Message, "Queue": Queue, "SQSBackend": SQSBackend}
    for name in RELIED_ON:
        owner, attribute = name.split(".")
        _originals[name] = inspect.getattr_static(classes[owner], attribute)
    _make_flat_in_depth()
    _make_atomic(_scan_once)
    _installed.add("flat")


def make_receives_atomic() -> None:
    """Only the atomic receives, over moto's own scans (the endpoint before the depth patches; the bench's baseline)."""
    from moto.sqs.models import SQSBackend

    if not _installed:
        _make_atomic(SQSBackend.receive_message)
        _installed.add("atomic")


def _make_atomic(scan: Any) -> None:
    from moto.sqs.models import SQSBackend

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
                result = scan(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
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


def _now_ms() -> float:
    # moto's unix_time_millis() is this same wall clock, reached through two naive datetimes.
    return time.time() * 1000.0


def _ready(message: Any, now: float) -> bool:
    """moto's `message.visible and not message.delayed`, with one reading of the clock."""
    return bool(now > message.visible_at and now >= message.delayed_until)


def _make_flat_in_depth() -> None:
    from moto.sqs.models import Message, Queue, SQSBackend

    mark_received = Message.mark_received

    def indexed_mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        mark_received(self, visibility_timeout)
        _receipts[self.receipt_handle] = self

    Message.mark_received = indexed_mark_received  # type: ignore[method-assign]
    Message.visible = property(lambda self: _now_ms() > self.visible_at)  # type: ignore[method-assign,assignment]
    Message.delayed = property(lambda self: _now_ms() < self.delayed_until)  # type: ignore[method-assign,assignment]
    Queue.delete_message = _delete_message  # type: ignore[method-assign]
    Queue.wait_for_messages = _wait_for_messages  # type: ignore[method-assign]
    SQSBackend.send_message = _send_message  # type: ignore[method-assign]
    SQSBackend.change_message_visibility = _change_message_visibility  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]


def _position(queue: Any, receipt_handle: str) -> int | None:
    """Where in `queue` the message that was given `receipt_handle` is; None when it is not there."""
    message = _receipts.get(receipt_handle)
    if message is None:
        return None
    try:
        return int(queue._messages.index(message))  # identity; received messages sit near the front
    except ValueError:
        return None


def _delete_message(self: Any, receipt_handle: str) -> None:
    """moto's Queue.delete_message, finding the message through the index."""
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in self.deleted_messages:
        return  # already deleted: deleting again succeeds, as on SQS
    position = _position(self, receipt_handle)
    if position is None:
        raise ReceiptHandleIsInvalid()
    message = self._messages[position]
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    # In place: moto rebuilds the list, and a send appending meanwhile (under another lock) was lost.
    del self._messages[position]


def _wait_for_messages(self: Any, timeout: int) -> None:
    """moto's Queue.wait_for_messages, stopping at the first ready message rather than listing all."""
    with self._messages_lock:
        self._messages_lock.wait_for(lambda: _any_ready(self._messages), timeout=timeout)


def _any_ready(messages: list[Any]) -> bool:
    now = _now_ms()
    return any(_ready(message, now) for message in messages)


def _retained(self: Any, queue_name: str, message: Any) -> bool:
    """moto's retention check, reading the period from the queue rather than through its attributes."""
    retention_period = self.get_queue(queue_name).message_retention_period
    return bool(retention_period + message.sent_timestamp / 1000 > time.time())


def _scan_once(
    self: Any,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Any]:
    """One pass of moto's SQSBackend.receive_message (the atomic receive calls it with a zero wait).

    The pass walks the queue in order and stops once it has `count` messages,
    where moto first lists every visible one.
    """
    from moto.sqs.models import _filter_message_attributes

    names = message_attribute_names or []
    queue = self.get_queue(queue_name)
    result: list[Any] = []
    currently_pending_groups = deepcopy(queue.pending_message_groups)
    messages_to_dlq: list[Any] = []
    now = _now_ms()
    for message in queue._messages:  # sends only append; deletes and redrives wait for this scan's lock
        if not _ready(message, now):
            continue
        if message in queue.pending_messages:
            # The message is pending but is visible again, so the consumer must have timed out.
            queue.pending_messages.remove(message)
            currently_pending_groups = deepcopy(queue.pending_message_groups)
        if message.group_id and queue.fifo_queue and message.group_id in currently_pending_groups:
            continue  # a previous receive still holds this FIFO group
        if (
            queue.dead_letter_queue is not None
            and queue.redrive_policy
            and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]
        ):
            messages_to_dlq.append(message)
            continue
        queue.pending_messages.add(message)
        message.mark_received(visibility_timeout=visibility_timeout)
        message_copy = deepcopy(message)  # the copy's attributes are filtered, not the message's
        _filter_message_attributes(message_copy, names)
        if not self.is_message_valid_based_on_retention_period(queue_name, message):
            break
        result.append(message_copy)
        if len(result) >= count:
            break
    for message in messages_to_dlq:
        queue._messages.remove(message)
        queue.dead_letter_queue.add_message(message)
    return result


def _send_message(
    self: Any,
    queue_name: str,
    message_body: str,
    message_attributes: dict[str, Any] | None = None,
    delay_seconds: int | None = None,
    deduplication_id: str | None = None,
    group_id: str | None = None,
    system_attributes: dict[str, Any] | None = None,
    validate_group_id: bool = True,
) -> Any:
    """moto's SQSBackend.send_message, reading ContentBasedDeduplication from the queue rather than
    through its attributes (which count every message).

    Raises:
        InvalidParameterValue, MissingParameter: as moto's.
    """
    from moto.moto_api._internal import mock_random as random
    from moto.sqs.exceptions import InvalidParameterValue
    from moto.sqs.models import Message

    queue = self.get_queue(queue_name)
    self._validate_message(
        queue,
        message_body=message_body,
        delay_seconds=int(delay_seconds or 0),
        deduplication_id=deduplication_id,
        group_id=group_id,
        validate_group_id=validate_group_id,
    )
    delay_seconds = int(delay_seconds) if delay_seconds is not None else queue.delay_seconds
    message = Message(str(random.uuid4()), message_body, system_attributes)
    # moto's queue.attributes lists ContentBasedDeduplication only for FIFO queues.
    if queue.fifo_queue and queue.content_based_deduplication:
        message.deduplication_id = hashlib.sha256(message_body.encode("utf-8")).hexdigest()
    if deduplication_id is not None:
        message.deduplication_id = deduplication_id
        message.sequence_number = "".join(random.choice(string.digits) for _ in range(20))
    if group_id is not None:
        message.group_id = group_id
    if message_attributes:
        message.message_attributes = message_attributes
    if delay_seconds > MAXIMUM_MESSAGE_DELAY:
        raise InvalidParameterValue(
            f"Value {delay_seconds} for parameter DelaySeconds is invalid. "
            "Reason: DelaySeconds must be >= 0 and <= 900."
        )
    message.mark_sent(delay_seconds=delay_seconds)
    queue.add_message(message)
    return message


def _change_message_visibility(self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
    """moto's SQSBackend.change_message_visibility, finding the message through the index.

    Raises:
        ReceiptHandleIsInvalid: no message of the queue was given this handle.
        InvalidParameterValue: the total visibility would pass 12 hours.
    """
    from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid

    queue = self.get_queue(queue_name)
    position = _position(queue, receipt_handle)
    if position is None:
        raise ReceiptHandleIsInvalid
    message = queue._messages[position]
    if _now_ms() + int(visibility_timeout) * 1000 - message.sent_timestamp > MAXIMUM_TOTAL_VISIBILITY_MS:
        raise InvalidParameterValue(
            f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
            "VisibilityTimeout for the message is beyond the limit [43200 seconds]"
        )
    message.change_visibility(visibility_timeout)
    if message.visible and message in queue.pending_messages:
        queue.pending_messages.remove(message)  # visible again: no longer in flight
