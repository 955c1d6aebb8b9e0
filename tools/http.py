"""A small JSON-over-HTTP client on the standard library, for the tools."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

TIMEOUT_SECONDS = 30


class HttpError(Exception):
    """A request failed or was answered with an error status."""


def _send(request: urllib.request.Request) -> Any:
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise HttpError(f"{request.get_method()} {request.full_url}: {exc.code} {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise HttpError(f"{request.get_method()} {request.full_url}: {exc}") from exc


def post_json(url: str, body: Any) -> Any:
    data = json.dumps(body).encode()
    return _send(urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"}))


def get_json(url: str) -> Any:
    return _send(urllib.request.Request(url, method="GET"))
