"""The HTTP client of the taskproc API: JSON in and out, SigV4-signed with the caller's AWS credentials.

On the offline stack (a loopback URL) nothing is signed: Chalice's local server checks no
credentials. Against any other URL every request is signed with botocore's own signer for
the service `execute-api`, from the credentials boto3 finds (environment, profile, SSO,
instance role...), and carries `x-api-key` when one is given.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import requests

if TYPE_CHECKING:  # boto3 and botocore load only when a request is signed: offline commands start faster
    import boto3
    from botocore.credentials import ReadOnlyCredentials

DEFAULT_URL = "http://127.0.0.1:8000"
SERVICE = "execute-api"
DEFAULT_TIMEOUT = 30.0
# https://{api-id}.execute-api.{region}.amazonaws.com[.cn]/{stage}
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# The routes behind IAM authorization on a deployed stage (the others want at most an API key).
_OPERATOR_ROUTES = (
    ("GET", re.compile(r"^/tasks$")),
    ("GET", re.compile(r"^/stats$")),
    ("POST", re.compile(r"^/tasks/[^/]+/(retry|cancel)$")),
    ("POST", re.compile(r"^/retries$")),
    ("GET", re.compile(r"^/types(/[^/]+)?$")),
    ("POST", re.compile(r"^/types/[^/]+/(pause|resume)$")),
)


class ClientError(Exception):
    """Base of the client's own failures (the API's answers, 4xx included, are not errors here)."""


class ApiUnreachable(ClientError):
    """The API could not be reached: refused connection, DNS failure, timeout."""


class NoCredentials(ClientError):
    """A signed route was called against a deployed stage and boto3 found no AWS credentials."""


class NoRegion(ClientError):
    """Requests must be signed but neither the URL nor the AWS configuration names a region."""


@dataclass(frozen=True)
class ApiResponse:
    """One answer of the API: its HTTP status and its JSON body (None when it had none)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_message(self) -> str:
        """The API's error in one line: its message and the fields it names, API Gateway's message, or the body."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if not isinstance(error, dict):
            if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
                return self.body["message"]  # API Gateway's own refusals: {"message": "Forbidden"}
            return str(self.body if self.body is not None else "no body")[:300]
        message = str(error.get("message") or error.get("code") or "error")
        details = error.get("details") or []
        fields = "; ".join(
            f"{d.get('field')}: {d.get('message')}" for d in details if isinstance(d, dict) and d.get("field")
        )
        return f"{message} ({fields})" if fields else message


def is_loopback(url: str) -> bool:
    """True for a URL on this machine (127.0.0.0/8, ::1, localhost): the offline stack."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_operator_route(method: str, path: str) -> bool:
    """True for the routes a deployed stage guards with IAM authorization (SigV4)."""
    route = urlsplit(path).path
    return any(method.upper() == m and pattern.match(route) for m, pattern in _OPERATOR_ROUTES)


def region_of(url: str) -> str | None:
    """The region in an API Gateway URL (`https://abc.execute-api.eu-west-1.amazonaws.com/api`), if any."""
    match = _EXECUTE_API_HOST.match((urlsplit(url).hostname or "").lower())
    return match.group("region") if match else None


def task_path(task_id: str, *rest: str) -> str:
    """`/tasks/{id}[/...]` with the id percent-encoded as one path segment."""
    return "/".join(["/tasks", quote(task_id, safe=""), *rest])


def type_path(type_name: str, *rest: str) -> str:
    """`/types/{type}[/...]` with the name percent-encoded as one path segment."""
    return "/".join(["/types", quote(type_name, safe=""), *rest])


class ApiClient:
    """Calls the API at `base_url`; signs when `sign` says so (None: sign unless the URL is on loopback).

    The AWS session is made lazily, so the offline stack never looks for credentials.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        sign: bool | None = None,
        session: boto3.session.Session | None = None,
        profile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.sign = (not is_loopback(base_url)) if sign is None else sign
        self.timeout = timeout
        self._session = session
        self._profile = profile
        self._local = threading.local()  # one requests.Session per thread: the console serves in threads

    def _http(self) -> requests.Session:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
        return http

    def _aws_session(self) -> boto3.session.Session:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(profile_name=self._profile)
        return self._session

    def credentials(self) -> ReadOnlyCredentials | None:
        """The caller's AWS credentials as boto3 resolves them, or None when there are none.

        Raises NoCredentials when a named profile is broken or missing (boto3's own message).
        """
        from botocore.exceptions import BotoCoreError

        try:
            found = self._aws_session().get_credentials()
        except BotoCoreError as exc:
            raise NoCredentials(f"cannot load AWS credentials: {exc}") from exc
        return found.get_frozen_credentials() if found is not None else None

    def region(self) -> str:
        """The region to sign for: the URL's, else the AWS configuration's, else AWS_REGION. Raises NoRegion."""
        region = region_of(self.base_url) or self._aws_session().region_name or os.environ.get("AWS_REGION")
        if not region:
            raise NoRegion(
                f"cannot tell the region of {self.base_url}: set AWS_DEFAULT_REGION (or a profile's region) "
                "to sign requests"
            )
        return region

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> ApiResponse:
        """Send one request; `body` is sent as JSON when not None. Returns the API's answer, 4xx and 5xx included.

        Raises ApiUnreachable, NoCredentials (a deployed stage's operator route and no credentials), NoRegion.
        """
        url = self.base_url + path + (f"?{urlencode(query, quote_via=quote)}" if query else "")
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self.sign:
            headers = self._signed_headers(method, url, data, headers, operator=is_operator_route(method, path))
        try:
            answer = self._http().request(method, url, data=data or None, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base_url}: {_reason(exc)}") from exc
        try:
            parsed = answer.json() if answer.content else None
        except ValueError:
            parsed = {"error": {"code": "not_json", "message": answer.text[:300] or answer.reason}}
        return ApiResponse(answer.status_code, parsed)

    def _signed_headers(
        self, method: str, url: str, data: bytes, headers: dict[str, str], *, operator: bool
    ) -> dict[str, str]:
        credentials = self.credentials()
        if credentials is None:
            if operator:
                raise NoCredentials(
                    f"no AWS credentials found; {method} {urlsplit(url).path} is an operator route and needs a "
                    "SigV4-signed request (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                )
            return headers  # the API-key routes work unsigned
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method.upper(), url=url, data=data, headers=headers)
        SigV4Auth(credentials, SERVICE, self.region()).add_auth(request)
        return dict(request.headers.items())


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or host not found"
    return type(exc).__name__
