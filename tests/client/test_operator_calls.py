"""The operator's calls: listing (by tag, every page), counts, retries, cancels, types and schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from taskproc_client import Client, Conflict, NotFound, Status

from tests.cli.fake_api import FakeApi


def test_list_reads_one_page_with_its_filters(client: Client, fake: FakeApi) -> None:
    fake.add("a", "FAILED", last_error="e")["tags"] = ["batch:7"]
    fake.add("b", "FAILED", last_error="e")

    page = client.list("FAILED", tag="batch:7", type="simulate", limit=10)

    assert [task.id for task in page.tasks] == ["a"]
    assert page.tasks[0].tags == ["batch:7"] and page.tasks[0].status is Status.FAILED
    assert page.next_cursor is None
    assert fake.seen[-1].path == "/tasks?status=FAILED&limit=10&type=simulate&tag=batch%3A7"


def test_iter_tasks_follows_the_cursor_through_every_page(client: Client, fake: FakeApi) -> None:
    for n in range(5):
        fake.add(f"t-{n}", "CANCELLED")

    ids = [task.id for task in client.iter_tasks("CANCELLED", page_size=2)]

    assert sorted(ids) == [f"t-{n}" for n in range(5)] and len(ids) == 5
    assert [seen.path.split("cursor=")[-1] for seen in fake.seen[1:]] == ["fake-2", "fake-4"]


def test_stats_and_count(client: Client, fake: FakeApi) -> None:
    fake.add("a", "FAILED", last_error="e")
    fake.add("b", "RETRYING", last_error="e")

    stats = client.stats()

    exact = {status: stats.counts[status] for status in ("FAILED", "RETRYING", "CANCELLED")}
    assert exact == {"FAILED": 1, "RETRYING": 1, "CANCELLED": 0}
    assert set(stats.counts) == {"PENDING", "PROCESSING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"}
    assert stats.queues["tasks"].in_flight == 1 and stats.sources["counts.FAILED"].exact
    assert not stats.sources["counts.COMPLETED"].exact
    assert stats.throughput is not None and stats.throughput.per_minute.step_seconds == 60
    assert len(stats.throughput.per_minute.series["total"].completed) == 60
    assert client.count("FAILED") == 1


def test_stuck_reads_a_page_and_follows_its_cursor(client: Client, fake: FakeApi) -> None:
    for n in range(3):
        fake.add_stuck(f"stuck-{n}", "PROCESSING", "lease expired", "2026-11-25T12:00:00Z")
    fake.stuck_page = 2

    first = client.stuck()
    rest = client.stuck(cursor=first.next)

    assert [t.id for t in first.tasks] == ["stuck-0", "stuck-1"] and first.next
    assert [t.id for t in rest.tasks] == ["stuck-2"] and rest.next is None
    assert first.tasks[0].reason == "lease expired" and first.tasks[0].status == "PROCESSING"


def test_retry_and_cancel_return_the_view_and_raise_conflict_when_they_do_not_apply(
    client: Client, fake: FakeApi
) -> None:
    fake.add("failed", "FAILED", last_error="e")
    fake.add("waiting", "RETRYING", last_error="e", attempts=1)

    assert client.retry("failed").status is Status.PENDING
    assert client.cancel("waiting").status is Status.CANCELLED
    with pytest.raises(Conflict, match="only FAILED or CANCELLED"):
        client.retry("failed")  # PENDING now
    with pytest.raises(NotFound):
        client.cancel("ghost")


def test_retry_with_an_expiry_sends_it(client: Client, fake: FakeApi) -> None:
    fake.add("failed", "FAILED", last_error="e")

    client.retry("failed", expires_in=120)

    assert fake.seen[-1].body == {"expiresInSeconds": 120}


def test_retry_all_failed_sends_the_bulk_body(client: Client, fake: FakeApi) -> None:
    fake.add("f-1", "FAILED", last_error="e")

    dry = client.retry_all_failed(type="simulate", dry_run=True, limit=10)
    done = client.retry_all_failed(updated_since=datetime(2026, 11, 25, 12, tzinfo=UTC))

    assert (dry.dry_run, dry.matched, dry.retried) == (True, ["f-1"], [])
    assert done.retried == ["f-1"]
    assert fake.seen[0].body == {"status": "FAILED", "limit": 10, "dryRun": True, "type": "simulate"}
    assert fake.seen[1].body["updatedSince"] == "2026-11-25T12:00:00+00:00"


def test_types_and_their_pause_and_resume(client: Client, fake: FakeApi) -> None:
    assert [t.name for t in client.types()] == ["checksum", "simulate"]

    paused = client.pause_type("checksum")
    again = client.pause_type("checksum")
    detail = client.task_type("checksum")
    resumed = client.resume_type("checksum")

    assert paused.paused and paused.changed and paused.paused_by == "anonymous"
    assert again.changed is False
    assert [(c.action, c.changed) for c in detail.history] == [("pause", True), ("pause", False)]
    assert resumed.paused is False
    with pytest.raises(NotFound):
        client.task_type("ghost")


def test_create_schedule_sends_the_contracts_body(client: Client, fake: FakeApi) -> None:
    made = client.create_schedule(
        "nightly",
        "checksum",
        {"text": "x"},
        cron="0 9 * * MON-FRI",
        timezone="Europe/Berlin",
        overlap="buffer_one",
        catchup_window_seconds=600,
        paused=True,
    )

    assert fake.seen[-1].body == {
        "id": "nightly",
        "type": "checksum",
        "payload": {"text": "x"},
        "cron": "0 9 * * MON-FRI",
        "timezone": "Europe/Berlin",
        "overlap": "buffer_one",
        "catchupWindowSeconds": 600,
        "paused": True,
    }
    assert (made.id, made.cron, made.timezone, made.paused) == ("nightly", "0 9 * * MON-FRI", "Europe/Berlin", True)
    with pytest.raises(Conflict):
        client.create_schedule("nightly", "checksum", {"text": "x"}, rate="15 minutes")


def test_schedules_are_listed_shown_updated_paused_resumed_and_deleted(client: Client, fake: FakeApi) -> None:
    fake.add_schedule("hourly")
    fake.add_schedule("a b/c")

    listed = client.schedules()
    assert [s.id for s in listed] == ["a b/c", "hourly"]
    assert listed[0].next_firing == datetime(2026, 11, 25, 13, tzinfo=UTC) and listed[0].last_firing is None
    assert fake.seen[-1].path == "/schedules?limit=100"
    shown = client.schedule("a b/c")
    assert fake.seen[-1].path == "/schedules/a%20b%2Fc"
    assert shown.next_firings[0] == datetime(2026, 11, 25, 13, tzinfo=UTC) and len(shown.next_firings) == 5
    assert shown.last_firing is None and shown.counts.fired == 0 and shown.source == "api"
    assert [change.kind for change in shown.history] == ["created"]

    updated = client.update_schedule("hourly", "checksum", {"text": "y"}, rate="5 minutes")
    assert (fake.seen[-1].method, updated.rate, updated.payload) == ("PUT", "5 minutes", {"text": "y"})
    assert client.pause_schedule("hourly").paused is True
    assert client.resume_schedule("hourly").paused is False
    client.delete_schedule("hourly")
    assert fake.seen[-1].method == "DELETE" and "hourly" not in fake.schedules
    with pytest.raises(NotFound):
        client.schedule("hourly")


def test_trigger_returns_the_view_of_the_task_it_fired_and_backfill_the_apis_answer(
    client: Client, fake: FakeApi
) -> None:
    fake.add_schedule("hourly")

    fired = client.trigger_schedule("hourly")
    backfilled = client.backfill_schedule(
        "hourly", datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
    )

    assert fired.id.startswith("hourly@") and fired.id.endswith(".manual") and fired.type == "checksum"
    assert client.schedule("hourly").last_firing is not None
    assert fake.seen[-2].body == {"from": "2026-11-24T00:00:00+00:00", "to": "2026-11-25T00:00:00+00:00"}
    assert backfilled.schedule_id == "hourly"
    assert [(f.task_id, f.duplicate) for f in backfilled.published] == [("hourly@2026-11-24T00:00:00+00:00", False)]


def test_schedules_follows_the_cursor_through_every_page(client: Client, fake: FakeApi) -> None:
    for n in range(5):
        fake.add_schedule(f"s-{n}")

    listed = client.schedules(page_size=2)

    assert [s.id for s in listed] == [f"s-{n}" for n in range(5)]
    assert [seen.path for seen in fake.seen] == [
        "/schedules?limit=2",
        "/schedules?limit=2&cursor=fake-2",
        "/schedules?limit=2&cursor=fake-4",
    ]
