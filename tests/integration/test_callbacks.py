"""Completion callbacks over moto and a real receiver on 127.0.0.1.

The receiver checks each delivery's signature the way docs/workflows.md tells a receiver to, with
hmac and hashlib alone (nothing of chalicelib.callbacks), and records what it accepted. The hook
runs on every path that makes a task terminal, and again when a delivery finds one terminal; a
kill between the terminal write and the callback's publish delays the callback, never loses it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.errors import StoreError
from chalicelib.models import Status
from chalicelib.tasks.record import iso_from_ms
from chalicelib.tick import ticker
from tests.conftest import FakeClock
from tests.integration.faults import inject_errors
from tests.integration.harness import FAILS, SUCCEEDS, Harness, fail_until_last
from tests.integration.lambda_sqs import Delivery, lambda_records
from tests.integration.test_never_stranded import ProcessKilled

JSON = {"Content-Type": "application/json"}
SECRET = "callback-secret-for-tests-0123456789abcdef"
DOOMED = {"simulation": {"failureChance": 1, "permanentFailure": True}}


def verified(secret: str, header: str, body: bytes, now: float) -> bool:
    """A receiver's check, as docs/workflows.md gives it: HMAC-SHA256 of "<t>.<body>", t within 5 minutes."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(now - int(parts["t"])) <= 300


@dataclass
class Receiver:
    """An HTTP server answering each request with the next scripted answer (200 once the script ends)."""

    script: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def answer(self) -> Any:
        return self.script.pop(0) if self.script else 200

    def accepted(self) -> list[dict[str, Any]]:
        return [request for request in self.requests if request["verified"] and request["answered"] == 200]


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"CALLBACK_SIGNING_SECRET": SECRET})


def _serve(receiver: Receiver) -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = receiver.answer()
            record = {
                "path": self.path,
                "host": self.headers["Host"],
                "body": body,
                "document": json.loads(body),
                "verified": verified(SECRET, self.headers["Taskproc-Signature"], body, time.time()),
                "answered": answer if isinstance(answer, int) else str(answer),
            }
            receiver.requests.append(record)
            if answer == "hang":
                receiver.release.wait(10)
                return
            self.send_response(answer if isinstance(answer, int) else 302)
            if isinstance(answer, str) and answer.startswith("http"):
                self.send_header("Location", answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/taskproc"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield from (receiver for _ in _serve(receiver))


@pytest.fixture
def h(client: Client, runtime: Any, clock: FakeClock) -> Harness:
    return Harness(client, runtime, clock)


def post(h: Harness, path: str, body: Any) -> Any:
    return h.client.http.post(path, body=json.dumps(body), headers=JSON)


def publish(h: Harness, task_id: str, url: str, payload: dict[str, Any] = SUCCEEDS, **extra: Any) -> None:
    response = post(h, "/publish", {"id": task_id, "payload": payload, "callback": {"url": url}, **extra})
    assert response.status_code == 201, response.body


def view(h: Harness, task_id: str) -> dict[str, Any]:
    response = h.client.http.get(f"/tasks/{task_id.replace('/', '%2F')}")
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def callback_task(h: Harness, task_id: str) -> dict[str, Any] | None:
    record = h.rt.store.get(f"{task_id}/callback")
    return None if record is None else view(h, record.id)


def drain(h: Harness, rounds: int = 6) -> None:
    """Deliver until the task queue has nothing visible left (each round one batch)."""
    for _ in range(rounds):
        if not h.deliver().records:
            return


def test_a_completed_task_calls_back_once_with_a_signature_the_receiver_verifies(
    h: Harness, receiver: Receiver
) -> None:
    publish(h, "done", receiver.url)
    assert view(h, "done")["callbackTask"] == "done/callback"
    drain(h)
    (request,) = receiver.requests
    assert request["verified"], request
    assert request["path"] == "/hooks/taskproc" and request["host"].startswith("127.0.0.1:")
    task = view(h, "done")
    assert request["document"] == {
        "id": "done",
        "status": "COMPLETED",
        "result": task["result"],
        "lastError": None,
        "finishedAt": task["finishedAt"],
    }
    delivered = view(h, "done/callback")
    assert delivered["type"] == "callback" and delivered["status"] == "COMPLETED" and delivered["attempts"] == 1
    assert delivered["result"] == {"status": 200}
    assert task["callback"] == {"url": receiver.url}


def test_the_receiver_s_check_refuses_another_key_another_body_and_an_old_timestamp(
    h: Harness, receiver: Receiver
) -> None:
    publish(h, "checked", receiver.url)
    drain(h)
    (request,) = receiver.requests
    body, now = request["body"], int(time.time())

    def header(key: bytes, t: int, signed: bytes) -> str:
        return f"t={t},v1={hmac.new(key, f'{t}.'.encode() + signed, hashlib.sha256).hexdigest()}"

    assert verified(SECRET, header(SECRET.encode(), now, body), body, now)
    assert not verified(SECRET, header(b"another key of forty characters.........", now, body), body, now)
    assert not verified(SECRET, header(SECRET.encode(), now, body + b" "), body, now)
    assert not verified(SECRET, header(SECRET.encode(), now - 301, body), body, now)


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [(DOOMED, "FAILED", "permanent"), (FAILS, "FAILED", None)],
    ids=["permanent-failure", "last-attempt-failed"],
)
def test_a_failed_task_calls_back_with_its_last_error(
    h: Harness, receiver: Receiver, payload: dict[str, Any], status: str, error: str | None
) -> None:
    publish(h, "broken", receiver.url, payload)
    if payload is FAILS:
        fail_until_last(h, "broken")
    drain(h)
    (request,) = receiver.accepted()
    task = view(h, "broken")
    assert task["status"] == status and request["document"]["status"] == status
    assert request["document"]["lastError"] == task["lastError"] and task["lastError"]
    assert request["document"]["result"] is None


def test_an_operator_s_cancel_calls_back_cancelled(h: Harness, receiver: Receiver) -> None:
    publish(h, "unwanted", receiver.url)
    assert post(h, "/tasks/unwanted/cancel", {}).status_code == 200
    assert callback_task(h, "unwanted") is not None  # published by the cancel itself
    drain(h)  # the task's own message is dropped; the callback is delivered
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "CANCELLED" and request["document"]["id"] == "unwanted"


def test_an_operator_s_cancel_whose_publish_dies_is_called_back_when_the_task_s_message_arrives(
    h: Harness, receiver: Receiver
) -> None:
    publish(h, "cut-off", receiver.url)
    with inject_errors(h.sqs, "SendMessage", status=500, code="InternalError"):
        assert post(h, "/tasks/cut-off/cancel", {}).status_code == 200
    assert view(h, "cut-off")["status"] == "CANCELLED" and callback_task(h, "cut-off") is None
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "CANCELLED"


def test_a_task_cancelled_before_its_run_at_whose_callback_publish_died_is_called_back_by_its_timer(
    h: Harness, receiver: Receiver, clock: FakeClock
) -> None:
    three_days = 3 * 86_400
    run_at = iso_from_ms(int((clock.now + three_days) * 1000))
    publish(h, "called-off-early", receiver.url, runAt=run_at)
    with inject_errors(h.sqs, "SendMessage", status=500, code="InternalError"):
        assert post(h, "/tasks/called-off-early/cancel", {}).status_code == 200
    assert callback_task(h, "called-off-early") is None  # no message of the task is on its way
    clock.advance(three_days)

    counts = ticker.tick(h.rt, jobs=[])

    assert counts["timersSkipped"] == 1 and callback_task(h, "called-off-early") is not None
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "CANCELLED" and request["document"]["id"] == "called-off-early"


def test_an_expired_task_calls_back_cancelled_with_the_expiry_as_its_error(
    h: Harness, receiver: Receiver, clock: FakeClock
) -> None:
    publish(h, "late", receiver.url, expiresInSeconds=1)
    clock.advance(2)
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "CANCELLED"
    assert request["document"]["lastError"] == "expired before it started"


def test_a_cancel_requested_while_it_ran_ends_it_cancelled_and_calls_back(
    h: Harness, receiver: Receiver, clock: FakeClock
) -> None:
    publish(h, "stopped", receiver.url, FAILS)
    from chalicelib.models import Task

    h.rt.store.acquire(Task(id="stopped", payload=FAILS, callback=receiver.url), "dead", "m-0", 3, lease_seconds=60)
    assert post(h, "/tasks/stopped/cancel", {}).status_code == 202
    clock.advance(61)  # its consumer died: the next delivery ends it CANCELLED
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "CANCELLED"


@contextmanager
def killed_before(client: Any, operation: str) -> Iterator[None]:
    """Kill the process as `client` is about to make its first `operation` call."""

    def kill(**_: Any) -> None:
        raise ProcessKilled(operation)

    event = f"before-call.{client.meta.service_model.endpoint_prefix}.{operation}"
    client.meta.events.register(event, kill)
    try:
        yield
    finally:
        client.meta.events.unregister(event, kill)


def invoke_killed(h: Harness, operation: str) -> Delivery:
    """One delivery whose consumer dies before its first `operation` to SQS; its messages stay in the queue."""
    delivery = Delivery(lambda_records(h.sqs, h.rt.tasks_queue.url))
    with killed_before(h.sqs, operation), pytest.raises(ProcessKilled):
        h.client.lambda_.invoke("process_tasks", {"Records": delivery.records})
    h.reveal(delivery)
    return delivery


def test_a_kill_between_the_terminal_write_and_the_callback_s_publish_delays_the_callback_and_loses_nothing(
    h: Harness, receiver: Receiver
) -> None:
    publish(h, "killed", receiver.url)
    invoke_killed(h, "SendMessage")  # the callback's message is the consumer's first send
    assert h.rt.store.get("killed").status is Status.COMPLETED
    assert callback_task(h, "killed") is None
    drain(h)  # the task's message comes back, finds it COMPLETED, and publishes the callback
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "COMPLETED"
    assert callback_task(h, "killed")["status"] == "COMPLETED"


def test_a_callback_that_cannot_be_published_until_the_message_is_dead_lettered_is_published_by_the_dead_letter_handler(
    h: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(h, "stubborn", receiver.url)
    real_get = h.rt.store.get

    def table_down_for_callbacks(task_id: str) -> Any:
        if task_id.endswith("/callback"):
            raise StoreError("injected: the table did not answer")
        return real_get(task_id)

    with monkeypatch.context() as patch:
        patch.setattr(h.rt.store, "get", table_down_for_callbacks)
        for _ in range(h.rt.settings.MAX_ATTEMPTS):  # each delivery completes it or finds it done, then fails
            delivery = h.deliver()
            assert len(delivery.records) == 1 and delivery.raised is not None
            h.reveal(delivery)
        assert h.deliver().records == []  # its receives ran out: SQS moved it to the dead-letter queue
    assert h.rt.store.get("stubborn").status is Status.COMPLETED and callback_task(h, "stubborn") is None
    assert h.deliver_dead_letters().records
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["id"] == "stubborn"


def test_a_task_dead_lettered_before_it_was_stored_is_recorded_failed_with_its_callback_and_called_back(
    h: Harness, receiver: Receiver
) -> None:
    body = json.dumps({"id": "never-stored", "payload": SUCCEEDS, "callback": {"url": receiver.url}})
    h.sqs.send_message(QueueUrl=h.rt.dead_letters.url, MessageBody=body)
    assert h.deliver_dead_letters().records
    assert view(h, "never-stored")["callbackTask"] == "never-stored/callback"
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["status"] == "FAILED"
    assert request["document"]["lastError"] == "dead-lettered before the task was stored"


def test_a_copy_of_a_voided_publish_s_message_calls_nobody_back(h: Harness, receiver: Receiver) -> None:
    assert h.rt.store.void_unstored("voided", "its publish died before it stored the task") is None
    h.send_raw(json.dumps({"id": "voided", "payload": SUCCEEDS, "callback": {"url": receiver.url}}))
    drain(h)
    assert callback_task(h, "voided") is None and receiver.requests == []


def test_duplicate_terminal_deliveries_publish_one_callback_task_and_one_delivery(
    h: Harness, receiver: Receiver
) -> None:
    publish(h, "twice", receiver.url)
    body = json.dumps({"id": "twice", "payload": SUCCEEDS, "callback": {"url": receiver.url}})
    h.deliver()
    for _ in range(3):  # copies of its message arrive after it completed
        h.send_raw(body)
    drain(h)
    assert len(receiver.requests) == 1
    assert callback_task(h, "twice")["attempts"] == 1


def test_two_publishes_racing_past_the_existence_check_store_one_callback_task_and_deliver_once(
    h: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.consume.terminal import FOLLOW_UPS

    publish(h, "raced", receiver.url)
    h.deliver()
    record = h.rt.store.get("raced")
    real_get = h.rt.store.get
    monkeypatch.setattr(h.rt.store, "get", lambda task_id: None if task_id.endswith("/callback") else real_get(task_id))
    FOLLOW_UPS[0].publish(h.rt, record)  # both saw no callback task: both send, one item is stored
    monkeypatch.undo()
    drain(h)
    assert len(receiver.requests) == 1


def test_a_receiver_that_fails_then_succeeds_gets_one_delivery_recorded_as_two_attempts(
    h: Harness, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.script = [500]
    publish(h, "flaky-receiver", receiver.url)
    h.deliver()  # the task
    failed = h.deliver()  # the callback's first attempt: 500
    waiting = callback_task(h, "flaky-receiver")
    assert waiting["status"] == "RETRYING" and waiting["lastError"] == "the receiver answered 500"
    clock.advance(h.visibility[failed.records[0]["receiptHandle"]])
    h.reveal(failed)
    drain(h)
    delivered = callback_task(h, "flaky-receiver")
    assert delivered["status"] == "COMPLETED" and delivered["attempts"] == 2
    assert [r["answered"] for r in receiver.requests] == [500, 200]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]  # one delivery, sent twice
    assert len(receiver.accepted()) == 1


def test_410_gone_stops_the_retries_at_once(h: Harness, receiver: Receiver) -> None:
    receiver.script = [410]
    publish(h, "gone", receiver.url)
    drain(h)
    ended = callback_task(h, "gone")
    assert ended["status"] == "FAILED" and ended["attempts"] == 1
    assert "410 Gone" in ended["lastError"]
    assert len(receiver.requests) == 1


def test_a_receiver_that_does_not_answer_in_time_fails_the_attempt(
    h: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chalicelib.handlers.callback as callback_type

    monkeypatch.setattr(callback_type, "MAX_DELIVERY_SECONDS", 0.5)  # the 10 s cap, shortened for the test
    receiver.script = ["hang"]
    publish(h, "slow-receiver", receiver.url)
    h.deliver()
    started = time.monotonic()
    h.deliver()
    assert time.monotonic() - started < 5
    waiting = callback_task(h, "slow-receiver")
    assert waiting["status"] == "RETRYING"
    assert "no answer" in waiting["lastError"] and "0.5 s" in waiting["lastError"]


def test_a_redirect_is_never_followed_and_fails_the_attempt(h: Harness, receiver: Receiver) -> None:
    elsewhere = Receiver()
    for _ in _serve(elsewhere):
        receiver.script = [elsewhere.url]
        publish(h, "redirected", receiver.url)
        h.deliver()
        h.deliver()
        assert elsewhere.requests == []
    waiting = callback_task(h, "redirected")
    assert waiting["status"] == "RETRYING"
    assert "redirect" in waiting["lastError"] and "never followed" in waiting["lastError"]


def test_post_tasks_takes_the_callback_as_a_query_parameter(h: Harness, receiver: Receiver) -> None:
    response = h.client.http.post(
        f"/tasks?callbackUrl={quote(receiver.url, safe='')}", body=json.dumps(SUCCEEDS), headers=JSON
    )
    assert response.status_code == 201, response.body
    task_id = json.loads(response.body)["id"]
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["id"] == task_id


def test_a_batch_entry_takes_a_callback_and_a_refused_one_names_its_field(h: Harness, receiver: Receiver) -> None:
    entries = [
        {"id": "b-ok", "payload": SUCCEEDS, "callback": {"url": receiver.url}},
        {"id": "b-bad", "payload": SUCCEEDS, "callback": {"url": "ftp://127.0.0.1/x"}},
    ]
    response = post(h, "/publish/batch", {"tasks": entries})
    assert response.status_code == 200, response.body
    results = json.loads(response.body)["results"]
    assert results[0]["status"] == "PENDING"
    assert "callback.url" in json.dumps(results[1])
    drain(h)
    (request,) = receiver.accepted()
    assert request["document"]["id"] == "b-ok"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"callback": {"url": "ftp://127.0.0.1/x"}}, "callback.url", "absolute https or http URL"),
        ({"callback": {"url": "http://user:pw@127.0.0.1/x"}}, "callback.url", "credentials"),
        ({"callback": {"url": "http://169.254.169.254/latest/meta-data"}}, "callback.url", "link-local"),
        ({"callback": {"url": ""}}, "callback.url", "at least 1"),
        ({"callback": {"url": "http://127.0.0.1/", "extra": 1}}, "callback.extra", "Extra inputs"),
        ({"id": "x" * 250, "callback": {"url": "http://127.0.0.1/"}}, "id", "/callback"),
        ({"type": "callback", "payload": {"url": "http://127.0.0.1/", "delivery": {}}}, "type", "must not be callback"),
    ],
    ids=["scheme", "credentials", "metadata", "empty", "extra-field", "id-too-long", "reserved-type"],
)
def test_a_publish_whose_callback_breaks_a_rule_is_a_400_naming_the_field_and_the_rule(
    h: Harness, body: dict[str, Any], field: str, rule: str
) -> None:
    response = post(h, "/publish", {"id": "refused", "payload": SUCCEEDS, **body})
    assert response.status_code == 400, response.body
    details = json.loads(response.body)["error"]["details"]
    assert any(d["field"] == field and rule in d["message"] for d in details), details
    assert h.rt.store.get("refused") is None


# --- a deployed stage's rules ---------------------------------------------------------------------


def as_deployed(h: Harness, allowed: str, *answers: list[str]) -> list[list[str]]:
    """Make the runtime a deployed stage's (AWS_LAMBDA_FUNCTION_NAME set) with `allowed` hosts, its DNS
    answering each lookup with the next of `answers` (the last one repeated); returns what was asked."""
    h.rt.settings = h.rt.settings.model_copy(
        update={"AWS_LAMBDA_FUNCTION_NAME": "taskproc-dev-api_handler", "CALLBACK_ALLOWED_HOSTS": allowed}
    )
    h.rt.__dict__.pop("callback_urls", None)  # derived from the settings again, on first use
    policy = h.rt.callback_urls
    assert policy.deployed and policy.allowed_hosts == tuple(a.strip() for a in allowed.split(",") if a.strip())
    pending, asked = list(answers), []

    def resolver(host: str, port: int) -> list[str]:
        asked.append([host, str(port)])
        return pending.pop(0) if len(pending) > 1 else pending[0]

    h.rt.callback_urls = replace(policy, resolver=resolver)
    return asked


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.7", "private"),
        ("172.31.255.1", "private"),
        ("192.168.0.10", "private"),
        ("fd12:3456::1", "private"),
        ("239.1.2.3", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.9", "reserved"),
    ],
)
def test_a_deployed_stage_refuses_a_callback_resolving_to_each_forbidden_address_class_with_a_400(
    h: Harness, address: str, named: str
) -> None:
    as_deployed(h, "hooks.example.com", [address])
    response = post(
        h, "/publish", {"id": "ssrf", "payload": SUCCEEDS, "callback": {"url": "https://hooks.example.com/"}}
    )
    assert response.status_code == 400, response.body
    (detail,) = json.loads(response.body)["error"]["details"]
    assert detail["field"] == "callback.url" and named in detail["message"] and address in detail["message"]
    assert h.rt.store.get("ssrf") is None


@pytest.mark.parametrize(
    ("allowed", "url", "rule"),
    [
        ("", "https://hooks.example.com/", "callbacks are off on this stage"),
        ("hooks.example.com", "http://hooks.example.com/", "absolute https URL"),
        ("hooks.example.com", "https://other.example.com/", "CALLBACK_ALLOWED_HOSTS"),
        ("hooks.example.com", "https://169.254.169.254/latest/meta-data/", "CALLBACK_ALLOWED_HOSTS"),
    ],
    ids=["allowlist-empty", "plain-http", "host-not-allowed", "metadata-by-address"],
)
def test_a_deployed_stage_refuses_callbacks_off_its_allowlist_or_without_https(
    h: Harness, allowed: str, url: str, rule: str
) -> None:
    as_deployed(h, allowed, ["93.184.216.34"])
    response = post(h, "/publish", {"id": "ssrf", "payload": SUCCEEDS, "callback": {"url": url}})
    assert response.status_code == 400, response.body
    (detail,) = json.loads(response.body)["error"]["details"]
    assert detail["field"] == "callback.url" and rule in detail["message"], detail


def test_a_host_that_resolves_to_loopback_by_delivery_time_is_refused_then_and_never_called(
    h: Harness, receiver: Receiver
) -> None:
    # Public when published, loopback (the receiver's address) when delivered: a rebinding name.
    asked = as_deployed(h, "hooks.example.com", ["93.184.216.34"], ["127.0.0.1"])
    host_port = receiver.url.split("//")[1].split("/")[0]
    publish(h, "rebound", f"https://hooks.example.com:{host_port.split(':')[1]}/hooks/taskproc")
    drain(h)
    assert len(asked) == 2  # checked at publish, and again before the delivery
    ended = callback_task(h, "rebound")
    assert ended["status"] == "FAILED" and ended["attempts"] == 1
    assert "loopback" in ended["lastError"] and "127.0.0.1" in ended["lastError"]
    assert receiver.requests == []


def test_the_openapi_document_names_the_callback_field_the_query_parameter_and_the_callback_task(
    h: Harness,
) -> None:
    document = json.loads(h.client.http.get("/openapi.json").body)
    schemas = document["components"]["schemas"]
    assert schemas["PublishSimulate"]["properties"]["callback"]["$ref"] == "#/components/schemas/CallbackIn"
    assert schemas["CallbackIn"]["required"] == ["url"]
    assert {"callback", "callbackTask"} <= set(schemas["TaskView"]["properties"])
    assert "PublishCallback" not in schemas  # clients cannot publish it
    parameters = {p["name"] for p in document["paths"]["/tasks"]["post"]["parameters"]}
    assert "callbackUrl" in parameters


def test_a_task_retried_after_its_callback_is_called_back_again_for_each_end_by_a_delivery_of_its_own(
    h: Harness, receiver: Receiver, clock: FakeClock
) -> None:
    publish(h, "again", receiver.url)
    assert post(h, "/tasks/again/cancel", {}).status_code == 200
    drain(h)
    clock.advance(60)
    assert post(h, "/tasks/again/retry", {}).status_code == 202
    # Retried and not ended again: the view names the delivery of its last end.
    assert view(h, "again")["callbackTask"] == "again/callback"
    assert post(h, "/tasks/again/cancel", {}).status_code == 200
    drain(h)
    assert view(h, "again")["callbackTask"] == "again/callback/2"
    clock.advance(60)
    assert post(h, "/tasks/again/retry", {}).status_code == 202
    drain(h)
    task = view(h, "again")
    assert task["status"] == "COMPLETED" and task["callbackTask"] == "again/callback/3"
    documents = [request["document"] for request in receiver.accepted()]
    assert [(d["id"], d["status"]) for d in documents] == [
        ("again", "CANCELLED"),
        ("again", "CANCELLED"),
        ("again", "COMPLETED"),
    ]
    assert documents[2] == {
        "id": "again",
        "status": "COMPLETED",
        "result": task["result"],
        "lastError": task["lastError"],
        "finishedAt": task["finishedAt"],
    }
    assert len({d["finishedAt"] for d in documents}) == 3  # each end its own, as a receiver dedupes them
    for delivery in ("again/callback", "again/callback/2", "again/callback/3"):
        delivered = view(h, delivery)
        assert delivered["type"] == "callback" and delivered["status"] == "COMPLETED" and delivered["attempts"] == 1


def test_repeats_of_a_retried_task_s_second_end_publish_its_second_delivery_once(
    h: Harness, receiver: Receiver
) -> None:
    from chalicelib.consume.terminal import after_terminal

    publish(h, "again-twice", receiver.url)
    assert post(h, "/tasks/again-twice/cancel", {}).status_code == 200
    drain(h)
    assert post(h, "/tasks/again-twice/retry", {}).status_code == 202
    drain(h)
    body = json.dumps({"id": "again-twice", "payload": SUCCEEDS, "callback": {"url": receiver.url}})
    for _ in range(3):  # copies of its message arrive after it completed again
        h.send_raw(body)
    record = h.rt.store.get("again-twice")
    after_terminal(h.rt, record.task, record)  # and the hook runs again on its terminal item
    drain(h)
    assert [request["document"]["status"] for request in receiver.accepted()] == ["CANCELLED", "COMPLETED"]
    assert h.rt.store.get("again-twice/callback/3") is None


def test_retrying_the_first_delivery_after_a_second_end_re_sends_the_first_outcome(
    h: Harness, receiver: Receiver
) -> None:
    receiver.script = [410]
    publish(h, "first-outcome", receiver.url)
    assert post(h, "/tasks/first-outcome/cancel", {}).status_code == 200
    drain(h)
    assert callback_task(h, "first-outcome")["status"] == "FAILED"  # 410: the receiver said gone
    assert post(h, "/tasks/first-outcome/retry", {}).status_code == 202
    drain(h)
    assert post(h, "/tasks/first-outcome%2Fcallback/retry", {}).status_code == 202
    drain(h)
    statuses = [request["document"]["status"] for request in receiver.requests]
    assert statuses == ["CANCELLED", "COMPLETED", "CANCELLED"]
    assert receiver.requests[0]["body"] == receiver.requests[2]["body"]


@pytest.mark.parametrize(("length", "status"), [(243, 201), (244, 400)])
def test_a_task_with_a_callback_must_leave_room_for_the_id_of_its_last_possible_delivery(
    h: Harness, receiver: Receiver, length: int, status: int
) -> None:
    task_id = "r" * length  # "/callback/200" is 13 characters of the 256
    response = post(h, "/publish", {"id": task_id, "payload": SUCCEEDS, "callback": {"url": receiver.url}})
    assert response.status_code == status, response.body
    if status == 400:
        (detail,) = json.loads(response.body)["error"]["details"]
        assert detail["field"] == "id" and "/callback/200" in detail["message"], detail


def test_no_task_can_end_more_often_than_its_deliveries_ids_leave_room_for() -> None:
    from chalicelib.models import MAX_CALLBACK_GENERATION
    from chalicelib.operate.operations import MAX_HISTORY_ENTRIES

    # Each run after the first adds a retry entry and an attempt to a history of at most MAX_HISTORY_ENTRIES.
    assert MAX_CALLBACK_GENERATION >= MAX_HISTORY_ENTRIES // 2 + 1
