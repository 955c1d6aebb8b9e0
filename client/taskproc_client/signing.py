"""SigV4 signing of requests to a deployed stage, with botocore's own signer.

The operator routes sit behind API Gateway's IAM authorization: a request must be signed for
the service `execute-api` with the caller's AWS credentials (environment, profile, SSO, instance
role: whatever botocore finds). The other routes want at most an API key, so without
credentials they go unsigned. The offline stack (a loopback URL) checks nothing and is never
signed by default. botocore is imported only when a request is signed, so a client that never
signs needs neither it nor credentials.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from taskproc_client.errors import NoCredentials, NoRegion

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

SERVICE = "execute-api"
# https://{api-id}.execute-api.{region}.amazonaws.com[.cn]/{stage}
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# The routes behind IAM authorization on a deployed stage.
_OPERATOR_ROUTES = (
    ("GET", re.compile(r"^/tasks$")),
    ("GET", re.compile(r"^/stats$")),
    ("GET", re.compile(r"^/stuck$")),
    ("POST", re.compile(r"^/tasks/[^/]+/(retry|cancel)$")),
    ("POST", re.compile(r"^/retries$")),
    ("GET", re.compile(r"^/types(/[^/]+)?$")),
    ("POST", re.compile(r"^/types/[^/]+/(pause|resume)$")),
    ("GET", re.compile(r"^/schedules(/[^/]+)?$")),
    ("POST", re.compile(r"^/schedules$")),
    ("PUT", re.compile(r"^/schedules/[^/]+$")),
    ("DELETE", re.compile(r"^/schedules/[^/]+$")),
    ("POST", re.compile(r"^/schedules/[^/]+/(pause|resume|trigger|backfill)$")),
)


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


class Signer:
    """Signs requests for `base_url` with the credentials of `session` (a boto3 or botocore session),
    or of a botocore session made on first use for `profile`."""

    def __init__(self, base_url: str, *, session: Any = None, profile: str | None = None) -> None:
        self.base_url = base_url
        self._session = session
        self._profile = profile

    def _botocore_session(self) -> Any:
        if self._session is None:
            try:
                import botocore.session
            except ImportError as exc:
                raise NoCredentials(
                    "signing needs botocore: pip install 'taskproc-client[signing]' (or boto3)"
                ) from exc
            self._session = botocore.session.Session(profile=self._profile)
        return self._session

    def credentials(self) -> ReadOnlyCredentials | None:
        """The caller's AWS credentials as botocore resolves them, or None when there are none.

        Raises NoCredentials when a named profile is broken or missing (botocore's own message).
        """
        from botocore.exceptions import BotoCoreError

        try:
            found = self._botocore_session().get_credentials()
        except BotoCoreError as exc:
            raise NoCredentials(f"cannot load AWS credentials: {exc}") from exc
        return found.get_frozen_credentials() if found is not None else None

    def region(self) -> str:
        """The region to sign for: the URL's, else the AWS configuration's, else AWS_REGION. Raises NoRegion."""
        session = self._botocore_session()
        configured = session.region_name if hasattr(session, "region_name") else session.get_config_variable("region")
        region = region_of(self.base_url) or configured or os.environ.get("AWS_REGION")
        if not region:
            raise NoRegion(
                f"cannot tell the region of {self.base_url}: set AWS_DEFAULT_REGION (or a profile's region) "
                "to sign requests"
            )
        return str(region)

    def headers(self, method: str, url: str, data: bytes, headers: dict[str, str], *, operator: bool) -> dict[str, str]:
        """`headers` with the SigV4 ones added; unchanged for a non-operator route when there are no credentials.

        Raises NoCredentials for an operator route without credentials, NoRegion.
        """
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
