"""The console's refusals, replayed on a raw socket as an attacker would send them.

Each attack carries, hidden where a lax server would parse it as a request of its own, a
valid call of the page's (the right Host and token, JSON): `POST /api/tasks/t-1/retry`.
The first test shows that call is served when sent alone; every other test counts the
requests that reached the stub API behind the console, and wants none.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from taskctl.client import ApiClient
from taskctl.console import MAX_BODY, TOKEN_HEADER, ConsoleServer, running
from tests.cli.fake_api import FakeApi

READ_SECONDS = 5.0


@pytest.fixture
def console(fake: FakeApi) -> Iterator[ConsoleServer]:
    fake.add("t-1", "FAILED", last_error="boom")
    with running(ApiClient(fake.url)) as server:
        yield server


def host(console: ConsoleServer) -> str:
    return f"127.0.0.1:{console.port}"


def request(
    console: ConsoleServer,
    start: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    length: bool = True,
) -> bytes:
    """One request as bytes: Host and (unless `length` is False) Content-Length first, then `headers`."""
    lines = [start, f"Host: {host(console)}"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def page_call(console: ConsoleServer, path: str = "/api/tasks/t-1/retry") -> bytes:
    """A call exactly as the page makes it."""
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    return request(console, f"POST {path} HTTP/1.1", headers)


def exchange(console: ConsoleServer, data: bytes) -> list[tuple[int, bytes]]:
    """Send `data` on one connection; the status and raw text of every answer received before it closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", console.port), timeout=READ_SECONDS) as connection:
        connection.sendall(data)
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pass  # a server that keeps the connection open; what it answered so far is counted
    answers = [b"HTTP/1." + part for part in received.split(b"HTTP/1.")[1:]]
    return [(int(answer.split(b" ", 2)[1]), answer) for answer in answers]


def error_code(answer: bytes) -> str:
    return str(json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"])


def assert_refused(fake: FakeApi, answers: list[tuple[int, bytes]], status: int, code: str) -> None:
    assert [s for s, _ in answers] == [status], answers
    assert error_code(answers[0][1]) == code
    assert b"Access-Control-Allow" not in answers[0][1]
    assert fake.seen == []
    assert fake.tasks["t-1"]["status"] == "FAILED"


def test_the_hidden_call_is_served_when_sent_on_its_own(console: ConsoleServer, fake: FakeApi) -> None:
    answers = exchange(console, page_call(console))

    assert [s for s, _ in answers] == [202]
    assert [(seen.method, seen.path) for seen in fake.seen] == [("POST", "/tasks/t-1/retry")]


def test_a_call_smuggled_in_the_body_of_a_403_is_not_served(console: ConsoleServer, fake: FakeApi) -> None:
    hidden = page_call(console)
    outer = request(console, "POST /api/x HTTP/1.1", {"Content-Type": "text/plain"}, hidden)

    assert_refused(fake, exchange(console, outer), 403, "not_the_console")


def test_a_call_smuggled_in_the_body_of_a_421_is_not_served(console: ConsoleServer, fake: FakeApi) -> None:
    hidden = page_call(console)
    outer = f"POST /api/tasks/t-1/retry HTTP/1.1\r\nHost: evil.example\r\nContent-Length: {len(hidden)}\r\n\r\n"

    assert_refused(fake, exchange(console, outer.encode() + hidden), 421, "wrong_host")


def test_a_call_smuggled_in_the_body_of_a_404_is_not_served(console: ConsoleServer, fake: FakeApi) -> None:
    hidden = page_call(console)
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    outer = request(console, "POST /api/publish HTTP/1.1", headers, hidden)

    assert_refused(fake, exchange(console, outer), 404, "not_forwarded")


def test_a_call_pipelined_behind_a_refused_one_is_not_served(console: ConsoleServer, fake: FakeApi) -> None:
    first = request(console, "GET /no-such-page HTTP/1.1", length=False)

    assert_refused(fake, exchange(console, first + page_call(console)), 404, "not_found")


def test_a_call_pipelined_behind_an_answered_one_waits_for_a_connection_of_its_own(
    console: ConsoleServer, fake: FakeApi
) -> None:
    first = request(console, "GET /console-info HTTP/1.1", length=False)

    answers = exchange(console, first + page_call(console))

    assert [s for s, _ in answers] == [200]
    assert fake.seen == []


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [
        ("-1", 400, "bad_content_length"),
        ("abc", 400, "bad_content_length"),
        ("1e3", 400, "bad_content_length"),
        ("+5", 400, "bad_content_length"),
        ("5, 5", 400, "bad_content_length"),
        (str(MAX_BODY + 1), 413, "body_too_large"),
        ("99999999999999999999", 400, "bad_content_length"),
    ],
)
def test_a_content_length_that_is_not_a_small_number_is_refused_at_once(
    console: ConsoleServer, fake: FakeApi, length: str, status: int, code: str
) -> None:
    headers = {"Content-Length": length, TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    outer = request(console, "POST /api/retries HTTP/1.1", headers, page_call(console), length=False)

    assert_refused(fake, exchange(console, outer), status, code)


def test_a_post_without_content_length_is_refused(console: ConsoleServer, fake: FakeApi) -> None:
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    outer = request(console, "POST /api/tasks/t-1/retry HTTP/1.1", headers, length=False)

    assert_refused(fake, exchange(console, outer), 411, "length_required")


def test_a_get_with_a_body_is_refused(console: ConsoleServer, fake: FakeApi) -> None:
    outer = request(console, "GET /api/stats HTTP/1.1", {TOKEN_HEADER: console.token}, page_call(console))

    assert_refused(fake, exchange(console, outer), 400, "unexpected_body")


@pytest.mark.parametrize("with_length", [False, True])
def test_a_chunked_body_is_refused(console: ConsoleServer, fake: FakeApi, with_length: bool) -> None:
    hidden = page_call(console)
    chunked = f"{len(hidden):x}\r\n".encode() + hidden + b"\r\n0\r\n\r\n"
    headers = {"Transfer-Encoding": "chunked", TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    if with_length:  # CL.TE: each side of a proxy would believe another framing
        headers["Content-Length"] = "4"
    outer = request(console, "POST /api/retries HTTP/1.1", headers, chunked, length=False)

    assert_refused(fake, exchange(console, outer), 400, "transfer_encoding_refused")


@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks/..",
        "/api/tasks/%2e%2e",
        "/api/tasks/%2E%2e/retry",
        "/api/tasks/t-1/../../retries",
        "/api/./tasks/t-1/retry",
        "/api/tasks/%2e/retry",
        "/api/tasks/a%2f..%2f..%2fretries",
        "/api/tasks/a%2F..%2Fretry",
        "/api/tasks/a%5c..%5cretry",
        "/api/tasks/a\\..\\retry",
        "/api/tasks/%ff/retry",
        "http://{host}/api/tasks/t-1/retry",
    ],
)
def test_paths_with_dot_segments_encoded_slashes_or_odd_bytes_are_refused(
    console: ConsoleServer, fake: FakeApi, path: str
) -> None:
    assert_refused(fake, exchange(console, page_call(console, path.format(host=host(console)))), 400, "bad_path")


@pytest.mark.parametrize("token", [None, "", "1", "x" * 43])
def test_an_api_call_without_the_pages_token_is_refused(
    console: ConsoleServer, fake: FakeApi, token: str | None
) -> None:
    headers = {"Content-Type": "application/json"} | ({TOKEN_HEADER: token} if token is not None else {})
    outer = request(console, "POST /api/tasks/t-1/retry HTTP/1.1", headers)

    assert_refused(fake, exchange(console, outer), 403, "not_the_console")


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:1", "http://evil.example", "null", "https://127.0.0.1", "http://localhost"]
)
def test_a_call_from_another_origin_is_refused_even_with_the_token(
    console: ConsoleServer, fake: FakeApi, origin: str
) -> None:
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json", "Origin": origin}
    outer = request(console, "POST /api/tasks/t-1/retry HTTP/1.1", headers)

    assert_refused(fake, exchange(console, outer), 403, "foreign_origin")


def test_a_call_from_the_consoles_own_origin_is_served(console: ConsoleServer, fake: FakeApi) -> None:
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json", "Origin": f"http://{host(console)}"}

    answers = exchange(console, request(console, "POST /api/tasks/t-1/retry HTTP/1.1", headers))

    assert [s for s, _ in answers] == [202]
    assert len(fake.seen) == 1


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x", None])
def test_a_post_that_is_not_json_is_refused_even_with_the_token(
    console: ConsoleServer, fake: FakeApi, kind: str | None
) -> None:
    headers = {TOKEN_HEADER: console.token} | ({"Content-Type": kind} if kind else {})
    outer = request(console, "POST /api/retries HTTP/1.1", headers, b'{"status": "FAILED"}')

    assert_refused(fake, exchange(console, outer), 415, "not_json")


@pytest.mark.parametrize("hosts", [["evil.example"], ["127.0.0.1:1"], ["localhost"], ["{ours}", "evil.example"]])
def test_a_host_that_is_not_the_consoles_is_refused(console: ConsoleServer, fake: FakeApi, hosts: list[str]) -> None:
    lines = ["POST /api/tasks/t-1/retry HTTP/1.1", *(f"Host: {h.format(ours=host(console))}" for h in hosts)]
    lines += ["Content-Length: 0", f"{TOKEN_HEADER}: {console.token}", "Content-Type: application/json"]

    answers = exchange(console, ("\r\n".join(lines) + "\r\n\r\n").encode())

    assert_refused(fake, answers, 421, "wrong_host")


def test_each_launch_serves_a_new_token_inside_its_page(fake: FakeApi) -> None:
    with running(ApiClient(fake.url)) as first, running(ApiClient(fake.url)) as second:
        pages = [exchange(server, request(server, "GET / HTTP/1.1", length=False))[0][1] for server in (first, second)]

    assert first.token != second.token and len(first.token) >= 40
    assert f'<meta name="taskctl-token" content="{first.token}">'.encode() in pages[0]
    assert f'<meta name="taskctl-token" content="{second.token}">'.encode() in pages[1]
