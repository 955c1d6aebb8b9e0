"""The console forwards the schedules page's calls (read, pause, resume, trigger) and no other schedule route."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from taskctl.client import ApiClient
from taskctl.console import TOKEN_HEADER, ConsoleServer, running
from tests.cli.fake_api import serving
from tests.cli.fake_schedules import FakeScheduleApi, schedule_view


@pytest.fixture
def fake(no_aws: None) -> Iterator[FakeScheduleApi]:
    with serving(FakeScheduleApi()) as api:
        api.schedules["nightly"] = schedule_view("nightly")
        yield api


@pytest.fixture
def console(fake: FakeScheduleApi) -> Iterator[ConsoleServer]:
    with running(ApiClient(fake.url)) as server:
        yield server


def call(console: ConsoleServer, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    """One request as the page sends it (its token, JSON), on a raw connection so the path goes as written."""
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=15)
    headers = {TOKEN_HEADER: console.token, "Content-Type": "application/json"}
    connection.request(
        method, path, body=body if body is not None else b"" if method == "POST" else None, headers=headers
    )
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read() or b"null")


def test_the_schedules_pages_reads_and_actions_are_forwarded_and_answered_as_the_api_answered(
    console: ConsoleServer, fake: FakeScheduleApi
) -> None:
    listed = call(console, "GET", "/api/schedules")
    shown = call(console, "GET", "/api/schedules/nightly")
    paused = call(console, "POST", "/api/schedules/nightly/pause")
    resumed = call(console, "POST", "/api/schedules/nightly/resume")
    triggered = call(console, "POST", "/api/schedules/nightly/trigger")
    missing = call(console, "GET", "/api/schedules/ghost")

    assert listed[0] == 200 and [s["id"] for s in listed[1]["schedules"]] == ["nightly"]  # type: ignore[attr-defined]
    assert shown[0] == 200 and shown[1]["cron"] == "0 9 * * MON-FRI"
    assert (paused[0], paused[1]["paused"], resumed[1]["paused"]) == (200, True, False)
    assert triggered[0] == 201 and str(triggered[1]["id"]).startswith("nightly@")
    assert missing[0] == 404
    assert [(s.method, s.path) for s in fake.seen] == [
        ("GET", "/schedules"),
        ("GET", "/schedules/nightly"),
        ("POST", "/schedules/nightly/pause"),
        ("POST", "/schedules/nightly/resume"),
        ("POST", "/schedules/nightly/trigger"),
        ("GET", "/schedules/ghost"),
    ]


def test_a_schedule_id_is_decoded_once_and_sent_as_one_encoded_segment(
    console: ConsoleServer, fake: FakeScheduleApi
) -> None:
    fake.schedules["a b<c>"] = schedule_view("a b<c>")

    status, body = call(console, "POST", "/api/schedules/a%20b%3Cc%3E/trigger")

    assert status == 201 and str(body["id"]).startswith("a b<c>@")
    assert fake.seen[-1].path == "/schedules/a%20b%3Cc%3E/trigger"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/schedules"),  # creating stays with taskctl and the API
        ("PUT", "/api/schedules/nightly"),
        ("DELETE", "/api/schedules/nightly"),
        ("POST", "/api/schedules/nightly/backfill"),
        ("POST", "/api/schedules/nightly"),
        ("GET", "/api/schedules/nightly/trigger"),
        ("GET", "/api/schedules/nightly/pause/extra"),
    ],
)
def test_schedule_routes_the_page_does_not_use_are_not_forwarded(
    console: ConsoleServer, fake: FakeScheduleApi, method: str, path: str
) -> None:
    status, body = call(console, method, path, b"{}" if method == "POST" else None)

    assert status == 404
    assert body["error"]["code"] == "not_forwarded"  # type: ignore[index]
    assert fake.seen == []
    assert fake.schedules["nightly"]["paused"] is False
