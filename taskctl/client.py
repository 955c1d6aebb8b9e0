"""taskctl's view of the API: the `taskproc_client` package, plus what the console forwards through it.

All HTTP goes through `taskproc_client` (signing, the API key, retries, the error family);
this module only gives the console and the CLI the names they use: `ApiClient` (the client,
with taskctl's defaults and the base URL the console shows) and the errors the console catches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from taskproc_client import Client, NoCredentials, NoRegion, TaskprocError, Unreachable
from taskproc_client.signing import is_loopback, is_operator_route, region_of
from taskproc_client.transport import Response as ApiResponse

DEFAULT_PORT = 8000
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_TIMEOUT = 30.0

# The client's failures that come before any answer of the API, by the names taskctl's callers catch.
ClientError = TaskprocError
ApiUnreachable = Unreachable

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ApiClient",
    "ApiResponse",
    "ApiUnreachable",
    "ClientError",
    "NoCredentials",
    "NoRegion",
    "default_url",
    "is_loopback",
    "is_operator_route",
    "region_of",
]


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """The API taskctl talks to when no `--url` is given: `TASKPROC_URL`, else the offline stack on this
    machine at `PORT` (the variable `make run` reads its port from), else at 8000.

    Raises:
        ValueError: PORT is set to something that is not a port number.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TASKPROC_URL"):
        return environ["TASKPROC_URL"]
    port = environ.get("PORT", "").strip()
    if not port:
        return DEFAULT_URL
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"PORT must be a port number from 1 to 65535, not {port!r}")
    return f"http://127.0.0.1:{int(port)}"


class ApiClient(Client):
    """The client taskctl and its console use: `Client` with taskctl's defaults (the offline stack's URL,
    30 s per request)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        sign: bool | None = None,
        session: object = None,
        profile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, api_key=api_key, sign=sign, timeout=timeout, profile=profile, session=session)

    @property
    def base_url(self) -> str:
        return self.url
