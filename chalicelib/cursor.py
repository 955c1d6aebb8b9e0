"""Opaque, tamper-evident list cursors.

A cursor is the last sort key a page served, bound to what was listed (the table,
the status and the filters) and signed with an HMAC. A forged, altered or foreign
cursor (another status's, another stage's) fails the check and is answered 400,
never served as someone else's page. The key is CURSOR_SECRET where a stage sets
one, else one derived from the table's name: that still refuses altered and
foreign cursors, and a stage that wants forgery resistance sets the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from chalicelib.errors import FieldProblem, ValidationFailed

SIGNATURE_BYTES = 16


def cursor_key(secret: str | None, table: str) -> bytes:
    return (secret or f"taskproc-cursor|{table}").encode("utf-8")


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
