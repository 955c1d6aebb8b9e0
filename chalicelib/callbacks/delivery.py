"""One callback request, sent to the address the URL policy checked, within a deadline.

http.client resolves the host itself when it connects, and urllib follows redirects. Either would
undo the check of url.py: the name could resolve to another address by the time of the connect
(DNS rebinding), and a redirect could lead anywhere. So the connection here opens its socket to
the checked address, while the request keeps the URL's host in its `Host` header and, over TLS, in
its SNI and certificate check; a 3xx answer is returned as it is, never followed. A watchdog closes
the socket at the deadline, so a receiver that answers a byte at a time cannot hold an attempt
past it (a socket timeout alone bounds each read, not their sum).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass

from chalicelib.callbacks.url import Target

USER_AGENT = "taskproc-callback/1"


class DeliveryFailed(Exception):
    """No answer came: the connection failed, or the deadline passed first. The message says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None = None  # a redirect's target, reported, never followed


class _PinnedConnection(http.client.HTTPConnection):
    """Plain HTTP (offline only) to a checked address, the URL's host kept in `Host`."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTlsConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is verified for the URL's host, which SNI names."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def post(
    target: Target, body: bytes, headers: dict[str, str], seconds: float, tls: ssl.SSLContext | None = None
) -> Answer:
    """POST `body` to `target` at its first checked address that accepts a connection; over https
    with `tls` (the system's trusted roots, with hostname checks, when None).

    Raises:
        DeliveryFailed: no address accepted, or no answer came within `seconds`.
    """
    failures: list[str] = []
    for address in target.addresses:
        if target.scheme == "https":
            connection: http.client.HTTPConnection = _PinnedTlsConnection(
                target.host, target.port, address, seconds, tls or ssl.create_default_context()
            )
        else:
            connection = _PinnedConnection(target.host, target.port, address, seconds)
        try:
            connection.connect()
        except OSError as exc:
            failures.append(f"{address}: {exc}")
            connection.close()
            continue
        return _exchange(connection, target, body, headers, seconds)
    raise DeliveryFailed(f"no connection to {target.host}: {'; '.join(failures)}")


def _exchange(
    connection: http.client.HTTPConnection, target: Target, body: bytes, headers: dict[str, str], seconds: float
) -> Answer:
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing is blocked on it
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read in the request's thread

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            "POST",
            target.path,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = connection.getresponse()
        answer = Answer(response.status, response.getheader("Location"))
        response.close()
        return answer
    except (OSError, http.client.HTTPException) as exc:
        if timed_out.is_set() or isinstance(exc, TimeoutError):
            raise DeliveryFailed(f"no answer from {target.host} within {seconds:g} s") from None
        raise DeliveryFailed(f"the exchange with {target.host} failed: {exc}") from None
    finally:
        watchdog.cancel()
        connection.close()
