"""The chaos run's callback receiver, over real HTTP: it verifies what taskproc signs, refuses what it does
not, deduplicates by id, and makes the retries it is there to make (a 500, a slow answer)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from chalicelib.callbacks.signing import SIGNATURE_HEADER, signature_header
from tools.chaos.receiver import CallbackReceiver

SECRET = "a-chaos-receiver-secret-of-32-characters-or-more"


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    started = CallbackReceiver(SECRET, refuse_every=2, slow=1, slow_seconds=1.0).start()
    yield started
    started.stop()


def send(receiver: CallbackReceiver, delivery_id: str, *, key: str = SECRET, at: float | None = None) -> int | None:
    """POST one signed delivery; its status code, or None when no answer came within 0.5 s."""
    body = json.dumps({"id": delivery_id, "status": "COMPLETED"}, separators=(",", ":")).encode()
    header = signature_header(key.encode(), int(time.time() if at is None else at), body)
    try:
        response = requests.post(receiver.url, data=body, headers={SIGNATURE_HEADER: header}, timeout=0.5)
    except requests.Timeout:
        return None
    return response.status_code


def test_the_first_id_is_answered_late_after_being_taken_and_its_resend_is_a_deduplicated_repeat(
    receiver: CallbackReceiver,
) -> None:
    assert send(receiver, "first") is None  # past the sender's deadline
    assert send(receiver, "first") == 200
    first, again = receiver.snapshot()
    assert (first.accepted, first.repeat, again.accepted, again.repeat) == (True, False, True, True)


def test_every_other_new_id_is_refused_once_with_a_500_then_taken(receiver: CallbackReceiver) -> None:
    send(receiver, "first")
    assert send(receiver, "second") == 500
    assert send(receiver, "second") == 200
    refused, taken = [d for d in receiver.snapshot() if d.id == "second"]
    assert (refused.accepted, taken.accepted, taken.repeat) == (False, True, False)


def test_a_body_signed_with_another_key_or_too_long_ago_is_refused_and_recorded_unsigned(
    receiver: CallbackReceiver,
) -> None:
    assert send(receiver, "forged", key="another-secret-of-at-least-32-characters!") == 400
    assert send(receiver, "replayed", at=time.time() - 301) == 400
    assert [(d.id, d.signed, d.accepted) for d in receiver.snapshot()] == [
        ("forged", False, False),
        ("replayed", False, False),
    ]
