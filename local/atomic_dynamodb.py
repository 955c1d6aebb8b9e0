"""Make moto's DynamoDB writes atomic, and isolated from reads, as DynamoDB's are.

DynamoDB evaluates a write's condition and applies the write as one step: two
conditional writes on one item never both succeed against the same old value,
and no read sees a write half applied. moto 5.2 reads the item, checks the
condition and writes in plain Python, so two threads of its server (or of an
in-process mock) can both pass the check: two operators' concurrent retries of
one task would both be accepted and the task queued twice. No library offers
this, so this module runs moto's item writes and reads under one lock per process.

The lock covers the request handler's methods as well as the backend's: moto's
`DynamoHandler.update_item` (and `put_item`, `delete_item`) copies the item for
`ReturnValues: ALL_OLD` before it calls the backend, so another write could land
in between and the answer would name an item the write never saw. A chaos run
found it: an acquire racing an operator's retry returned the task's pre-retry
attempt count and numbered its attempt 2 instead of 1.

Reads take the lock too: an UpdateItem that creates its item stores the key alone
and then applies its SETs to the stored item one by one, and a read in between got
an item with no `status` (a workflow's cancels, racing each other to publish its
callback, read the callback task half made). The handler's reads serialize the
item after the backend returns it, so they are locked there.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
# The handler's methods read the old item for ReturnValues before they call the backend, and its
# reads turn the backend's items into JSON after it returns them.
HANDLER_WRITES = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
HANDLER_READS = ("get_item", "batch_get_item", "query", "scan", "transact_get_items")
_lock = threading.RLock()
_patched = False


def atomically(write: Callable[..., Any]) -> Callable[..., Any]:
    """`write` (or a read), run under the one lock of this process's DynamoDB calls (other patches of moto's writes
    use it too)."""

    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    return locked


def make_writes_atomic() -> None:
    """Patch moto's DynamoDB backend and request handler (once per process).

    Raises:
        RuntimeError: moto no longer has a write method this relies on.
    """
    global _patched
    if _patched:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    for owner, methods in ((DynamoDBBackend, WRITES), (DynamoHandler, HANDLER_WRITES + HANDLER_READS)):
        for name in methods:
            if not callable(getattr(owner, name, None)):
                raise RuntimeError(f"moto's {owner.__name__} has no {name}(): local/atomic_dynamodb.py needs updating")
            setattr(owner, name, atomically(getattr(owner, name)))
    _patched = True
