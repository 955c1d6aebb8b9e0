"""The console's schedules in Chromium against a fake API: the table, in wide and narrow windows; pause, resume
and trigger, confirmed and answered in words; the summed counters in the overview; text from the API as text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Locator, Page

from taskctl.console import ConsoleServer
from tests.browser.conftest import SEEN_WITHIN_MS, Expect, Watched
from tests.cli.fake_api import serving
from tests.cli.fake_schedules import FakeScheduleApi, schedule_view
from tests.cli.hostile import RICH_MARKUP, TERMINAL_ESCAPES

WIDTHS = (1280, 800)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeScheduleApi]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with serving(FakeScheduleApi()) as api:
        api.add("nightly@2026-12-01T08:00:00Z", "COMPLETED", attempts=1)
        api.schedules["nightly"] = schedule_view(
            "nightly",
            last_firing={"at": "2026-12-01T08:00:00Z", "taskId": "nightly@2026-12-01T08:00:00Z", "status": "COMPLETED"},
            last_skip={"at": "2026-12-02T08:00:00Z", "waitingOn": "nightly@2026-12-01T08:00:00Z"},
            counts={"fired": 12, "skipped": 2, "caughtUp": 3, "missed": 1},
        )
        api.schedules["new-york"] = schedule_view(
            "new-york",
            "checksum",
            cron="0 9 * * *",
            timezone="America/New_York",
            next_firings=["2027-07-01T13:00:00Z", "2027-07-02T13:00:00Z"],
            counts={"fired": 5, "refused": 4},
            last_error="payload no longer valid for checksum",
            source="code",
        )
        api.schedules["quarterly"] = schedule_view("quarterly", rate="15 minutes", timezone="UTC", paused=True)
        yield api


def row(page: Page, schedule_id: str) -> Locator:
    return page.locator(f'#schedules tbody tr[data-schedule="{schedule_id}"]')


def cell(page: Page, schedule_id: str, label: str) -> Locator:
    return row(page, schedule_id).locator(f'td[data-label="{label}"]')


def test_each_schedule_shows_its_timing_next_firing_in_its_zone_and_in_utc_state_last_firing_and_counts(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#schedules tbody tr")).to_have_count(3)
    expect(cell(page, "nightly", "When")).to_contain_text("cron 0 9 * * MON-FRI")
    expect(cell(page, "nightly", "When")).to_contain_text("Europe/Berlin")
    expect(cell(page, "nightly", "When")).to_contain_text("overlap skip, catch-up 3600 s")
    # 08:00 UTC is 09:00 in Berlin in December (UTC+1), 13:00 UTC 09:00 in New York in July (UTC-4).
    expect(cell(page, "nightly", "Next firing").locator(".next-local")).to_have_text(
        "2026-12-02 09:00:00 GMT+01:00 Europe/Berlin"
    )
    expect(cell(page, "nightly", "Next firing").locator(".next-utc")).to_have_text("2026-12-02 08:00:00 UTC")
    expect(cell(page, "new-york", "Next firing").locator(".next-local")).to_have_text(
        "2027-07-01 09:00:00 GMT-04:00 America/New_York"
    )
    assert cell(page, "new-york", "Next firing").locator(".next-utc").get_attribute("title") == (
        "Then (UTC): 2027-07-02 13:00:00"
    )
    expect(cell(page, "quarterly", "When")).to_contain_text("every 15 minutes")
    expect(cell(page, "quarterly", "Next firing")).to_have_text("none while paused")
    expect(cell(page, "quarterly", "State")).to_have_text("Paused")
    expect(cell(page, "nightly", "State")).to_have_text("Running")
    expect(cell(page, "nightly", "Last firing")).to_contain_text("2026-12-01 08:00:00 UTC COMPLETED")
    expect(cell(page, "quarterly", "Last firing")).to_have_text("never")
    expect(cell(page, "nightly", "Counts")).to_have_text(
        re.compile(r"fired 12\s*skipped 2\s*caught up 3\s*missed 1\s*refused 0")
    )
    expect(cell(page, "new-york", "Counts").locator('[data-counter="refused"]')).to_have_class("error-text")
    expect(cell(page, "new-york", "Last error")).to_have_text(
        "2026-12-01 07:00:00 UTC: payload no longer valid for checksum (payload.data: Field required)"
    )
    expect(cell(page, "new-york", "When")).to_contain_text("declared in the code")
    expect(cell(page, "nightly", "Last firing").locator(".skip")).to_have_text(
        "skipped 2026-12-02 08:00:00 UTC: waiting on nightly@2026-12-01T08:00:00Z"
    )
    expect(cell(page, "nightly", "Last error")).to_have_text("-")

    cell(page, "nightly", "Last firing").locator("div:not(.skip) a").click()

    expect(page.locator("#task-id")).to_have_text("nightly@2026-12-01T08:00:00Z")
    expect(page.locator("#task-status")).to_have_text("COMPLETED")
    assert watched.errors == []


def test_only_the_buttons_a_schedules_state_allows_are_offered(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page

    page.goto(console.url)

    expect(cell(page, "nightly", "Action").get_by_role("button")).to_have_text(["Pause", "Trigger"])
    expect(cell(page, "quarterly", "Action").get_by_role("button")).to_have_text(["Resume", "Trigger"])
    assert page.get_by_role("button", name="Pause schedule quarterly").count() == 0
    assert page.get_by_role("button", name="Resume schedule nightly").count() == 0


def test_the_overview_counts_firings_skips_catch_ups_and_refusals_summed_over_schedules(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page

    page.goto(console.url)

    figures = page.locator("#schedule-counts")
    expect(figures.locator('[data-counter="fired"] dd')).to_have_text("17")
    expect(figures.locator('[data-counter="skipped"] dd')).to_have_text("2")
    expect(figures.locator('[data-counter="caughtUp"] dd')).to_have_text("3")
    expect(figures.locator('[data-counter="missed"] dd')).to_have_text("1")
    expect(figures.locator('[data-counter="refused"] dd')).to_have_text("4")
    expect(figures.locator('[data-counter="fired"] dt')).to_have_text("Schedule firings")
    assert figures.locator('[data-counter="fired"] dd').get_attribute("title") == (
        "schedule items' counters, summed over 3 schedules"
    )
    assert watched.errors == []


def test_a_trigger_is_confirmed_first_then_answered_with_the_task_it_created(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)

    page.get_by_role("button", name="Trigger schedule nightly").click()
    dialog = page.get_by_role("dialog", name='Trigger schedule "nightly" now?')
    expect(dialog).to_contain_text('a task of type "simulate" with the schedule\'s payload, id "nightly@<now, UTC>')
    dialog.get_by_role("button", name="Do not trigger").click()

    expect(page.locator("#message")).to_have_text('Nothing was done: schedule "nightly" is as it was.')
    assert not [s for s in fake.seen if s.method == "POST"]

    page.get_by_role("button", name="Trigger schedule nightly").click()
    dialog.get_by_role("button", name="Trigger nightly").click()

    message = page.locator("#message")
    manual = r"nightly@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.manual"
    expect(message).to_have_text(re.compile(rf'^Triggered: task "{manual}" created'))
    expect(message).to_contain_text("(201, PENDING)")
    [triggered] = [s for s in fake.seen if s.method == "POST"]
    assert triggered.path == "/schedules/nightly/trigger"
    task_id = fake.schedules["nightly"]["lastFiring"]["taskId"]
    expect(cell(page, "nightly", "Last firing")).to_contain_text(task_id)
    expect(cell(page, "nightly", "Counts").locator('[data-counter="fired"]')).to_have_text("fired 13")

    message.get_by_role("link", name=task_id).click()

    expect(page.locator("#task-id")).to_have_text(task_id)
    expect(page.locator("#task-status")).to_have_text("PENDING")
    assert watched.errors == []


def test_pause_and_resume_are_confirmed_answered_in_words_and_swap_the_button(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)

    page.get_by_role("button", name="Pause schedule nightly").click()
    dialog = page.get_by_role("dialog", name='Pause schedule "nightly"?')
    expect(dialog).to_contain_text("firings missed inside its catch-up window (3600 s) fire once each, oldest first")
    dialog.get_by_role("button", name="Keep it running").click()
    expect(page.locator("#message")).to_have_text('Nothing was done: schedule "nightly" is as it was.')
    assert fake.schedules["nightly"]["paused"] is False

    page.get_by_role("button", name="Pause schedule nightly").click()
    dialog.get_by_role("button", name="Pause nightly").click()

    expect(page.locator("#message")).to_have_text(
        'Paused (200): schedule "nightly" fires nothing until it is resumed; then its firings missed inside its '
        "catch-up window (3600 s) fire once each, and older ones are counted as missed."
    )
    expect(cell(page, "nightly", "State")).to_have_text("Paused")
    expect(cell(page, "nightly", "Action").get_by_role("button")).to_have_text(["Resume", "Trigger"])

    page.get_by_role("button", name="Resume schedule nightly").click()
    page.get_by_role("dialog", name='Resume schedule "nightly"?').get_by_role("button", name="Resume nightly").click()

    expect(page.locator("#message")).to_have_text(
        'Resumed (200): schedule "nightly" fires again; next at 2026-12-02 08:00:00 UTC.'
    )
    expect(cell(page, "nightly", "State")).to_have_text("Running")
    posted = [s.path for s in fake.seen if s.method == "POST"]
    assert posted == ["/schedules/nightly/pause", "/schedules/nightly/resume"]
    assert watched.errors == []


def test_a_schedule_deleted_since_the_page_listed_it_is_said_in_words(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    page = watched.page
    page.goto(console.url)
    expect(page.get_by_role("button", name="Trigger schedule nightly")).to_be_visible()
    del fake.schedules["nightly"]  # deleted with taskctl after the page listed it

    page.get_by_role("button", name="Trigger schedule nightly").click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger nightly").click()

    expect(page.locator("#message")).to_have_text(
        "The API answered 404 while triggering schedule \"nightly\": no schedule with id 'nightly'."
    )
    expect(page.locator("#schedules tbody tr")).to_have_count(2)
    assert watched.uncaught() == []


def test_no_schedules_is_said_in_words_and_is_not_a_problem(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    fake.schedules.clear()
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#schedules-empty")).to_be_visible()
    expect(page.locator("#schedules-empty")).to_contain_text("No schedules")
    expect(page.locator("#problem")).to_be_hidden()
    expect(page.locator('#types tr[data-type="checksum"]')).to_be_visible()


SNEAKY = "<img src=x onerror=\"document.title='owned'\">"


def hostile_schedule(fake: FakeScheduleApi, hostile: str) -> None:
    fake.schedules.clear()
    fake.schedules[hostile] = schedule_view(
        hostile,
        hostile,
        cron=hostile,
        timezone=hostile,
        last_firing={"at": "2026-12-01T08:00:00Z", "taskId": hostile, "status": "<b>FAILED</b>"},
        last_error=hostile,
    )


@pytest.mark.parametrize("hostile", [TERMINAL_ESCAPES, SNEAKY], ids=["terminal-escapes", "html"])
def test_hostile_ids_types_zones_and_errors_are_shown_as_exactly_their_text(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer, hostile: str
) -> None:
    hostile_schedule(fake, hostile)
    page = watched.page

    page.goto(console.url)

    head = page.locator("#schedules tbody th")
    expect(head).to_have_count(1)
    assert head.locator("div.mono").evaluate("d => [d.textContent, d.children.length]") == [hostile, 0]
    expect(head.locator("div.muted")).to_have_text(f"type {hostile}")
    expect(page.locator('#schedules td[data-label="When"] div.mono')).to_have_text(f"cron {hostile}")
    expect(page.locator('#schedules td[data-label="Next firing"]')).to_contain_text(
        f"(zone {hostile} unknown to this browser)"
    )
    expect(page.locator('#schedules td[data-label="Last error"]')).to_have_text(
        f"2026-12-01 07:00:00 UTC: {hostile} (payload.data: Field required)"
    )
    expect(page.locator('#schedules td[data-label="Last firing"] a')).to_have_text(hostile)  # the task's link
    expect(page.locator('#schedules td[data-label="Last firing"] .badge')).to_have_text("<b>FAILED</b>")
    assert page.locator("#schedules img, #schedules b, a[href^='https:']").count() == 0
    assert page.title() == "taskproc console"
    assert watched.errors == []


@pytest.mark.parametrize("hostile", [TERMINAL_ESCAPES, SNEAKY], ids=["terminal-escapes", "html"])
def test_a_hostile_id_is_text_in_the_question_and_the_answer_of_a_trigger(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer, hostile: str
) -> None:
    hostile_schedule(fake, hostile)
    page = watched.page
    page.goto(console.url)

    page.locator("#schedules").get_by_role("button", name="Trigger").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#confirm-title")).to_have_text(f'Trigger schedule "{hostile}" now?')
    dialog.locator("#confirm-yes").click()

    expect(page.locator("#message")).to_contain_text(f'Triggered: task "{hostile}@')
    expect(page.locator("#message a")).to_have_text(fake.schedules[hostile]["lastFiring"]["taskId"])
    assert [s.path for s in fake.seen if s.method == "POST"] == [f"/schedules/{quote(hostile, safe='')}/trigger"]
    assert page.locator("#confirm img, #message img, #message b").count() == 0
    assert page.title() == "taskproc console"
    assert watched.uncaught() == []


def test_a_schedule_whose_id_holds_a_slash_is_listed_as_text_but_not_forwarded_and_the_page_says_why(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    hostile_schedule(fake, RICH_MARKUP)  # "[/bold red]": the console refuses an encoded slash in a path
    page = watched.page
    page.goto(console.url)

    expect(page.locator("#problem")).to_contain_text(
        f'The API answered 400 while reading schedule "{RICH_MARKUP}": the path holds an encoded slash'
    )
    head = page.locator("#schedules tbody th div.mono")
    expect(head).to_have_text(RICH_MARKUP)
    expect(page.locator('#schedules td[data-label="When"] div.mono')).to_have_text(f"cron {RICH_MARKUP}")

    page.get_by_role("button", name=f"Trigger schedule {RICH_MARKUP}").click()
    page.get_by_role("dialog").locator("#confirm-yes").click()

    expect(page.locator("#message")).to_contain_text(
        f'The API answered 400 while triggering schedule "{RICH_MARKUP}": the path holds an encoded slash'
    )
    expect(page.locator("#message")).to_contain_text("shown by taskctl")
    assert not [s for s in fake.seen if s.method == "POST"]
    assert page.locator("a[href^='https:'], #schedules b").count() == 0


def test_a_schedule_whose_own_view_cannot_be_read_shows_its_summary_and_the_reason(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    fake.fail_paths["/schedules/new-york"] = 503
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#problem")).to_have_text(
        'The API failed while reading schedule "new-york" (503): the fake answers 503. '
        "Its row shows what the list gave."
    )
    expect(cell(page, "new-york", "Next firing").locator(".next-utc")).to_have_text("2027-07-01 13:00:00 UTC")
    expect(cell(page, "new-york", "Counts").locator('[data-counter="refused"]')).to_have_text("refused 4")
    expect(cell(page, "new-york", "Last error")).to_have_text("-")
    expect(cell(page, "nightly", "Last firing")).to_contain_text("COMPLETED")  # the others as ever

    del fake.fail_paths["/schedules/new-york"]

    expect(page.locator("#problem")).to_be_hidden()
    expect(cell(page, "new-york", "Last error")).to_contain_text("payload no longer valid for checksum")
    assert watched.uncaught() == []


def test_more_schedules_than_a_page_are_paged_through_the_cursor(
    watched: Watched, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer
) -> None:
    for n in range(25):
        fake.schedules[f"s-{n:02d}"] = schedule_view(f"s-{n:02d}")
    page = watched.page
    page.goto(console.url)

    rows = page.locator("#schedules tbody tr")
    expect(rows).to_have_count(20)
    expect(rows.first.locator("th div.mono")).to_have_text("new-york")
    expect(page.locator("#schedules-page")).to_have_text("page 1")

    page.get_by_role("button", name="Next page").click()

    expect(rows).to_have_count(8)
    expect(page.locator("#schedules-page")).to_have_text("page 2")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    assert [s.path for s in fake.seen if s.path.startswith("/schedules?")][-1] == "/schedules?limit=20&cursor=20"

    page.get_by_role("button", name="First page").click()

    expect(rows.first.locator("th div.mono")).to_have_text("new-york")
    expect(page.get_by_role("button", name="First page")).to_be_disabled()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_schedules_fit_the_window_at_1280_and_800_pixels(
    browser: Browser, expect: Expect, fake: FakeScheduleApi, console: ConsoleServer, tmp_path: Path, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(SEEN_WITHIN_MS)
        page.goto(console.url + "#/schedules")
        expect(page.locator("#schedules tbody tr")).to_have_count(3)
        expect(cell(page, "nightly", "Next firing").locator(".next-local")).to_be_visible()

        section = page.locator("#schedules-section")
        overflow = section.evaluate("s => s.scrollWidth - s.clientWidth")
        for name in ("Pause schedule nightly", "Trigger schedule nightly", "Resume schedule quarterly"):
            box = page.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)
        narrow = page.locator("#schedules thead").is_hidden()
        page.screenshot(path=str(tmp_path / f"schedules-{width}.png"), full_page=True)
    finally:
        context.close()

    assert overflow <= 0  # nothing wider than its section: no sideways scrolling
    assert narrow is (width < 900)  # cards of labelled lines below 60rem, the table above
    assert (tmp_path / f"schedules-{width}.png").stat().st_size > 0
