"""Schedules through the client and `taskctl schedules` against `make run`'s stack over real HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from taskproc_client import Client, NotFound, Status, ValidationFailed

from taskctl.cli import EXIT_OK, cli
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(stack: Stack) -> Client:
    return Client(stack.api.base_url)


def test_a_schedule_is_created_shown_listed_paused_resumed_and_deleted(client: Client) -> None:
    schedule_id = f"every-hour-{time.time_ns()}"

    made = client.create_schedule(schedule_id, "checksum", {"text": "tick"}, rate="1 hour", overlap="allow")

    assert (made.id, made.rate, made.overlap, made.source) == (schedule_id, "1 hour", "allow", "api")
    shown = client.schedule(schedule_id)
    assert len(shown.next_firings) == 5 and shown.next_firings == sorted(shown.next_firings)
    assert shown.next_firings[0] > datetime.now(UTC)
    assert schedule_id in {summary.id for summary in client.schedules()}
    assert client.pause_schedule(schedule_id).paused is True
    assert client.resume_schedule(schedule_id).paused is False
    client.delete_schedule(schedule_id)
    with pytest.raises(NotFound):
        client.schedule(schedule_id)


def test_a_payload_its_type_refuses_is_refused_at_creation(client: Client) -> None:
    with pytest.raises(ValidationFailed) as refused:
        client.create_schedule(f"bad-{time.time_ns()}", "checksum", {"txt": "typo"}, cron="0 9 * * *")

    assert any(error["field"].startswith("payload") for error in refused.value.errors)


def test_taskctl_schedules_trigger_fires_once_and_the_task_runs(stack: Stack, client: Client) -> None:
    schedule_id = f"manual-{time.time_ns()}"
    client.create_schedule(schedule_id, "checksum", {"text": "now"}, cron="0 9 * * *", timezone="Europe/Berlin")

    result = CliRunner().invoke(cli, ["--url", stack.api.base_url, "schedules", "trigger", schedule_id])

    assert result.exit_code == EXIT_OK, result.output
    fired = result.stdout.split("fired ", 1)[1].split(",")[0]
    assert fired.startswith(f"{schedule_id}@") and fired.endswith(".manual")
    assert client.wait(fired, timeout=60).status is Status.COMPLETED
    last = client.schedule(schedule_id).last_firing
    assert last is not None and last.task_id == fired
    assert client.schedule(schedule_id).counts.fired == 1


def test_a_backfill_fires_each_past_firing_once(client: Client) -> None:
    schedule_id = f"backfill-{time.time_ns()}"
    client.create_schedule(schedule_id, "checksum", {"text": "past"}, rate="15 minutes")
    end = datetime.now(UTC) - timedelta(minutes=1)

    first = client.backfill_schedule(schedule_id, end - timedelta(hours=1), end)
    again = client.backfill_schedule(schedule_id, end - timedelta(hours=1), end)

    assert 4 <= len(first.published) <= 5
    assert all(f.task_id.startswith(f"{schedule_id}@") and not f.duplicate for f in first.published)
    assert [f.task_id for f in again.published] == [f.task_id for f in first.published]
    assert all(f.duplicate for f in again.published)
