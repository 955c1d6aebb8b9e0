"""The callback receiver of a chaos run: a small HTTP server on loopback, written from docs/workflows.md alone.

It verifies each delivery's `Taskproc-Signature` as the docs say (HMAC-SHA256 of `"<t>.<body>"`,
compared in constant time, `t` within five minutes), deduplicates by `id`, and keeps a record of
every request it answered, so the invariants (tools/chaos/compose_invariants.py) read what it saw
rather than what taskproc counted. To make the callback tasks retry, it refuses the first delivery
of a share of the ids with a 500, and answers the first delivery of a few ids slowly: past the
sender's 10 s, after it has accepted the body, so that the sender sees no answer and sends again
(a lost answer, which the receiver's deduplication absorbs).

Standard library only: `http.server` is enough for a loopback receiver of a few hundred requests,
and using the project's own signing code here would let a bug in it verify itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.processes import LOOPBACK

SIGNATURE_HEADER = "Taskproc-Signature"
TOLERANCE_SECONDS = 300
# The sender gives up after 10 s (docs/workflows.md); a slow answer comes later than that.
SLOW_ANSWER_SECONDS = 11.0
PATH = "/callbacks"


@dataclass(frozen=True)
class Delivery:
    """One request the receiver answered: what it carried and what it was told."""

    id: str | None  # the body's `id`, when the body was JSON with one
    status: str | None  # the body's `status`
    body: bytes
    signed: bool  # the signature verified, within the tolerance
    answered: int  # the status code the receiver answered
    accepted: bool  # answered 2xx to a verified body: the receiver took it
    repeat: bool  # accepted, and its id and finishedAt had been accepted before (deduplicated)
    at: float  # epoch seconds the answer was written


def verified(secret: str, header: str, body: bytes, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance` of this clock (docs/workflows.md)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        stamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given) and abs(time.time() - stamp) <= tolerance


class CallbackReceiver:
    """Receives callbacks on `url`; refuses the first delivery of every `refuse_every`-th id it meets with a
    500, and answers the first delivery of the first `slow` other ids after `slow_seconds`."""

    def __init__(
        self, secret: str, refuse_every: int = 4, slow: int = 1, slow_seconds: float = SLOW_ANSWER_SECONDS
    ) -> None:
        self._secret = secret
        self._refuse_every = refuse_every
        self._slow_left = slow
        self._slow_seconds = slow_seconds
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}  # id -> order of first sight (from 1)
        self._accepted: set[str] = set()
        self._accepted_ends: set[str] = set()  # "<id>\x1f<finishedAt>" of each body taken
        self.deliveries: list[Delivery] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}{PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="chaos-receiver", daemon=True)

    def start(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def _plan(self, delivery_id: str | None) -> tuple[int, float]:
        """The answer to give a verified delivery of `delivery_id` before it is taken: (code, delay)."""
        with self._lock:
            if delivery_id is None:
                return 400, 0.0
            first = delivery_id not in self._seen
            if first:
                self._seen[delivery_id] = len(self._seen) + 1
            if not first or delivery_id in self._accepted:
                return 200, 0.0
            if self._seen[delivery_id] % self._refuse_every == 0:
                return 500, 0.0
            if self._slow_left > 0:
                self._slow_left -= 1
                return 200, self._slow_seconds
            return 200, 0.0

    def _record(self, body: bytes, signed: bool, answered: int, document: dict[str, Any]) -> None:
        delivery_id = document.get("id") if isinstance(document.get("id"), str) else None
        accepted = signed and 200 <= answered < 300 and delivery_id is not None
        # One end of a task is one (id, finishedAt): a task an operator retried ends again, later.
        end = f"{delivery_id}\x1f{document.get('finishedAt')}"
        with self._lock:
            repeat = accepted and end in self._accepted_ends
            if accepted and delivery_id is not None:
                self._accepted.add(delivery_id)
                self._accepted_ends.add(end)
            status = document.get("status")
            self.deliveries.append(
                Delivery(
                    delivery_id,
                    status if isinstance(status, str) else None,
                    body,
                    signed,
                    answered,
                    accepted,
                    repeat,
                    time.time(),
                )
            )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                signed = self.path == PATH and verified(receiver._secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                try:
                    document = json.loads(body)
                except ValueError:
                    document = {}
                document = document if isinstance(document, dict) else {}
                code, delay = receiver._plan(document.get("id")) if signed else (400, 0.0)
                if code == 200 and delay:
                    # Taken at once, answered too late: the sender must send it again.
                    receiver._record(body, signed, code, document)
                    time.sleep(delay)
                    self._answer(code)
                    return
                receiver._record(body, signed, code, document)
                self._answer(code)

            def _answer(self, code: int) -> None:
                with contextlib.suppress(OSError):  # the sender gave up on a slow answer
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
