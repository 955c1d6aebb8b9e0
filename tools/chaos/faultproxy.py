"""A fault-injecting HTTP proxy in front of the embedded AWS endpoint, on the loopback address.

The workers use it as their AWS_ENDPOINT_URL. A set share of requests is
answered, before it is forwarded, with a transient error that botocore's
standard retry mode retries: 500, 503, or a 400 whose JSON body names
ThrottlingException. Nothing reached the endpoint, so the retry is the first
real attempt. Optionally a share of those faults loses the answer instead:
the request is forwarded and applied, and the client still gets a 500, so its
retry meets its own write (a conditional write then finds its condition false).
The rest is forwarded unchanged.

A `tripwire` sees every request before the proxy decides anything; when it answers
True the request is neither forwarded nor answered and its connection is dropped.
The chaos stack uses it to SIGKILL the API at an exact point of a request, such as
the PutItem that follows a publish's send: whatever the process had done stands, and
nothing after it happens.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tools.processes import LOOPBACK

# A long poll waits up to 20 s at the endpoint; the forward must outwait it.
UPSTREAM_TIMEOUT_SECONDS = 60
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
KINDS = ("throttle", "500", "503")
LOST = "lost"
# The workers long-poll ReceiveMessage all the time, mostly answered empty: faulting
# those at the full rate would spend the faults where they test nothing and slow the
# whole flow, so they get a quarter of it.
RECEIVE_SHARE = 0.25
RECEIVE_TARGET = "AmazonSQS.ReceiveMessage"
# How the proxy knows a consumer has just taken a task's lease (and now runs an attempt):
# the store's acquire is the one UpdateItem that adds to the attempt count.
ACQUIRE_TARGET = "DynamoDB_20120810.UpdateItem"
ACQUIRE_MARK = b"ADD #attempts"


def fault_response(kind: str, target: str) -> tuple[int, bytes]:
    """The status and JSON body of one injected fault, in the error format of the target's service."""
    namespace = "com.amazonaws.dynamodb.v20120810" if target.startswith("DynamoDB_") else "com.amazonaws.sqs"
    if kind == "throttle":
        code, status = "ThrottlingException", 400
    elif kind == "500":
        code, status = "InternalFailure", 500
    else:
        code, status = "ServiceUnavailable", 503
    body = {"__type": f"{namespace}#{code}", "message": "injected by the chaos proxy"}
    return status, json.dumps(body).encode()


class FaultProxy:
    """Forwards to `upstream`, answering about `rate` of the requests with a transient fault."""

    def __init__(
        self,
        upstream: str,
        rate: float,
        seed: int = 0,
        lost_share: float = 0.0,
        tripwire: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self._tripwire = tripwire
        self._upstream = (parts.hostname or LOOPBACK, parts.port or 80)
        self.rate = rate
        self.lost_share = lost_share
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        # (service operation, kind) -> count, e.g. ("DynamoDB_20120810.UpdateItem", "throttle").
        self.faults: Counter[tuple[str, str]] = Counter()
        self.forwarded = 0
        # Leases this proxy's client took: a kill right after one lands mid-attempt.
        self.acquires = 0
        self._server = _QuietServer((LOOPBACK, 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def snapshot(self) -> Counter[tuple[str, str]]:
        """The faults injected so far, by (operation, kind)."""
        with self._lock:
            return Counter(self.faults)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():  # never started: shutdown() would wait for it forever
            self._server.server_close()
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def choose_fault(self, target: str) -> str | None:
        """The kind of fault to answer a request for `target` with, or None to forward it."""
        if not target:
            return None  # not an AWS JSON-protocol call (e.g. a health probe): never faulted
        rate = self.rate * (RECEIVE_SHARE if target == RECEIVE_TARGET else 1.0)
        with self._lock:
            if self._rng.random() >= rate:
                self.forwarded += 1
                return None
            kind = LOST if self._rng.random() < self.lost_share else self._rng.choice(KINDS)
            self.faults[(target, kind)] += 1
            return kind

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request to the endpoint; its status, headers and whole body."""
        connection = http.client.HTTPConnection(*self._upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects of an endpoint

            def _proxy(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                if proxy._tripwire is not None and proxy._tripwire(target, body):
                    self.close_connection = True  # its client is dead: no answer, no forward
                    return
                kind = proxy.choose_fault(target)
                if kind == LOST:
                    with contextlib.suppress(OSError):  # applied or not, the answer is lost either way
                        proxy.forward(self.command, self.path, list(self.headers.items()), body)
                    status, payload = fault_response("500", target)
                    self._answer(status, [("Content-Type", "application/x-amz-json-1.0")], payload)
                    return
                if kind is not None:
                    status, payload = fault_response(kind, target)
                    self._answer(status, [("Content-Type", "application/x-amz-json-1.0")], payload)
                    return
                try:
                    status, headers, payload = proxy.forward(self.command, self.path, list(self.headers.items()), body)
                except OSError as exc:
                    self._answer(502, [("Content-Type", "text/plain")], f"upstream failed: {exc}".encode())
                    return
                if status == 200 and target == ACQUIRE_TARGET and ACQUIRE_MARK in body:
                    with proxy._lock:
                        proxy.acquires += 1
                self._answer(status, headers, payload)

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP and name.lower() not in {"content-length", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _proxy

            def log_message(self, format: str, *args: object) -> None:
                pass  # thousands of requests a minute; the counters say what matters

        return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A killed worker drops its connections mid-answer: that is the point, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]
