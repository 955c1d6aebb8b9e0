"""get, wait and TaskRef.result: the long poll, the three ends of a task, and the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
from taskproc_client import Client, NotFound, Status, TaskCancelled, TaskFailed, WaitTimeout

from tests.cli.fake_api import FakeApi


def waits_asked(fake: FakeApi) -> list[int]:
    """The waitSeconds of every GET /tasks/{id} the fake received."""
    asked = [dict(parse_qsl(urlsplit(seen.path).query)) for seen in fake.seen if seen.method == "GET"]
    return [int(query["waitSeconds"]) for query in asked if "waitSeconds" in query]


@pytest.fixture
def later(fake: FakeApi) -> Iterator[list[threading.Timer]]:
    """Timers that end tasks while a test waits; cancelled at the end whatever happened."""
    timers: list[threading.Timer] = []
    yield timers
    for timer in timers:
        timer.cancel()


def finish_in(later: list[threading.Timer], seconds: float, fake: FakeApi, *args: object, **kw: object) -> None:
    timer = threading.Timer(seconds, fake.finish, args, kw)
    later.append(timer)
    timer.start()


def test_get_returns_the_typed_view(client: Client, fake: FakeApi) -> None:
    fake.add("t-1", "FAILED", last_error="boom", attempts=2)

    view = client.get("t-1")

    assert (view.id, view.status, view.attempts, view.last_error) == ("t-1", Status.FAILED, 2, "boom")
    assert [entry.attempt for entry in view.history] == [1, 2]
    assert view.history[0].outcome == "failed" and view.history[0].started_at is not None
    assert view.raw["lastError"] == "boom"


def test_get_of_an_unknown_id_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="no task with id"):
        client.get("ghost")


def test_wait_returns_the_completed_view_from_one_held_poll(
    client: Client, fake: FakeApi, later: list[threading.Timer]
) -> None:
    fake.add("t-1", "PENDING", attempts=0)
    finish_in(later, 0.5, fake, "t-1", "COMPLETED", result={"digest": "abc"})
    started = time.monotonic()

    view = client.wait("t-1", timeout=10)

    assert view.status is Status.COMPLETED and view.result == {"digest": "abc"}
    assert time.monotonic() - started < 3
    assert waits_asked(fake) == [9]  # min(20, the whole seconds left), held until the task ended


def test_a_long_wait_asks_for_20_seconds_at_most(client: Client, fake: FakeApi) -> None:
    fake.add("t-1", "COMPLETED")

    client.wait("t-1", timeout=300)

    assert waits_asked(fake) == [20]


def test_wait_raises_task_failed_with_the_view_and_its_last_error(
    client: Client, fake: FakeApi, later: list[threading.Timer]
) -> None:
    fake.add("t-1", "RETRYING", attempts=1, last_error="first")
    finish_in(later, 0.3, fake, "t-1", "FAILED", last_error="permanent failure: no")

    with pytest.raises(TaskFailed) as failed:
        client.wait("t-1", timeout=10)

    assert failed.value.last_error == "permanent failure: no"
    assert failed.value.view.status is Status.FAILED


def test_wait_raises_task_cancelled(client: Client, fake: FakeApi) -> None:
    fake.add("t-1", "CANCELLED", last_error="expired before it started")

    with pytest.raises(TaskCancelled) as cancelled:
        client.wait("t-1", timeout=5)

    assert cancelled.value.last_error == "expired before it started"


def test_wait_past_its_timeout_raises_a_timeout_error_carrying_the_last_view(client: Client, fake: FakeApi) -> None:
    fake.add("t-1", "PROCESSING", attempts=1)
    started = time.monotonic()

    with pytest.raises(TimeoutError) as timed_out:
        client.wait("t-1", timeout=2.5)

    waited = time.monotonic() - started
    assert 2.5 <= waited < 4.5
    assert isinstance(timed_out.value, WaitTimeout)
    assert timed_out.value.view is not None and timed_out.value.view.status is Status.PROCESSING
    assert waits_asked(fake)[0] == 2


def test_ref_result_is_the_result_itself(client: Client, fake: FakeApi, later: list[threading.Timer]) -> None:
    ref = client.publish("checksum", {"text": "x"}, id="t-1")
    finish_in(later, 0.2, fake, "t-1", "COMPLETED", result={"algorithm": "sha256", "digest": "2d71"})

    assert ref.result(timeout=10) == {"algorithm": "sha256", "digest": "2d71"}


class NoLongPoll(FakeApi):
    """A server from before the long poll: it answers at once whatever waitSeconds asks."""

    def _get(self, task: dict[str, object], query: dict[str, str]) -> tuple[int, object]:
        return 200, task


def test_against_a_server_that_does_not_hold_the_poll_wait_reads_once_a_second(no_aws: None) -> None:
    from tests.cli.fake_api import serving

    with serving(NoLongPoll()) as fake, Client(fake.url) as client:
        fake.add("t-1", "PENDING", attempts=0)
        with pytest.raises(WaitTimeout):
            client.wait("t-1", timeout=3)

    reads = [seen for seen in fake.seen if seen.method == "GET"]
    assert 3 <= len(reads) <= 5
