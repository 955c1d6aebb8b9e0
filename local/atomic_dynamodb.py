"""Make moto's DynamoDB writes atomic, as DynamoDB's are.

DynamoDB evaluates a write's condition and applies the write as one step: two
conditional writes on one item never both succeed against the same old value.
moto 5.2 reads the item, checks the condition and writes in plain Python, so
two threads of its server (or of an in-process mock) can both pass the check:
two operators' concurrent retries of one task would both be accepted and the
task queued twice. No library offers this, so this module wraps moto's item
writes in one lock per process. Reads stay unlocked: DynamoDB's are not ordered
with writes either.

The lock covers the request handler's write methods as well as the backend's:
moto's `DynamoHandler.update_item` (and `put_item`, `delete_item`) copies the
item for `ReturnValues: ALL_OLD` before it calls the backend, so another write
could land in between and the answer would name an item the write never saw. A
chaos run found it: an acquire racing an operator's retry returned the task's
pre-retry attempt count and numbered its attempt 2 instead of 1.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
# The handler's methods read the old item for ReturnValues before they call the backend.
HANDLER_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
_lock = threading.RLock()
_patched = False


def atomically(write: Callable[..., Any]) -> Callable[..., Any]:
    """`write`, run under the one lock of this process's DynamoDB writes (other patches of moto's writes use it too)."""

    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    return locked


def make_writes_atomic() -> None:
    """Patch moto's DynamoDB backend (once per process).

    Raises:
        RuntimeError: moto no longer has a write method this relies on.
    """
    global _patched
    if _patched:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    for owner, methods in ((DynamoDBBackend, WRITES), (DynamoHandler, HANDLER_WRITES)):
        for name in methods:
            if not callable(getattr(owner, name, None)):
                raise RuntimeError(f"moto's {owner.__name__} has no {name}(): local/atomic_dynamodb.py needs updating")
            setattr(owner, name, atomically(getattr(owner, name)))
    _patched = True
