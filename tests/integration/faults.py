"""Transient AWS errors injected before the request is sent, so botocore's real retry logic sees them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


@dataclass
class Calls:
    count: int = 0


@contextmanager
def inject_errors(
    client: Any, operation: str, *, status: int, code: str, times: int | None = None, skip: int = 0
) -> Iterator[Calls]:
    """Answer `operation` with an AWS error `times` times (always, if None), after letting
    `skip` requests through, while the block runs."""
    calls = Calls()
    service = client.meta.service_model.endpoint_prefix
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}).encode()

    seen = Calls()

    def fail(request: Any, **_: Any) -> AWSResponse | None:
        seen.count += 1
        if seen.count <= skip or (times is not None and calls.count >= times):
            return None
        calls.count += 1
        return AWSResponse(request.url, status, {"x-amzn-ErrorType": code}, _Body(body))

    event = f"before-send.{service}.{operation}"
    # First in line, ahead of moto's own before-send handler.
    client.meta.events.register_first(event, fail)
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, fail)
