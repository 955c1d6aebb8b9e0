"""The console's task types in Chromium against a fake API: the table; pause and resume, confirmed and said in words."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskctl.console import ConsoleServer
from tests.browser.conftest import Expect, Watched
from tests.cli.fake_api import FakeApi, serving, type_entry
from tests.cli.fake_schedules import FakeScheduleApi


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with serving(FakeScheduleApi()) as api:  # the page reads the schedules too
        api.types["capped"] = type_entry("capped", {"concurrency": 5, "maxAttempts": 2}, running=3)
        yield api


def test_the_types_table_shows_state_running_over_cap_and_options(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.types["checksum"].update(paused=True, pausedBy="arn:aws:iam::1:user/alice", pausedAt="2026-12-01T10:00:00Z")
    page = watched.page

    page.goto(console.url)

    capped = page.locator('#types tr[data-type="capped"] td')
    expect(capped.nth(0)).to_have_text("Running")
    expect(capped.nth(1)).to_have_text("3/5")
    expect(capped.nth(2)).to_have_text("concurrency=5 maxAttempts=2")
    checksum = page.locator('#types tr[data-type="checksum"]')
    expect(checksum.locator("td").nth(0)).to_contain_text("Paused by arn:aws:iam::1:user/alice at 2026-12-01 10:00:00")
    expect(checksum.get_by_role("button")).to_have_text("Resume")
    expect(page.locator('#types tr[data-type="simulate"] td').nth(1)).to_have_text("-")
    assert watched.errors == []


def test_pause_is_confirmed_first_answered_in_words_and_then_offers_resume(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)

    page.get_by_role("button", name="Pause type capped").click()
    dialog = page.get_by_role("dialog", name='Pause task type "capped"?')
    expect(dialog).to_contain_text("publishing still accepts its tasks")
    dialog.get_by_role("button", name="Keep it running").click()

    expect(page.locator("#message")).to_have_text('Nothing was changed: task type "capped" is as it was.')
    assert fake.types["capped"]["paused"] is False
    assert not [s for s in fake.seen if s.method == "POST"]

    page.get_by_role("button", name="Pause type capped").click()
    dialog.get_by_role("button", name="Pause capped").click()

    expect(page.locator("#message")).to_contain_text('Paused (200): task type "capped" starts no attempt from ')
    expect(page.locator('#types tr[data-type="capped"] td').nth(0)).to_contain_text("Paused by anonymous")
    assert fake.types["capped"]["paused"] is True

    page.get_by_role("button", name="Resume type capped").click()
    page.get_by_role("dialog", name='Resume task type "capped"?').get_by_role("button", name="Resume capped").click()

    expect(page.locator("#message")).to_have_text(
        'Resumed (200): task type "capped" runs again (consumers see it within 5 s).'
    )
    expect(page.locator('#types tr[data-type="capped"] td').nth(0)).to_have_text("Running")
    assert [(s.method, s.path) for s in fake.seen if s.method == "POST"] == [
        ("POST", "/types/capped/pause"),
        ("POST", "/types/capped/resume"),
    ]
    assert watched.errors == []


def test_a_pause_that_changed_nothing_says_so(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)
    expect(page.get_by_role("button", name="Pause type checksum")).to_be_visible()
    fake.types["checksum"].update(paused=True, pausedBy="bob", pausedAt="2026-12-01T10:00:00Z")  # behind the page

    page.get_by_role("button", name="Pause type checksum").click()
    page.get_by_role("dialog").get_by_role("button", name="Pause checksum").click()

    expect(page.locator("#message")).to_have_text(
        'Nothing changed (200): task type "checksum" was already paused by bob at 2026-12-01 10:00:00 UTC.'
    )
    assert watched.errors == []


def test_a_type_gone_from_the_api_is_said_in_words(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)
    expect(page.get_by_role("button", name="Pause type capped")).to_be_visible()
    del fake.types["capped"]  # a deploy removed it after the page listed it

    page.get_by_role("button", name="Pause type capped").click()
    page.get_by_role("dialog").get_by_role("button", name="Pause capped").click()

    expect(page.locator("#message")).to_contain_text(
        "The API answered 404 while pausing task type \"capped\": no task type is named 'capped'"
    )
    assert watched.uncaught() == []


def test_type_names_and_principals_are_shown_as_text(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    sneaky = "<img src=x onerror=\"document.title='owned'\">"
    fake.types[sneaky] = type_entry(sneaky, {sneaky: "<b>x</b>"})
    fake.types[sneaky].update(paused=True, pausedBy="<b>bold</b>", pausedAt="2026-12-01T10:00:00Z")
    page = watched.page

    page.goto(console.url)

    row = page.locator("#types tbody tr").filter(has_text="onerror")
    expect(row.locator("th")).to_have_text(sneaky)
    expect(row.locator("td").nth(0)).to_contain_text("Paused by <b>bold</b>")
    expect(row.locator("td").nth(2)).to_have_text(f"{sneaky}=<b>x</b>")
    assert page.locator("#types img, #types b").count() == 0
    assert page.title() == "taskproc console"
