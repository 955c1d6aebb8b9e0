"""Opaque, tamper-evident list cursors.

A cursor is the last sort key a page served, bound to what was listed (the table,
the status and the filters) and signed with an HMAC. A forged, altered or foreign
cursor (another status's, another stage's) fails the check and is answered 400,
never served as someone else's page.

The key is the stage's cursor secret: a random value its CloudFormation stack
generates in Secrets Manager (infra/access.yaml), named by CURSOR_SECRET_ID and
read once per container, on the first listing or health check. A key derived
from the table's name would refuse altered and foreign cursors but not forged
ones (anyone who knows the table's name can sign), so it is used only where no
secret is named and the code does not run on Lambda: the offline stack and the
tests. On Lambda a missing or unreadable secret makes listing and /health answer
503, never a page signed with a guessable key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import FieldProblem, ServiceUnavailable, ValidationFailed

logger = logging.getLogger(__name__)

SIGNATURE_BYTES = 16
# The stack generates 64 characters; anything much shorter is not the stack's secret.
MIN_SECRET_LENGTH = 32


class CursorSecretUnavailable(ServiceUnavailable):
    """The stage's cursor secret is not configured or cannot be read, so no cursor is signed or checked."""

    def __init__(self) -> None:
        # Fixed wording: the AWS error goes to the log, never to a client.
        super().__init__("the cursor secret is not available")


def derived_cursor_key(table: str) -> bytes:
    """The offline and test key: tamper-evident, but anyone who knows the table's name can sign with it."""
    return f"taskproc-cursor|{table}".encode()


class CursorKeys:
    """The key that signs list cursors, read from Secrets Manager once per container.

    A failed read is not cached: the next listing tries again, so a secret that
    appears later (or a permission granted later) is picked up without a restart.
    """

    def __init__(self, secret_id: str | None, table: str, client_factory: Callable[[], Any], on_lambda: bool) -> None:
        self._secret_id = secret_id
        self._table = table
        self._client_factory = client_factory
        self._on_lambda = on_lambda
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        """The signing key.

        Raises:
            CursorSecretUnavailable: on Lambda with no secret named, or the secret cannot be read.
        """
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._load()
        return self._key

    def _load(self) -> bytes:
        if self._secret_id is None:
            if self._on_lambda:
                logger.error("no CURSOR_SECRET_ID is set; a deployed stage must name its cursor secret")
                raise CursorSecretUnavailable()
            return derived_cursor_key(self._table)
        try:
            value = self._client_factory().get_secret_value(SecretId=self._secret_id).get("SecretString") or ""
        except (ClientError, BotoCoreError):
            logger.exception("the cursor secret %s could not be read", self._secret_id)
            raise CursorSecretUnavailable() from None
        if len(value) < MIN_SECRET_LENGTH:
            logger.error("the cursor secret %s has fewer than %d characters", self._secret_id, MIN_SECRET_LENGTH)
            raise CursorSecretUnavailable()
        return value.encode("utf-8")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, scope: str, body: bytes) -> bytes:
    return hmac.new(key, scope.encode("utf-8") + b"\n" + body, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def encode_cursor(key: bytes, scope: str, position: str) -> str:
    """A cursor for the page after `position`, valid only for listings of `scope`."""
    body = json.dumps({"after": position}, separators=(",", ":")).encode("utf-8")
    return f"{_b64(body)}.{_b64(_signature(key, scope, body))}"


def decode_cursor(key: bytes, scope: str, cursor: str) -> str:
    """The position a cursor resumes after.

    Raises:
        ValidationFailed: the cursor is malformed, altered, forged or from another listing.
    """
    invalid = ValidationFailed(
        "the cursor is not valid for this listing",
        [FieldProblem("cursor", "must be a nextCursor this listing returned, unchanged (same status and filters)")],
    )
    try:
        body_part, signature_part = cursor.split(".")
        body, signature = _unb64(body_part), _unb64(signature_part)
    except (ValueError, binascii.Error):
        raise invalid from None
    if not hmac.compare_digest(signature, _signature(key, scope, body)):
        raise invalid
    try:
        position = json.loads(body)["after"]
    except (ValueError, KeyError, TypeError):
        raise invalid from None
    if not isinstance(position, str) or not position:
        raise invalid
    return position
