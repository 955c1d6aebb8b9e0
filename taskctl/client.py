"""taskctl's view of the API: the `taskproc_client` package, plus what the console forwards through it.

All HTTP goes through `taskproc_client` (signing, the API key, retries, the error family);
this module only gives the console and the CLI the names they use: `ApiClient` (the client,
with taskctl's defaults and the base URL the console shows) and the errors the console catches.
"""

from __future__ import annotations

from taskproc_client import Client, NoCredentials, NoRegion, TaskprocError, Unreachable
from taskproc_client.signing import is_loopback, is_operator_route, region_of
from taskproc_client.transport import Response as ApiResponse

DEFAULT_URL = "http://127.0.0.1:8000"
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
    "is_loopback",
    "is_operator_route",
    "region_of",
]


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
