"""taskctl shows a task's expiry: its `startBy`, and the `expired` entry that is no one's action."""

from __future__ import annotations

from click.testing import CliRunner

from taskctl.cli import EXIT_OK, cli
from tests.cli.fake_api import FakeApi

START_BY = "2026-12-01T09:00:10.000Z"


def test_show_prints_the_start_by_and_an_expired_entry_without_an_actor(fake: FakeApi) -> None:
    task = fake.add("stale", "CANCELLED", attempts=0)
    task.update(
        startBy=START_BY,
        lastError="expired before it started",
        history=[{"kind": "expired", "at": "2026-12-01T09:00:11.000Z"}],
    )

    result = CliRunner().invoke(cli, ["--url", fake.url, "show", "stale"], prog_name="taskctl")

    assert result.exit_code == EXIT_OK, result.output
    assert "start by" in result.stdout and "09:00:10" in result.stdout
    assert "expired" in result.stdout and "expired before it started" in result.stdout
    assert "None" not in result.stdout


def test_retry_sends_no_body_so_the_retried_task_gets_no_expiry(fake: FakeApi) -> None:
    fake.add("doomed", "FAILED", last_error="boom")

    result = CliRunner().invoke(cli, ["--url", fake.url, "retry", "doomed"], prog_name="taskctl")

    assert result.exit_code == EXIT_OK, result.output
    assert (fake.seen[-1].method, fake.seen[-1].body) == ("POST", None)
