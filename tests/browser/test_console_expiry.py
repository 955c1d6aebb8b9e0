"""The console shows a task's expiry: its start-by time, and the expired entry that is no one's action."""

from __future__ import annotations

from taskctl.console import ConsoleServer
from tests.browser.conftest import Expect, Watched
from tests.cli.fake_api import FakeApi


def test_an_expired_task_shows_its_start_by_and_an_expiry_without_an_actor(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    task = fake.add("stale", "CANCELLED", attempts=0)
    task.update(
        startBy="2026-12-01T09:00:10.000Z",
        lastError="expired before it started",
        history=[{"kind": "expired", "at": "2026-12-01T09:00:11.000Z"}],
    )
    page = watched.page

    page.goto(console.url + "#/task/stale")

    expect(page.locator("#task-status")).to_have_text("CANCELLED")
    entry = page.locator("#task-history li")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("Expired before it started")
    expect(entry).not_to_contain_text("by ")
    expect(entry).not_to_contain_text("was ")
    expect(page.locator("#task-facts div", has_text="Start by").locator("dd")).not_to_have_text("-")
    assert watched.errors == []
