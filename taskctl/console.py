"""The operator console: a page served on 127.0.0.1 whose API calls are forwarded, signed, to the stage.

The browser never holds AWS credentials and the operator routes are never opened to it:
the page calls `/api/<route>` here, and this server calls the stage with the operator's
own credentials through `ApiClient` (SigV4 on a deployed stage, nothing offline).

Only the page's own routes are forwarded, and only when the request carries the page's
`X-Taskctl-Console` header and names this server as its Host: another site open in the
same browser can neither send that header without a CORS preflight (which is never
granted) nor reach us under another name (DNS rebinding), so it cannot act with the
operator's credentials.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from taskctl.client import ApiClient, ApiUnreachable, ClientError, NoCredentials

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/console.css": "console.css",
    "/console.js": "console.js",
    "/favicon.svg": "favicon.svg",
    "/favicon.ico": "favicon.svg",
}
CONSOLE_HEADER = "X-Taskctl-Console"
MAX_BODY = 64 * 1024
# What the page may ask of the API, and nothing else.
FORWARDED = (
    ("GET", re.compile(r"^/stats$")),
    ("GET", re.compile(r"^/tasks$")),
    ("GET", re.compile(r"^/tasks/(?!\.\.?(?:/|$))[^/]+$")),
    ("POST", re.compile(r"^/tasks/(?!\.\.?/)[^/]+/(retry|cancel)$")),
    ("POST", re.compile(r"^/retries$")),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": []}}


class ConsoleServer(ThreadingHTTPServer):
    """Serves the page and forwards its API calls through one `ApiClient`."""

    daemon_threads = True

    def __init__(self, client: ApiClient, port: int) -> None:
        self.client = client
        super().__init__(("127.0.0.1", port), ConsoleHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def info(self) -> dict[str, Any]:
        """What the page shows in its header: where its calls go and whether they are signed."""
        return {"apiUrl": self.client.base_url, "signed": self.client.sign}


class ConsoleHandler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "taskctl-console"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        if not self._host_is_ours():
            self._json(HTTPStatus.MISDIRECTED_REQUEST, _error("wrong_host", "this console answers on 127.0.0.1 only"))
        elif path.startswith("/api/"):
            self._forward(method, path[len("/api") :], urlsplit(self.path).query)
        elif method == "GET" and path == "/console-info":
            self._json(HTTPStatus.OK, self.server.info())
        elif method == "GET" and path in PAGES:
            self._static(PAGES[path])
        else:
            self._json(HTTPStatus.NOT_FOUND, _error("not_found", f"no such page: {path}"))

    def _host_is_ours(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in {f"127.0.0.1:{port}", f"localhost:{port}"}

    def _static(self, name: str) -> None:
        data = (STATIC / name).read_bytes()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, data, f"{kind}; charset=utf-8")

    def _forward(self, method: str, route: str, query: str) -> None:
        if self.headers.get(CONSOLE_HEADER) != "1":
            self._json(HTTPStatus.FORBIDDEN, _error("not_the_console", f"API calls need the {CONSOLE_HEADER} header"))
            return
        if not any(method == m and pattern.match(route) for m, pattern in FORWARDED):
            self._json(HTTPStatus.NOT_FOUND, _error("not_forwarded", f"the console does not forward {method} {route}"))
            return
        body = self._body()
        if body is _INVALID:
            self._json(HTTPStatus.BAD_REQUEST, _error("bad_body", "the request body must be JSON of at most 64 KiB"))
            return
        try:
            answer = self.server.client.request(method, route, body, dict(parse_qsl(query)) or None)
        except ApiUnreachable as exc:
            self._json(HTTPStatus.BAD_GATEWAY, _error("api_unreachable", str(exc)))
        except NoCredentials as exc:
            self._json(HTTPStatus.UNAUTHORIZED, _error("no_credentials", str(exc)))
        except ClientError as exc:
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, _error("console_error", str(exc)))
        else:
            self._json(answer.status, answer.body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return _INVALID
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return _INVALID

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode() if body is not None else b"", "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


_INVALID = object()


def make_server(client: ApiClient, port: int = 0) -> ConsoleServer:
    """A console server bound to 127.0.0.1:port (0: any free port), not yet serving. Raises OSError."""
    return ConsoleServer(client, port)


@contextmanager
def running(client: ApiClient, port: int = 0) -> Iterator[ConsoleServer]:
    """A console server serving from a thread of this process until the block ends. Raises OSError."""
    server = make_server(client, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def serve(client: ApiClient, port: int) -> None:
    """Serve until interrupted, after printing the page's URL. Raises OSError when the port is taken."""
    server = make_server(client, port)
    signing = "requests signed with your AWS credentials" if client.sign else "requests unsigned: a local API"
    print(f"taskproc console on {server.url} -> {client.base_url} ({signing}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
