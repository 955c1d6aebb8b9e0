"""Which failures are tried again, how often, and after how long.

A transient failure (no answer, a 5xx, a 429) is tried again after an exponential backoff
with full jitter (a uniform draw between 0 and the exponential step, so that many clients
failing together do not retry together), a bounded number of times. A call that is not
idempotent is tried again only when its request surely did not reach the API: the connection
was never made, or API Gateway throttled it (429) before the function ran.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

# Failures before any byte of the request left: a retry cannot do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` tries of one call; the n-th retry waits uniform(0, min(cap, base * 2**n)) seconds."""

    attempts: int = 4
    base_seconds: float = 0.2
    cap_seconds: float = 3.0

    def delay(self, retry: int) -> float:
        """The pause before retry number `retry` (0 for the first)."""
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**retry))

    @staticmethod
    def transient_status(status: int) -> bool:
        return status == 429 or status >= 500

    @staticmethod
    def retried(*, idempotent: bool, status: int | None = None, exc: Exception | None = None) -> bool:
        """Whether an answer `status`, or a failure `exc`, may be tried again for a call of this kind."""
        if exc is not None:
            return idempotent or isinstance(exc, NOT_SENT)
        assert status is not None
        if status == 429:
            return True
        return idempotent and status >= 500


NO_RETRIES = RetryPolicy(attempts=1)
