"""The signature on every callback delivery, and the stage's key that makes it.

    Taskproc-Signature: t=1764590400,v1=<64 hex digits>

`v1` is the hex HMAC-SHA256, keyed by the stage's callback secret (its text as UTF-8), of the
timestamp, a dot and the request's body exactly as sent: `"<t>.<body>"` (the Stripe scheme). A
receiver recomputes it, compares in constant time, and refuses a `t` more than five minutes from
its clock, so a recorded delivery cannot be replayed later. Each attempt signs afresh with its own
`t`; the body of every attempt of one delivery is the same bytes.

The key is the stage's secret: on AWS a random value its stack generates in Secrets Manager
(infra/access.yaml), named by CALLBACK_SECRET_ID and read once per container by the consumers,
which alone deliver; offline the value itself, CALLBACK_SIGNING_SECRET (`make run` makes one and
says where it is). With neither, deliveries fail their attempts, visibly, until one is set.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Taskproc-Signature"
# How far a receiver should let `t` be from its own clock.
TOLERANCE_SECONDS = 300
MIN_SECRET_LENGTH = 32


class CallbackSecretUnavailable(Exception):
    """The stage's callback secret is not configured or cannot be read: nothing can be signed."""


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"`."""
    return hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(key: bytes, timestamp: int, body: bytes) -> str:
    """The `Taskproc-Signature` value of a delivery of `body` signed at `timestamp` (epoch seconds)."""
    return f"t={timestamp},v1={signature(key, timestamp, body)}"


def verify(key: bytes, header: str, body: bytes, now: float, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether `header` signs `body` with `key`, at a time within `tolerance` seconds of `now`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(key, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


class SigningKeys:
    """The callback key, read from Secrets Manager once per container (or given as a value offline).

    A failed read is not cached: the next delivery tries again, so a secret or a permission that
    appears later is picked up without a restart.
    """

    def __init__(self, secret_id: str | None, value: str | None, client_factory: Callable[[], Any]) -> None:
        self._secret_id = secret_id
        self._value = value
        self._client_factory = client_factory
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        """The signing key.

        Raises:
            CallbackSecretUnavailable: no secret is named or given, or it cannot be read.
        """
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._load()
        return self._key

    def _load(self) -> bytes:
        if self._secret_id is None:
            if self._value is None:
                raise CallbackSecretUnavailable("no CALLBACK_SECRET_ID or CALLBACK_SIGNING_SECRET is set")
            return self._value.encode("utf-8")
        try:
            value = self._client_factory().get_secret_value(SecretId=self._secret_id).get("SecretString") or ""
        except (ClientError, BotoCoreError):
            logger.exception("the callback secret %s could not be read", self._secret_id)
            raise CallbackSecretUnavailable("the callback secret could not be read") from None
        if len(value) < MIN_SECRET_LENGTH:
            raise CallbackSecretUnavailable(f"the callback secret has fewer than {MIN_SECRET_LENGTH} characters")
        return value.encode("utf-8")
