"""A task's expiry: `expiresInSeconds` on publish fixes `startBy`, after which a task whose first
attempt has not started is never run; it ends CANCELLED instead.

The moment is absolute and fixed when the task is accepted, because the message may wait (a
delay, a backlog) and may reach a consumer before the task's item does. It lives in three
places: the item's `startBy` (epoch milliseconds, which the acquire's condition compares),
the message attribute `startBy` (so that a consumer storing a task whose publish died after
its send keeps the expiry), and the view's `startBy` (ISO 8601). An attempt that started
before it runs to its end, and so do that task's retries: expiry only keeps work from starting.
"""

from __future__ import annotations

from typing import Any

# The longest expiry the API takes: thirty days.
MAX_EXPIRY_SECONDS = 30 * 86_400
START_BY_ATTRIBUTE = "startBy"
EXPIRED_ERROR = "expired before it started"
EXPIRED_KIND = "expired"


def start_by_ms(now_ms: int, expires_in_seconds: int | None) -> int | None:
    """The moment (epoch ms) a task accepted at `now_ms` must start by, or None for no expiry."""
    return None if expires_in_seconds is None else now_ms + expires_in_seconds * 1000


def message_attributes(start_by: int | None) -> dict[str, str]:
    """The message attributes that carry a task's expiry (none when it has no expiry)."""
    return {} if start_by is None else {START_BY_ATTRIBUTE: str(start_by)}


def expired_entry(at: str) -> dict[str, Any]:
    """The history entry of a task that expired before its first attempt started."""
    return {"kind": EXPIRED_KIND, "at": at}
