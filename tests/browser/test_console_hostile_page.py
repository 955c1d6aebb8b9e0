"""A hostile web page, open in the operator's Chromium beside the console, tries to drive it.

The page is served from another origin (another loopback port) and knows the console's
URL. It tries what a page can send without reading the console's answers: `fetch` in
`no-cors` mode (a plain body and a body that hides a request of the page's), a CORS
`fetch` with a guessed token, form POSTs into a frame, and an image. The console sees
every attempt; the stub API behind it sees none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskctl.console import TOKEN_HEADER, ConsoleServer
from tests.browser.conftest import Watched, eventually
from tests.cli.fake_api import FakeApi, serving

HOSTILE_SCRIPT = """
const consoleUrl = %(console)s;
const smuggled = "POST /api/tasks/t-1/retry HTTP/1.1\\r\\nHost: %(host)s\\r\\n" +
  "Content-Type: application/json\\r\\nContent-Length: 0\\r\\n\\r\\n";
const attempts = [
  fetch(consoleUrl + "api/tasks/t-1/retry", { method: "POST", mode: "no-cors", body: "{}" }),
  fetch(consoleUrl + "api/retries", {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ status: "FAILED", limit: 1000 }),
  }),
  fetch(consoleUrl + "api/x", { method: "POST", mode: "no-cors", body: smuggled }),
  fetch(consoleUrl + "api/tasks/t-1/cancel", {
    method: "POST", headers: { "%(token_header)s": "guessed", "Content-Type": "application/json" }, body: "{}",
  }),
];
function post(action, enctype, name, value) {
  const form = document.createElement("form");
  Object.assign(form, { method: "POST", action: consoleUrl + action, enctype, target: "sink" });
  const input = document.createElement("input");
  Object.assign(input, { name, value });
  form.append(input);
  document.body.append(form);
  form.submit();
}
post("api/tasks/t-1/retry", "text/plain", '{"a":"', '"}');
setTimeout(() => post("api/retries", "application/x-www-form-urlencoded", "status", "FAILED"), 200);
new Image().src = consoleUrl + "api/stats";
Promise.allSettled(attempts).then((results) => {
  document.title = results.map((r) => r.status).join(",");
});
"""


@dataclass
class Seen:
    """What reached the console's WSGI app, and how it answered."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with serving(FakeApi()) as api:
        api.add("t-1", "FAILED", last_error="boom")
        yield api


def watch(console: ConsoleServer) -> Seen:
    """Record every request the console's app receives, with the status it answered."""
    seen, app = Seen(), console.wsgi.app

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            with seen.lock:
                seen.requests.append((environ["REQUEST_METHOD"], environ.get("RAW_URI", ""), status))
            return start_response(status, headers, exc_info)

        return app(environ, start)

    console.wsgi.app = recording
    return seen


@contextmanager
def hostile_site(console: ConsoleServer) -> Iterator[str]:
    """A page on another loopback port whose script attacks `console`; yields its URL."""
    script = HOSTILE_SCRIPT % {
        "console": json.dumps(console.url),
        "host": f"127.0.0.1:{console.port}",
        "token_header": TOKEN_HEADER,
    }
    page = f'<!doctype html><title>cats</title><iframe name="sink"></iframe><script>{script}</script>'.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_page_of_another_origin_cannot_make_the_console_call_the_api(
    watched: Watched, fake: FakeApi, console: ConsoleServer
) -> None:
    seen = watch(console)
    page = watched.page

    with hostile_site(console) as url:
        page.goto(url)
        # 3 no-cors fetches, the CORS fetch's preflight, 2 forms and the image, all seen by the console.
        eventually(lambda: seen.count() >= 7 or None, "the hostile page's 7 requests to reach the console", 30)
        eventually(lambda: "," in page.title() or None, "the hostile page's fetches to settle", 30)

    methods = sorted(method for method, _, _ in seen.requests)
    assert methods == ["GET", "OPTIONS", "POST", "POST", "POST", "POST", "POST"], seen.requests
    assert all(status.split()[0] in {"400", "403", "404"} for _, _, status in seen.requests), seen.requests
    assert page.title() == "fulfilled,fulfilled,fulfilled,rejected"  # opaque answers; the CORS one is refused
    assert fake.seen == []
    assert fake.tasks["t-1"]["status"] == "FAILED"
