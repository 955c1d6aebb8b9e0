"""The console page in Chromium against a fake API: what it shows, what its buttons do, how it fails."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from taskctl.client import ApiClient
from taskctl.console import ConsoleServer
from tests.browser.conftest import Expect, Watched, console_process, console_thread
from tests.cli.fake_api import FakeApi, serving
from tests.cli.fake_schedules import FakeScheduleApi
from tests.cli.hostile import HOSTILE_IDS, TERMINAL_ESCAPES
from tests.e2e.stack import free_port


@pytest.fixture
def fake(no_aws: None) -> Iterator[FakeApi]:
    with serving(FakeScheduleApi()) as api:  # the page reads the schedules too
        yield api


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_the_overview_shows_counts_queues_and_the_failed_tasks_errors(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("t-old", "FAILED", last_error="disk full")
    fake.add("t-new", "FAILED", last_error="simulated failure")
    fake.add("t-wait", "RETRYING", last_error="timeout", attempts=1)
    page = watched.page

    page.goto(console.url)

    expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("2")
    expect(page.locator('#counts [data-status="RETRYING"] dd')).to_have_text("1")
    expect(page.locator('#counts [data-status="CANCELLED"] dd')).to_have_text("0")
    expect(page.locator('#queues tr[data-queue="tasks"] td').first).to_have_text("2")
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("th")).to_have_text("t-new")  # newest first
    expect(rows.nth(0)).to_contain_text("simulated failure")
    expect(rows.nth(1)).to_contain_text("disk full")
    expect(page.locator("#api-url")).to_have_text(fake.url)
    assert watched.errors == []


def test_the_lists_switch_and_page_through_next_cursor(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    for n in range(25):
        fake.add(f"c-{n:02}", "CANCELLED")
    page = watched.page

    page.goto(console.url + "#/list/CANCELLED")

    expect(page.locator("#list-title")).to_have_text("Cancelled tasks")
    expect(page.get_by_role("link", name="Cancelled", exact=True)).to_have_attribute("aria-current", "page")
    expect(page.locator("#tasks tbody tr")).to_have_count(20)
    expect(page.locator("#tasks tbody tr").first.locator("th")).to_have_text("c-24")
    page.get_by_role("button", name="Older").click()
    expect(page.locator("#tasks tbody tr")).to_have_count(5)
    expect(page.locator("#tasks tbody tr").last.locator("th")).to_have_text("c-00")
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_role("button", name="Newest").click()
    expect(page.locator("#tasks tbody tr")).to_have_count(20)
    assert watched.errors == []


def test_one_task_shows_payload_result_and_a_timeline_and_can_be_retried(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("t-1", "FAILED", last_error="simulated failure", attempts=2)
    page = watched.page
    page.goto(console.url)

    page.get_by_role("link", name="t-1").click()

    expect(page.locator("#task-id")).to_have_text("t-1")
    expect(page.locator("#task-status")).to_have_text("FAILED")
    expect(page.locator("#task-payload")).to_contain_text('"message": "ERROR"')
    expect(page.locator("#task-result")).to_have_text("none")  # it failed: no result will come
    timeline = page.locator("#task-history li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(1)).to_contain_text("Attempt 2")
    expect(timeline.nth(1)).to_contain_text("failed")
    expect(timeline.nth(1)).to_contain_text("ran 0.00 s")
    expect(timeline.nth(1)).to_contain_text("simulated failure")

    page.locator("#task").get_by_role("button", name="Retry").click()

    expect(page.locator("#message")).to_have_text('Retry accepted (202): task "t-1" is now PENDING.')
    expect(page.locator("#task-status")).to_have_text("PENDING")
    expect(timeline.last).to_contain_text("Retried by anonymous (was FAILED)")
    expect(page.locator("#task-result")).to_have_text("none yet")  # running again, it may still come
    expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("0")
    assert fake.tasks["t-1"]["status"] == "PENDING"
    assert watched.errors == []


def test_a_running_tasks_progress_is_a_bar(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("long", "PROCESSING", attempts=1)["progress"] = {"done": 3, "total": 12}
    fake.add("odd", "PROCESSING", attempts=1)["progress"] = {"stage": "<b>resize</b>"}
    page = watched.page
    page.goto(console.url + "#/task/long")
    bar = page.locator('[data-fact="progress"] progress')
    expect(bar).to_have_attribute("value", "3")
    expect(bar).to_have_attribute("max", "12")
    expect(page.locator('[data-fact="progress"] dd')).to_contain_text("3 of 12")

    page.goto(console.url + "#/task/odd")
    expect(page.locator('[data-fact="progress"] dd')).to_have_text('{"stage":"<b>resize</b>"}')  # text, not markup
    assert page.locator('[data-fact="progress"] b').count() == 0
    assert watched.uncaught() == []


def test_an_action_refused_because_the_task_moved_meanwhile_shows_the_apis_reason(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("quick", "PENDING", attempts=0)
    page = watched.page
    page.goto(console.url + "#/task/quick")
    expect(page.locator("#task-status")).to_have_text("PENDING")
    fake.finish("quick", "COMPLETED", result={"ok": True})  # behind the page's back, before its next refresh

    page.locator("#task").get_by_role("button", name="Cancel").click()

    expect(page.locator("#message")).to_have_text(
        'Refused (409) while cancelling task "quick": task quick is COMPLETED, which is final.'
    )
    expect(page.locator("#task-status")).to_have_text("COMPLETED")
    expect(page.locator("#task").get_by_role("button", name="Cancel")).to_be_hidden()
    assert watched.uncaught() == []


def test_cancel_from_the_retrying_list(watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer) -> None:
    fake.add("waiting", "RETRYING", last_error="boom", attempts=1)
    page = watched.page
    page.goto(console.url + "#/list/RETRYING")

    page.get_by_role("button", name="Cancel task waiting").click()

    expect(page.locator("#message")).to_have_text('Cancelled (200): task "waiting" is now CANCELLED.')
    expect(page.locator("#tasks tbody tr")).to_have_count(0)
    expect(page.locator("#tasks-empty")).to_have_text("No RETRYING tasks.")
    assert fake.tasks["waiting"]["status"] == "CANCELLED"
    assert watched.errors == []


def test_retry_all_failed_confirms_how_many_first(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    for n in range(3):
        fake.add(f"f-{n}", "FAILED", last_error="e")
    page = watched.page
    page.goto(console.url)
    expect(page.locator("#tasks tbody tr")).to_have_count(3)

    page.get_by_role("button", name="Retry all failed…").click()
    dialog = page.get_by_role("dialog", name="Retry all failed tasks?")
    expect(dialog).to_contain_text("3 FAILED task(s) will start over")
    dialog.get_by_role("button", name="Keep them").click()

    expect(page.locator("#message")).to_have_text("Nothing was retried.")
    assert {t["status"] for t in fake.tasks.values()} == {"FAILED"}
    assert [s.body["dryRun"] for s in fake.seen if s.path == "/retries"] == [True]

    page.get_by_role("button", name="Retry all failed…").click()
    dialog.get_by_role("button", name="Retry 3 task(s)").click()

    expect(page.locator("#message")).to_have_text("Retried 3 task(s).")
    expect(page.locator("#tasks-empty")).to_have_text("No FAILED tasks.")
    assert {t["status"] for t in fake.tasks.values()} == {"PENDING"}
    assert watched.errors == []


def test_search_by_id_and_a_task_that_does_not_exist(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("needle", "CANCELLED")
    page = watched.page
    page.goto(console.url)

    page.get_by_label("Task id").fill("needle")
    page.get_by_role("button", name="Show task").click()
    expect(page.locator("#task-status")).to_have_text("CANCELLED")

    page.get_by_label("Task id").fill("vanished")
    page.get_by_role("button", name="Show task").click()

    expect(page.get_by_role("alert")).to_have_text(
        'Task "vanished" was not found (404): it never existed, or it finished long ago and was removed.'
    )
    expect(page.locator("#task")).to_be_hidden()
    assert watched.uncaught() == []


def test_text_from_the_api_is_shown_as_text_never_as_markup(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    sneaky = "<img src=x onerror=\"document.title='owned'\">"
    fake.add(sneaky, "FAILED", last_error="<b>bold</b>")
    page = watched.page
    page.goto(console.url)

    expect(page.locator("#tasks tbody th")).to_have_text(sneaky)
    expect(page.locator("#tasks tbody td.error-text")).to_have_text("<b>bold</b>")
    assert page.locator("#tasks img, #tasks b").count() == 0
    assert page.title() == "taskproc console"


def test_an_api_that_is_down_is_said_in_words(watched: Watched, expect: Expect, no_aws: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with console_thread(ApiClient(dead)) as server:
        page = watched.page
        page.goto(server.url)

        expect(page.get_by_role("alert")).to_contain_text(
            f"Cannot reach the API while reading the counts: cannot reach the API at {dead}"
        )
        expect(page.locator("h1")).to_have_text("taskproc console")
    assert watched.uncaught() == []


def test_a_403_from_the_stage_is_said_in_words(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.fail_with = 403
    page = watched.page

    page.goto(console.url)

    expect(page.get_by_role("alert")).to_contain_text(
        "The API refused access while reading the counts (403): the console's AWS credentials are missing"
    )
    assert watched.uncaught() == []


def test_a_console_server_that_stopped_is_said_in_words_until_it_is_back(
    watched: Watched, expect: Expect, fake: FakeApi
) -> None:
    page = watched.page
    with console_process(fake.url) as console:
        page.goto(console.url)
        expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("0")
        console.stop()

        expect(page.get_by_role("alert")).to_have_text(
            "Cannot reach the console server (taskctl console): is it still running?"
        )
    fake.add("t-1", "FAILED", last_error="e")
    with console_process(fake.url, port=int(console.url.rsplit(":", 1)[1].strip("/"))):
        # A new console makes a new token: the old page is told to reload, and then works.
        expect(page.get_by_role("alert")).to_contain_text(
            "The console server was restarted since this page was loaded: reload the page."
        )
        page.reload()
        expect(page.get_by_role("alert")).to_be_hidden()
        expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("1")
    assert watched.uncaught() == []


def test_cancelling_a_running_task_says_the_attempt_finishes_first(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("busy", "PROCESSING", attempts=1)
    page = watched.page
    page.goto(console.url + "#/task/busy")
    expect(page.locator("#task-status")).to_have_text("PROCESSING")

    page.locator("#task").get_by_role("button", name="Cancel").click()

    expect(page.locator("#message")).to_have_text(
        'Cancel requested; the running attempt finishes first (202): task "busy" is now PROCESSING.'
    )
    expect(page.locator("#task-history li").last).to_contain_text("Cancel requested by anonymous (was PROCESSING)")
    expect(page.locator("#task-facts div", has_text="Cancel requested").locator("dd")).to_have_text("yes")
    assert watched.errors == []


@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=["terminal-escapes", "rich-markup"])
def test_hostile_ids_are_shown_as_exactly_their_text(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer, hostile: str
) -> None:
    fake.add(hostile, "FAILED", last_error=hostile)
    page = watched.page
    page.goto(console.url)

    head = page.locator("#tasks tbody th")
    expect(head).to_have_count(1)
    shown = head.evaluate(
        "th => [th.textContent, th.children.length,"
        " [...th.firstElementChild.children].filter(c => c.tagName !== 'WBR').length]"
    )
    error = page.locator("#tasks tbody td.error-text").evaluate("td => [td.textContent, td.children.length]")
    assert shown == [hostile, 1, 0]  # one link, and nothing made from the id inside it but break points
    assert error == [hostile, 0]
    assert page.locator('a[href^="https:"], b, strong.red').count() == 0
    assert page.title() == "taskproc console"


def test_a_hostile_id_opened_on_its_own_is_its_exact_text(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add(TERMINAL_ESCAPES, "FAILED", last_error=TERMINAL_ESCAPES)
    page = watched.page

    page.goto(console.url + "#/task/" + quote(TERMINAL_ESCAPES, safe=""))

    expect(page.locator("#task-status")).to_have_text("FAILED")
    assert page.locator("#task-id").evaluate(
        "code => [code.textContent, [...code.children].filter(c => c.tagName !== 'WBR').length]"
    ) == [TERMINAL_ESCAPES, 0]
    # Inside the facts only the page's own nodes (times, the error's span), each holding nothing but text.
    made = (
        "dl => [...dl.querySelectorAll('dd *')].filter(n => !['TIME', 'SPAN'].includes(n.tagName) || n.children.length)"
    )
    assert page.locator("#task-facts").evaluate(made + ".length") == 0
    expect(page.locator("#task-facts div", has_text="Last error").locator("dd")).to_have_text(TERMINAL_ESCAPES)
    assert page.title() == "taskproc console"
