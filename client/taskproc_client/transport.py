"""One HTTP layer for the whole client: JSON in and out, signing, the API key, retries.

`request` answers with the API's status and JSON body whatever the status (the operator
console forwards answers as they are); `call` raises the error family for anything but a 2xx.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from taskproc_client.errors import TaskprocError, Unreachable, error_from_answer
from taskproc_client.retries import RetryPolicy
from taskproc_client.signing import Signer, is_operator_route

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Response:
    """One answer of the API: its HTTP status and its JSON body (None when it had none)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> TaskprocError:
        """The answer as an error of the family (for an answer that is not a 2xx)."""
        return error_from_answer(self.status, self.body)

    def error_message(self) -> str:
        """The API's error in one line: its message and the fields it names."""
        return str(self.error())


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host not found"
    return type(exc).__name__


class Transport:
    """Sends requests to `base_url` (no trailing slash); signs when `signer` is given."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        signer: Signer | None,
        timeout: float,
        retries: RetryPolicy,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.signer = signer
        self.timeout = timeout
        self.retries = retries
        # httpx's pool is safe to share between threads (the operator console serves in threads).
        self.http = http or httpx.Client()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        *,
        idempotent: bool | None = None,
        extra_timeout: float = 0.0,
    ) -> Response:
        """Send one call, trying a transient failure again as the policy allows; the last answer is returned.

        `idempotent` defaults to True for GET, PUT and DELETE. `extra_timeout` lengthens the read
        timeout (a long poll). Raises Unreachable when no try got an answer, NoCredentials, NoRegion.
        """
        safe = method.upper() in ("GET", "PUT", "DELETE") if idempotent is None else idempotent
        url = self.base_url + path + (f"?{urlencode(query, quote_via=quote)}" if query else "")
        data = b"" if body is None else json.dumps(body).encode()
        for attempt in range(self.retries.attempts):
            last = attempt == self.retries.attempts - 1
            try:
                answer = self._send(method, url, path, data, body is not None, extra_timeout)
            except httpx.HTTPError as exc:
                if last or not self.retries.retried(idempotent=safe, exc=exc):
                    raise Unreachable(f"cannot reach the API at {self.base_url}: {_reason(exc)}") from exc
                logger.info("%s %s: %s; trying again", method, path, _reason(exc))
            else:
                if last or not (
                    self.retries.transient_status(answer.status)
                    and self.retries.retried(idempotent=safe, status=answer.status)
                ):
                    return answer
                logger.info("%s %s answered %d; trying again", method, path, answer.status)
            time.sleep(self.retries.delay(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None, **kw: Any) -> Any:
        """`request`, then the body of a 2xx answer; any other answer raises its error of the family."""
        answer = self.request(method, path, body, query, **kw)
        if not answer.ok:
            raise answer.error()
        return answer.body

    def _send(self, method: str, url: str, path: str, data: bytes, has_body: bool, extra_timeout: float) -> Response:
        headers = {"Accept": "application/json"}
        if has_body:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self.signer is not None:
            headers = self.signer.headers(method, url, data, headers, operator=is_operator_route(method, path))
        timeout = httpx.Timeout(self.timeout, read=self.timeout + extra_timeout)
        answer = self.http.request(method, url, content=data or None, headers=headers, timeout=timeout)
        try:
            parsed = answer.json() if answer.content else None
        except ValueError:
            parsed = {"error": {"code": "not_json", "message": answer.text[:300] or answer.reason_phrase}}
        return Response(answer.status_code, parsed)

    def close(self) -> None:
        self.http.close()
