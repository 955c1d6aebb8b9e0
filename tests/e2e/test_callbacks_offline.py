"""Completion callbacks on `make run`'s stack: the consumers sign with the secret the run made (the
banner says where it is), and a receiver on loopback verifies what it gets, as docs/workflows.md says."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def received() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    seen: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((self.headers["Taskproc-Signature"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/done", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_task_published_with_a_callback_is_delivered_signed_with_the_run_s_secret(
    stack: Stack, received: tuple[str, list[tuple[str, bytes]]]
) -> None:
    url, seen = received
    task_id = f"called-back-{uuid.uuid4()}"
    body = {"id": task_id, "payload": {"simulation": {"failureChance": 0}}, "callback": {"url": url}}
    status, answer = stack.api.call("POST", "/publish", body)
    assert status == 201, answer

    wait_until(lambda: seen or None, 60, f"the callback of {task_id}")
    given = stack.env.get("CALLBACK_SIGNING_SECRET")
    if given is None:  # the run made one, and its banner names the file
        (path,) = re.findall(r"made for this run, in (\S+)", stack.process.output())
        given = Path(path).read_text()
    header, delivered = seen[0]
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(given.encode(), parts["t"].encode() + b"." + delivered, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= 300
    assert f'"id":"{task_id}"' in delivered.decode() and '"status":"COMPLETED"' in delivered.decode()
    assert stack.api.wait_terminal(f"{task_id}/callback")["status"] == "COMPLETED"
