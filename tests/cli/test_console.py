"""The console's server: its page, and the API calls it forwards, signed, and only the page's own."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.credentials import Credentials

from taskctl.client import ApiClient
from taskctl.console import TOKEN_HEADER, ConsoleServer, running
from tests.cli.fake_api import FakeApi
from tests.e2e.stack import ROOT, free_port, wait_until


@pytest.fixture
def console(fake: FakeApi) -> Iterator[ConsoleServer]:
    with running(ApiClient(fake.url)) as server:
        yield server


def page_headers(server: ConsoleServer) -> dict[str, str]:
    """What the page's script sends with every API call."""
    return {TOKEN_HEADER: server.token, "Content-Type": "application/json"}


def get(server: ConsoleServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(server.url.rstrip("/") + path, timeout=15, **kwargs)


def post(server: ConsoleServer, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
    data = json.dumps(body) if body is not None else b""
    return requests.post(server.url.rstrip("/") + path, data=data, timeout=15, **kwargs)


def test_the_page_and_its_files_are_served_with_a_strict_policy(console: ConsoleServer) -> None:
    page = get(console, "/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<script src="console.js"' in page.text
    for name, kind in (("/console.js", "javascript"), ("/console.css", "text/css"), ("/favicon.svg", "svg")):
        answer = get(console, name)
        assert answer.status_code == 200 and kind in answer.headers["Content-Type"], name


def test_the_page_names_no_outside_resource(console: ConsoleServer) -> None:
    for name in ("/", "/console.js", "/console.css"):
        text = get(console, name).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_the_page_calls_are_forwarded_and_answered_as_the_api_answered(console: ConsoleServer, fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="boom")

    headers = page_headers(console)
    stats = get(console, "/api/stats", headers=headers)
    listed = get(console, "/api/tasks?status=FAILED&limit=5", headers=headers)
    refused = post(console, "/api/tasks/ghost/retry", headers=headers)
    retried = post(console, "/api/tasks/t-1/retry", headers=headers)

    assert (stats.status_code, stats.json()["counts"]["FAILED"]) == (200, 1)
    assert [t["id"] for t in listed.json()["tasks"]] == ["t-1"]
    assert fake.seen[1].path == "/tasks?status=FAILED&limit=5"
    assert (refused.status_code, refused.json()["error"]["code"]) == (404, "not_found")
    assert (retried.status_code, retried.json()["status"]) == (202, "PENDING")


def test_the_bulk_retry_body_is_forwarded_as_sent(console: ConsoleServer, fake: FakeApi) -> None:
    body = {"status": "FAILED", "limit": 7, "dryRun": True}

    answer = post(console, "/api/retries", body, headers=page_headers(console))

    assert answer.status_code == 200
    assert fake.seen[-1].body == body


def test_calls_without_the_page_token_are_refused_and_not_forwarded(console: ConsoleServer, fake: FakeApi) -> None:
    answer = requests.post(
        console.url + "api/retries", data="{}", headers={"Content-Type": "application/json"}, timeout=15
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "not_the_console"
    assert fake.seen == []


def test_a_request_for_another_host_name_is_refused(console: ConsoleServer, fake: FakeApi) -> None:
    answer = get(console, "/api/stats", headers=page_headers(console) | {"Host": "evil.example:80"})

    assert answer.status_code == 421
    assert fake.seen == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/publish"),
        ("GET", "/api/health"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/a/b"),
        ("GET", "/api/tasks/a/retry"),
    ],
)
def test_only_the_pages_own_routes_are_forwarded(console: ConsoleServer, fake: FakeApi, method: str, path: str) -> None:
    # http.client sends the path as written (requests would resolve the dot segments first).
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=15)
    connection.request(method, path, body=b"{}" if method == "POST" else None, headers=page_headers(console))
    answer = connection.getresponse()

    assert answer.status == 404
    assert json.loads(answer.read())["error"]["code"] == "not_forwarded"
    assert fake.seen == []


def test_an_api_that_is_down_is_a_502_said_in_words(no_aws: None) -> None:
    with running(ApiClient(f"http://127.0.0.1:{free_port()}")) as server:
        answer = get(server, "/api/stats", headers=page_headers(server))

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "api_unreachable"
    assert "cannot reach the API at http://127.0.0.1:" in answer.json()["error"]["message"]


def test_the_browser_holds_no_credentials_the_console_signs_for_it(
    guarded_fake: FakeApi, aws_identity: Credentials
) -> None:
    with running(ApiClient(guarded_fake.url, sign=True)) as server:
        answer = get(server, "/api/stats", headers=page_headers(server))

    assert answer.status_code == 200, answer.text
    assert guarded_fake.seen[-1].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_without_credentials_the_console_says_so(guarded_fake: FakeApi) -> None:
    with running(ApiClient(guarded_fake.url, sign=True)) as server:
        answer = get(server, "/api/stats", headers=page_headers(server))

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "no_credentials"
    assert guarded_fake.seen == []


def test_taskctl_console_serves_on_the_port_it_is_given_and_prints_its_url(fake: FakeApi) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "taskctl", "--url", fake.url, "console", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith(f"taskproc console on http://127.0.0.1:{port}/ -> {fake.url}"), line

        def answered() -> dict[str, Any] | None:
            try:
                return dict(requests.get(f"http://127.0.0.1:{port}/console-info", timeout=5).json())
            except requests.RequestException:
                return None

        assert wait_until(answered, 30, "the console to answer") == {"apiUrl": fake.url, "signed": False}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def test_a_taken_port_is_a_usage_error_in_one_line(console: ConsoleServer, fake: FakeApi) -> None:
    taken = str(console.port)
    done = subprocess.run(
        [sys.executable, "-m", "taskctl", "--url", fake.url, "console", "--port", taken],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr.startswith(f"taskctl: error: cannot serve the console on 127.0.0.1:{taken}")
    assert json.dumps(done.stderr).count("\\n") == 1


def test_the_stuck_tasks_are_forwarded_and_signed_as_an_operator_route(
    guarded_fake: FakeApi, aws_identity: Credentials
) -> None:
    guarded_fake.add_stuck("lost-1", "PENDING", "PENDING past the dispatch bound", "2026-11-25T11:50:00Z")

    with running(ApiClient(guarded_fake.url, sign=True)) as server:
        answer = get(server, "/api/stuck", headers=page_headers(server))

    assert answer.status_code == 200, answer.text
    assert [task["id"] for task in answer.json()["tasks"]] == ["lost-1"]
    assert guarded_fake.seen[-1].path == "/stuck"
    assert guarded_fake.seen[-1].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
