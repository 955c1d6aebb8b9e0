"""The operator console: a page served on 127.0.0.1 whose API calls are forwarded, signed, to the stage.

The browser never holds AWS credentials and the operator routes are never opened to it:
the page calls `/api/<route>` here, and this server calls the stage with the operator's
own credentials through `ApiClient` (SigV4 on a deployed stage, nothing offline). Any web
page open in the same browser can send requests here too, so the server answers only its
own page, and decides so before it forwards anything:

- framing first: `Transfer-Encoding` is refused; a POST needs a `Content-Length` of digits
  and at most 64 KiB, a GET none but 0; the body is read in full before any other check;
- `Host` is `127.0.0.1:<port>` or `localhost:<port>` (a rebound DNS name is not us);
- `Origin`, when sent, is exactly this console's own origin;
- the path is percent-decoded once; encoded slashes or backslashes and `.`/`..` segments are
  refused, and only the page's routes (`FORWARDED`) are forwarded, each segment re-encoded;
- every `/api/` call carries `X-Taskctl-Token`, a random token made at launch and served
  only inside the page (a `<meta>` tag its script reads); other sites cannot read the page,
  so they cannot know it. It is compared in constant time;
- a POST body is `application/json`, and JSON.

Every connection serves one request and is then closed, so a body left unread (or a
second request pipelined behind the first) is never parsed as a request of its own.

The HTTP server is Werkzeug's (`werkzeug.serving`, threaded, around a small WSGI app):
it is installed with the offline stack already (moto's server runs on it), it parses
the request target and headers into a WSGI environ, bounds the body it hands over to
`Content-Length`, closes every connection after one answer and drains what the client
sent before closing. A framework (Flask, Starlette) would add routing this module does not
need; the refusals above are the console's own rules, so they are written here.
"""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
import re
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from taskctl.client import ApiClient, ApiUnreachable, ClientError, NoCredentials

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"
PAGES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/console.css": "console.css",
    "/console.js": "console.js",
    "/favicon.svg": "favicon.svg",
    "/favicon.ico": "favicon.svg",
}
TOKEN_HEADER = "X-Taskctl-Token"
# The page's placeholder for the token; the served page carries the real one.
TOKEN_META = '<meta name="taskctl-token" content="">'
MAX_BODY = 64 * 1024
# A client that stops sending mid-request frees its thread after this long.
READ_TIMEOUT_SECONDS = 10
ANY = None  # a segment that is a task id, a type's name or a schedule's id
# What the page may ask of the API, as decoded path segments after /api, and nothing else.
FORWARDED: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    ("GET", ("stats",)),
    ("GET", ("stuck",)),
    ("GET", ("tasks",)),
    ("GET", ("tasks", ANY)),
    ("POST", ("tasks", ANY, "retry")),
    ("POST", ("tasks", ANY, "cancel")),
    ("POST", ("retries",)),
    ("GET", ("types",)),
    ("POST", ("types", ANY, "pause")),
    ("POST", ("types", ANY, "resume")),
    # The schedules page reads and acts; creating, changing, deleting and backfilling stay with taskctl.
    ("GET", ("schedules",)),
    ("GET", ("schedules", ANY)),
    ("POST", ("schedules", ANY, "pause")),
    ("POST", ("schedules", ANY, "resume")),
    ("POST", ("schedules", ANY, "trigger")),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DIGITS = re.compile(r"[0-9]{1,7}")
# Bytes a browser always sends percent-encoded: anything else in a request target is not a page's.
_TARGET = re.compile(r"/[\x21-\x7e]*")
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)


class Refused(Exception):
    """A request the console does not answer with the API: its status, code, what is wrong, the field and its rule."""

    def __init__(
        self, status: HTTPStatus, code: str, message: str, field: str | None = None, rule: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.rule = status, code, message, field, rule

    def body(self) -> dict[str, Any]:
        details = [{"field": self.field, "message": self.rule or self.message}] if self.field else []
        return _error(self.code, self.message, details)


def _error(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


@dataclass(frozen=True)
class Call:
    """A request of the page's, checked: what to forward to the API."""

    method: str
    route: str
    query: dict[str, str]
    body: Any


class ConsoleApp:
    """The WSGI application: the page, its info, and its API calls forwarded through one `ApiClient`."""

    def __init__(self, client: ApiClient, port: int, token: str) -> None:
        self.client = client
        self.port = port
        self.token = token
        self.hosts = {f"{HOST}:{port}", f"localhost:{port}"}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.answer(request)
        except Refused as refusal:
            logger.debug("refused %s %s: %s", request.method, environ.get("RAW_URI"), refusal.message)
            response = _json(refusal.status, refusal.body())
        return response(environ, start_response)

    def info(self) -> dict[str, Any]:
        """What the page shows in its header: where its calls go and whether they are signed."""
        return {"apiUrl": self.client.base_url, "signed": self.client.sign}

    def answer(self, request: Request) -> Response:
        """The answer to one request. Raises Refused for anything that is not the page's own."""
        body = _read_body(request)
        host = request.headers.get("Host", "")
        if host not in self.hosts:
            raise Refused(
                HTTPStatus.MISDIRECTED_REQUEST,
                "wrong_host",
                "this request names another host",
                "Host",
                f"must be {HOST}:{self.port} or localhost:{self.port}",
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "foreign_origin",
                "only the console's own page may call it",
                "Origin",
                f"must be http://{host} when sent",
            )
        target = str(request.environ.get("RAW_URI", ""))
        segments = _segments(target)
        if segments[:1] == ["api"]:
            query = target.partition("?")[2]
            return self._forward(self._call(request, segments[1:], query, body))
        if body:
            raise Refused(
                HTTPStatus.BAD_REQUEST, "unexpected_body", "only API calls carry a body", "Content-Length", "must be 0"
            )
        path = "/" + "/".join(segments)
        if request.method == "GET" and path == "/console-info":
            return _json(HTTPStatus.OK, self.info())
        if request.method == "GET" and path in PAGES:
            return self._static(PAGES[path])
        raise Refused(HTTPStatus.NOT_FOUND, "not_found", f"no such page: {request.method} {path}")

    def _call(self, request: Request, segments: list[str], query: str, body: bytes) -> Call:
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.token.encode()):
            raise Refused(
                HTTPStatus.FORBIDDEN,
                "not_the_console",
                "only the console's own page may call the API",
                TOKEN_HEADER,
                "must be the token served in the page",
            )
        if not any(
            request.method == method
            and len(segments) == len(pattern)
            and all(want is ANY or want == got for want, got in zip(pattern, segments, strict=True))
            for method, pattern in FORWARDED
        ):
            route = "/" + "/".join(segments)
            raise Refused(
                HTTPStatus.NOT_FOUND, "not_forwarded", f"the console does not forward {request.method} {route}"
            )
        if request.method == "POST" and request.mimetype != "application/json":
            raise Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "API calls send JSON",
                "Content-Type",
                "must be application/json",
            )
        try:
            document = json.loads(body) if body else None
        except ValueError as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, "bad_body", "the body is not JSON", "body", "must be JSON") from exc
        route = "/" + "/".join(quote(segment, safe="") for segment in segments)
        return Call(request.method, route, dict(parse_qsl(query)), document)

    def _forward(self, call: Call) -> Response:
        try:
            answer = self.client.request(call.method, call.route, call.body, call.query or None)
        except ApiUnreachable as exc:
            return _json(HTTPStatus.BAD_GATEWAY, _error("api_unreachable", str(exc)))
        except NoCredentials as exc:
            return _json(HTTPStatus.UNAUTHORIZED, _error("no_credentials", str(exc)))
        except ClientError as exc:
            return _json(HTTPStatus.INTERNAL_SERVER_ERROR, _error("console_error", str(exc)))
        return _json(answer.status, answer.body)

    def _static(self, name: str) -> Response:
        data = (STATIC / name).read_bytes()
        if name == "index.html":
            data = data.replace(TOKEN_META.encode(), TOKEN_META.replace('""', f'"{self.token}"').encode())
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(data, HTTPStatus.OK, SECURITY_HEADERS, content_type=f"{kind}; charset=utf-8")


def _read_body(request: Request) -> bytes:
    """The whole body, read before any answer. Raises Refused for framing this console does not accept."""
    if "Transfer-Encoding" in request.headers:
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "transfer_encoding_refused",
            "Transfer-Encoding is refused",
            "Transfer-Encoding",
            "must be absent: send a Content-Length",
        )
    declared = request.environ.get("CONTENT_LENGTH")
    if declared is None or declared == "":
        if request.method == "POST":
            raise Refused(
                HTTPStatus.LENGTH_REQUIRED,
                "length_required",
                "a POST needs a Content-Length",
                "Content-Length",
                "required",
            )
        return b""
    if not _DIGITS.fullmatch(declared):
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "bad_content_length",
            "Content-Length is not a number",
            "Content-Length",
            "must be digits",
        )
    length = int(declared)
    if length > MAX_BODY:
        raise Refused(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "body_too_large",
            "the body is too large",
            "Content-Length",
            f"at most {MAX_BODY}",
        )
    if length and request.method != "POST":
        raise Refused(
            HTTPStatus.BAD_REQUEST, "unexpected_body", "only a POST carries a body", "Content-Length", "must be 0"
        )
    body = request.environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise Refused(
            HTTPStatus.BAD_REQUEST, "short_body", "the body ended early", "Content-Length", "must be the body's length"
        )
    return bytes(body)


def _segments(target: str) -> list[str]:
    """The request path's segments, percent-decoded exactly once. Raises Refused for paths that are not plain."""
    if not _TARGET.fullmatch(target):
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "bad_path",
            "the request target is not a plain path",
            "path",
            "must be an absolute path of printable ASCII",
        )
    path = target.partition("?")[0]
    if _ENCODED_SEPARATOR.search(path) or "\\" in path:
        raise Refused(
            HTTPStatus.BAD_REQUEST,
            "bad_path",
            "the path holds an encoded slash or a backslash (a task or schedule whose id has one is shown by taskctl)",
            "path",
            "no %2F, %5C or \\",
        )
    try:
        segments = [unquote(segment, errors="strict") for segment in path[1:].split("/")]
    except UnicodeDecodeError as exc:
        raise Refused(
            HTTPStatus.BAD_REQUEST, "bad_path", "the path is not UTF-8", "path", "must be percent-encoded UTF-8"
        ) from exc
    if any(segment in (".", "..") for segment in segments):
        raise Refused(HTTPStatus.BAD_REQUEST, "bad_path", "the path holds a dot segment", "path", "no . or .. segments")
    return segments if segments != [""] else []


def _json(status: int, body: Any) -> Response:
    data = json.dumps(body).encode() if body is not None else b""
    return Response(data, status, SECURITY_HEADERS, content_type="application/json")


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler, serving one request per connection and logging to this module's logger."""

    timeout = READ_TIMEOUT_SECONDS

    def version_string(self) -> str:
        return "taskctl-console"

    def handle(self) -> None:
        # One request per connection: whatever was sent after it is never parsed as a request.
        with suppress(ConnectionError, TimeoutError):
            self.handle_one_request()

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("%s %s " + message, type, self.address_string(), *args)


class ConsoleServer:
    """The console on 127.0.0.1:port, not yet serving; `token` is the one its page carries."""

    def __init__(self, client: ApiClient, port: int = 0) -> None:
        self.token = secrets.token_urlsafe(32)
        # Bound here, so a taken port is an OSError (Werkzeug's own bind exits the process).
        listener = socket.create_server((HOST, port))
        try:
            self.port = int(listener.getsockname()[1])
            self.app = ConsoleApp(client, self.port, self.token)
            self.wsgi: BaseWSGIServer = make_server(
                HOST, self.port, self.app, threaded=True, request_handler=_Handler, fd=listener.fileno()
            )
        finally:
            listener.close()  # Werkzeug serves on its own duplicate of the socket

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.wsgi.serve_forever(poll_interval=poll_interval)

    def shutdown(self) -> None:
        self.wsgi.shutdown()

    def close(self) -> None:
        self.wsgi.server_close()


@contextmanager
def running(client: ApiClient, port: int = 0) -> Iterator[ConsoleServer]:
    """A console server serving from a thread of this process until the block ends. Raises OSError."""
    server = ConsoleServer(client, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.close()
        thread.join(10)


def serve(client: ApiClient, port: int) -> None:
    """Serve until interrupted, after printing the page's URL. Raises OSError when the port is taken."""
    server = ConsoleServer(client, port)
    signing = "requests signed with your AWS credentials" if client.sign else "requests unsigned: a local API"
    print(f"taskproc console on {server.url} -> {client.base_url} ({signing}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
