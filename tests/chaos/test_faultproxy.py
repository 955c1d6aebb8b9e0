"""The fault proxy answers its share of calls with faults botocore retries, and forwards the rest intact."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff

from tools.chaos.faultproxy import FaultProxy


class _Upstream(BaseHTTPRequestHandler):
    """Answers every DynamoDB call with an empty table list, and counts the calls."""

    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls += 1
        body = json.dumps({"TableNames": ["forwarded"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Upstream.calls = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _dynamodb(url: str, attempts: int) -> object:
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore waits up to seconds between retries of a throttled call; the retries, not the waits, are tested."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.mark.usefixtures("no_backoff")
def test_every_fault_kind_is_retried_by_botocore_until_a_call_gets_through(upstream: str) -> None:
    proxy = FaultProxy(upstream, rate=0.4, seed=3).start()
    try:
        client = _dynamodb(proxy.url, attempts=10)
        for _ in range(40):
            assert client.list_tables()["TableNames"] == ["forwarded"]  # type: ignore[attr-defined]
        faults = proxy.snapshot()
    finally:
        proxy.stop()
    assert {kind for _, kind in faults} == {"throttle", "500", "503"}
    assert {target for target, _ in faults} == {"DynamoDB_20120810.ListTables"}
    assert _Upstream.calls == 40  # a faulted call never reached the endpoint


@pytest.mark.usefixtures("no_backoff")
def test_a_fault_that_outlasts_the_retries_surfaces_as_a_retryable_error(upstream: str) -> None:
    proxy = FaultProxy(upstream, rate=0.999999, seed=1).start()
    try:
        with pytest.raises(ClientError) as raised:
            _dynamodb(proxy.url, attempts=2).list_tables()  # type: ignore[attr-defined]
    finally:
        proxy.stop()
    assert raised.value.response["Error"]["Code"] in {"ThrottlingException", "InternalFailure", "ServiceUnavailable"}
    assert _Upstream.calls == 0
