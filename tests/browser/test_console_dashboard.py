"""The console's dashboard in Chromium against a fake API: every status counted, the throughput graph
refreshed in place, the per-type figures, the stuck tasks, the buttons the API accepts, times with
their zone, and long values that fit at 1280 and 800 pixels (screenshots of both saved by the run)."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.operate.operations import CANCELLABLE_NOW, RETRYABLE
from taskctl.console import ConsoleServer
from tests.browser.conftest import Expect, Watched, watching
from tests.cli.fake_api import FakeApi, latency, throughput_document, type_entry

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LONG_ID = "invoice-2026-11-25_customer-0000123456.retry@attempt-000000003"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
LONG_ERROR = (
    "ValueError: could not read /var/task/chalicelib/handlers/checksum_of_a_very_long_module_name.py "
    "because the payload field data_that_goes_on_and_on_without_a_single_space_for_a_while was missing"
)


def busy_hour(fake: FakeApi) -> None:
    """An hour of two types' work, with a failure now and then, and their latencies."""
    fake.throughput = throughput_document(
        {
            "checksum": {"completed": [n % 4 for n in range(60)], "failed": [int(n % 7 == 0) for n in range(60)]},
            "simulate": {
                "completed": [(n * 3) % 5 for n in range(60)],
                "failed": [1 if n % 5 == 0 else 0 for n in range(60)],
                "retried": [1 if n % 10 == 0 else 0 for n in range(60)],
                "accepted": [4] * 60,
            },
        },
        {"simulate": latency(40, 120, 300) | {"endToEndMs": {"p50": 800, "p95": 1400, "p99": 2500}}},
    )


def bars(page: Page, kind: str) -> list[dict[str, Any]]:
    """The graph's bar segments of `kind` (completed or failed), as drawn."""
    return list(
        page.locator(f"#throughput-graph rect.{kind}").evaluate_all(
            "rects => rects.map(r => ({type: r.dataset.type, value: Number(r.dataset.value), key: r.dataset.key,"
            " y: Number(r.getAttribute('y')), height: Number(r.getAttribute('height')),"
            " title: r.querySelector('title').textContent}))"
        )
    )


def test_the_overview_counts_every_status_and_says_which_counts_are_approximate(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    for n, status in enumerate(["PENDING", "PROCESSING", "PROCESSING", "COMPLETED", "COMPLETED", "COMPLETED"]):
        fake.add(f"t-{n}", status, attempts=1)
    fake.add("f-1", "FAILED", last_error="boom")
    fake.unknown_counts = {"CANCELLED"}
    page = watched.page

    page.goto(console.url)

    shown = page.locator("#counts > div")
    expect(shown).to_have_count(6)
    assert shown.evaluate_all("groups => groups.map(g => g.dataset.status)") == [
        "PENDING",
        "PROCESSING",
        "RETRYING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    for status, value in {"PENDING": "1", "PROCESSING": "2", "RETRYING": "0", "COMPLETED": "3", "FAILED": "1"}.items():
        expect(page.locator(f'#counts [data-status="{status}"] dd')).to_have_text(value)
    expect(page.locator('#counts [data-status="CANCELLED"] dd')).to_have_text("-")  # null: not known now
    for status in ("PENDING", "PROCESSING", "COMPLETED"):
        expect(page.locator(f'#counts [data-status="{status}"] .approximate')).to_have_text("approximate")
        expect(page.locator(f'#counts [data-status="{status}"] dd')).to_have_attribute(
            "title", "metrics, last 14 days (approximate)"
        )
    expect(page.locator('#counts [data-status="FAILED"] .approximate')).to_be_hidden()
    assert watched.errors == []


def test_a_refresh_changes_the_counts_and_the_graph_in_place(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("done-1", "COMPLETED", attempts=1)
    page = watched.page
    page.goto(console.url)
    failed = page.locator('#counts [data-status="FAILED"] dd')
    expect(failed).to_have_text("0")
    expect(page.locator('#throughput-graph rect.completed[data-type="simulate"]')).to_have_attribute("data-value", "1")
    # Marks on the nodes shown now: a page drawn again from scratch would lose them.
    page.evaluate(
        "() => { for (const s of ['#counts [data-status=FAILED] dd', '#throughput-graph',"
        " '#throughput-graph rect.completed', '#types tr[data-type=simulate]']) document.querySelector(s).kept = s; }"
    )
    first_refresh = page.locator("#refreshed").text_content()

    fake.add("done-2", "COMPLETED", attempts=1)
    fake.add("lost-1", "FAILED", last_error="boom")

    expect(failed).to_have_text("1")
    expect(page.locator('#throughput-graph rect.completed[data-type="simulate"]')).to_have_attribute("data-value", "2")
    expect(page.locator('#throughput-graph rect.failed[data-type="simulate"]')).to_have_attribute("data-value", "1")
    kept = page.evaluate(
        "() => ['#counts [data-status=FAILED] dd', '#throughput-graph', '#throughput-graph rect.completed',"
        " '#types tr[data-type=simulate]'].map(s => document.querySelector(s).kept === s)"
    )
    assert kept == [True, True, True, True]
    assert page.locator("#refreshed").text_content() != first_refresh
    assert watched.errors == []


def test_the_graph_stacks_completed_up_and_failed_down_by_type(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.throughput = throughput_document(
        {
            "checksum": {"completed": [2, 0, 1], "failed": [0, 0, 0]},
            "simulate": {"completed": [3, 0, 0], "failed": [0, 2, 0]},
        }
    )
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#throughput-graph rect.completed")).to_have_count(3)
    completed = {bar["key"]: bar for bar in bars(page, "completed")}
    assert {key: bar["value"] for key, bar in completed.items()} == {
        "completed|checksum|57": 2,
        "completed|simulate|57": 3,
        "completed|checksum|59": 1,
    }
    # In one minute the types stack: simulate's segment stands on checksum's, a count is the same height anywhere.
    low, high = completed["completed|checksum|57"], completed["completed|simulate|57"]
    assert high["y"] + high["height"] == pytest.approx(low["y"], abs=0.2)
    assert high["height"] == pytest.approx(low["height"] * 3 / 2, abs=0.2)
    (failure,) = bars(page, "failed")
    assert (failure["key"], failure["value"]) == ("failed|simulate|58", 2)
    baseline = low["y"] + low["height"]
    assert failure["y"] == pytest.approx(baseline, abs=0.2)  # failures hang below the line
    assert failure["height"] == pytest.approx(low["height"], abs=0.2)
    assert failure["title"] == "11:59 simulate: 2 failed"  # the minute's time on the browser's clock (UTC here)
    expect(page.locator("#throughput-legend li")).to_have_text(["checksum", "simulate"])
    expect(page.locator("#throughput-summary")).to_have_text("Last hour: 6 completed, 2 failed (checksum, simulate)")
    expect(page.locator("#throughput-none")).to_be_hidden()
    assert watched.errors == []


def test_an_older_server_without_throughput_or_stuck_tasks_says_so_and_the_rest_works(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.without_throughput = True
    fake.without_stuck = True
    fake.add("f-1", "FAILED", last_error="boom")
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#throughput-none")).to_contain_text("No throughput data")
    expect(page.locator("#throughput-graph")).to_be_hidden()
    expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("1")
    expect(page.locator("#stuck-empty")).to_have_text(
        "This API does not look for stuck tasks (an older server: GET /stuck is missing)."
    )
    expect(page.locator('#types tr[data-type="simulate"] td').nth(3)).to_have_text("-")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    expect(page.get_by_role("alert")).to_be_hidden()
    assert watched.uncaught() == []


def test_the_types_table_shows_each_types_last_hour_rate_p95_and_pause(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    busy_hour(fake)
    fake.types["checksum"].update(paused=True, pausedBy="alice", pausedAt="2026-12-01T10:00:00Z")
    fake.types.pop("simulate")  # listed by the throughput only, as a type removed by a deploy would be
    page = watched.page

    page.goto(console.url)

    simulate = page.locator('#types tbody tr[data-type="simulate"] td')
    expect(simulate.nth(3)).to_have_text("120 completed12 failed6 retried240 accepted")
    expect(simulate.nth(4)).to_have_text("2.0")  # (0 + 3 + 1 + 4 + 2) / 5, the last five minutes
    expect(simulate.nth(5)).to_have_text("attempt 120 ms; end to end 1.4 s")
    expect(simulate.nth(0)).to_have_text("-")  # GET /types does not know it: no pause to show, no button
    expect(simulate.nth(6).get_by_role("button")).to_have_count(0)
    checksum = page.locator('#types tbody tr[data-type="checksum"] td')
    expect(checksum.nth(0)).to_contain_text("Paused by alice")
    expect(checksum.nth(3)).to_contain_text("90 completed9 failed")
    expect(checksum.nth(5)).to_have_text("attempt -; end to end -")
    expect(checksum.nth(6).get_by_role("button")).to_have_text("Resume")
    total = page.locator("#types tfoot tr td")
    expect(page.locator("#types tfoot th")).to_have_text("All types")
    expect(total.nth(3)).to_have_text("210 completed21 failed6 retried240 accepted")
    assert watched.errors == []


def test_stuck_tasks_are_listed_with_why_and_since_and_none_says_so(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("fine", "COMPLETED")
    page = watched.page
    page.goto(console.url)
    expect(page.locator("#stuck-empty")).to_have_text(
        "No stuck tasks: none is PENDING past the dispatch bound or PROCESSING past its lease (1 scanned)."
    )

    fake.add_stuck("lost", "PENDING", "PENDING past the dispatch bound (300 s)", "2026-11-25T11:50:00.000Z")
    fake.add_stuck("hung", "PROCESSING", "PROCESSING past its lease", "2026-11-25T11:55:00.000Z")

    rows = page.locator("#stuck tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#stuck-empty")).to_be_hidden()
    expect(rows.nth(0).locator("td")).to_have_text(
        ["simulate", "PENDING", "PENDING past the dispatch bound (300 s)", "2026-11-25 11:50:00 UTC", "Cancel"]
    )
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("PROCESSING past its lease")
    rows.nth(0).get_by_role("button", name="Cancel task lost").click()
    expect(page.locator("#message")).to_have_text('Cancelled (200): task "lost" is now CANCELLED.')
    rows.nth(1).get_by_role("link", name="hung").click()
    expect(page.locator("#task-status")).to_have_text("PROCESSING")
    assert watched.errors == []


def test_stuck_tasks_are_paged_by_the_apis_next(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.stuck_page = 2
    for n in range(3):
        fake.add_stuck(f"lost-{n}", "PENDING", "PENDING past the dispatch bound", "2026-11-25T11:50:00.000Z")
    page = watched.page
    page.goto(console.url)
    rows = page.locator("#stuck tbody th")
    expect(rows).to_have_text(["lost-0", "lost-1"])

    page.locator("#stuck-next").click()

    expect(rows).to_have_text(["lost-2"])
    expect(page.locator("#stuck-next")).to_be_disabled()
    assert [s.path for s in fake.seen if s.path.startswith("/stuck")][-1] == "/stuck?cursor=fake-2"
    page.locator("#stuck-first").click()
    expect(rows).to_have_text(["lost-0", "lost-1"])
    assert watched.errors == []


def test_the_page_offers_only_the_actions_the_api_accepts(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    # The page's rule is the API's (chalicelib/operate/operations.py): compare the two before trusting either.
    rule = watched.page
    rule.goto(console.url)
    assert rule.evaluate("[RETRYABLE, CANCELLABLE]") == [
        [s.value for s in RETRYABLE],
        [s.value for s in CANCELLABLE_NOW] + ["PROCESSING"],
    ]
    fake.add("pending", "PENDING", attempts=0)
    fake.add("running", "PROCESSING", attempts=1)
    fake.add("asked", "PROCESSING", attempts=1)["cancelRequested"] = True
    fake.add("waiting", "RETRYING", last_error="boom", attempts=1)
    fake.add("done", "COMPLETED")
    fake.add("failed", "FAILED", last_error="boom")
    fake.add("poison", "FAILED", last_error="poison message: the body is not JSON")
    fake.add("stopped", "CANCELLED")
    offered = {
        "pending": ["Cancel"],
        "running": ["Cancel"],
        "asked": [],
        "waiting": ["Cancel"],
        "done": [],
        "failed": ["Retry"],
        "poison": [],
        "stopped": ["Retry"],
    }
    page = watched.page

    for task_id, buttons in offered.items():
        page.goto(console.url + f"#/task/{task_id}")
        expect(page.locator("#task-id")).to_have_text(task_id)
        shown = page.locator("#task .actions button:visible")
        if buttons:
            expect(shown).to_have_text(buttons)
            expect(page.locator("#task-no-action")).to_be_hidden()
        else:
            expect(shown).to_have_count(0)
            expect(page.locator("#task-no-action")).to_be_visible()
    page.goto(console.url + "#/task/done")
    expect(page.locator("#task-no-action")).to_have_text("No action: a COMPLETED task is final.")

    page.goto(console.url + "#/list/FAILED")
    expect(page.locator("#tasks tbody tr")).to_have_count(2)
    expect(page.locator('#tasks tr[data-task-id="failed"] button')).to_have_text(["Retry"])
    expect(page.locator('#tasks tr[data-task-id="poison"] button')).to_have_count(0)
    page.goto(console.url + "#/list/RETRYING")
    expect(page.locator('#tasks tr[data-task-id="waiting"] button')).to_have_text(["Cancel"])
    assert watched.errors == []


def test_a_failed_tasks_result_reads_none_and_a_running_ones_none_yet(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    fake.add("gave-up", "FAILED", last_error="boom")
    fake.add("busy", "PROCESSING", attempts=1)
    fake.add("quiet", "COMPLETED")
    page = watched.page

    for task_id, result in (("gave-up", "none"), ("busy", "none yet"), ("quiet", "none")):
        page.goto(console.url + f"#/task/{task_id}")
        expect(page.locator("#task-id")).to_have_text(task_id)
        expect(page.locator("#task-result")).to_have_text(result)

    fake.finish("busy", "COMPLETED", result={"sha256": DIGEST})
    page.goto(console.url + "#/task/busy")
    expect(page.locator("#task-result")).to_contain_text(DIGEST)
    assert watched.errors == []


def test_times_are_shown_in_the_browsers_zone_with_utc_on_hover(
    browser: Browser, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    task = fake.add("late", "FAILED", last_error="boom")
    task.update(updatedAt="2026-11-25T12:00:00.000Z", createdAt="2026-11-25T11:59:00.000Z")
    task["history"][0]["startedAt"] = "2026-11-25T11:59:30.000Z"
    fake.add_stuck("lost", "PENDING", "PENDING past the dispatch bound", "2026-11-25T11:50:00.000Z")
    fake.throughput = throughput_document({"simulate": {"completed": [1]}})

    with watching(browser, timezone="Asia/Kolkata") as watched:
        page = watched.page
        page.goto(console.url + "#/task/late")

        updated = page.locator('#tasks tr[data-task-id="late"] time')
        expect(updated).to_have_text("2026-11-25 17:30:00 GMT+5:30")
        expect(updated).to_have_attribute("title", "2026-11-25 12:00:00 UTC")
        created = page.locator("#task-facts div", has_text="Created").locator("time")
        expect(created).to_have_text("2026-11-25 17:29:00 GMT+5:30")
        expect(created).to_have_attribute("title", "2026-11-25 11:59:00 UTC")
        expect(page.locator("#task-history time").first).to_have_text("2026-11-25 17:29:30 GMT+5:30")
        since = page.locator("#stuck tbody time")
        expect(since).to_have_text("2026-11-25 17:20:00 GMT+5:30")
        expect(since).to_have_attribute("title", "2026-11-25 11:50:00 UTC")
        expect(page.locator("#refreshed")).to_contain_text("GMT+5:30")
        expect(page.locator("#throughput-zone")).to_have_text(re.compile(r"^Asia/(Kolkata|Calcutta)$"))  # ICU's alias
        expect(page.locator("#throughput-graph rect.completed title")).to_have_text("17:30 simulate: 1 completed")
        every = page.locator("main time").evaluate_all(
            "times => times.filter(t => t.dateTime).map(t => [t.textContent.slice(20), t.title.slice(20)])"
        )
        assert every and set(map(tuple, every)) == {("GMT+5:30", "UTC")}
        assert watched.errors == []


def test_text_from_the_api_in_the_new_figures_is_shown_as_text(
    watched: Watched, expect: Expect, fake: FakeApi, console: ConsoleServer
) -> None:
    sneaky = "<img src=x onerror=\"document.title='owned'\">"
    fake.throughput = throughput_document({sneaky: {"completed": [1], "failed": [1]}})
    fake.add_stuck("<b>id</b>", "PENDING", "<b>reason</b>", "2026-11-25T11:50:00.000Z")["type"] = sneaky
    fake.stuck[0]["type"] = sneaky
    page = watched.page

    page.goto(console.url)

    expect(page.locator("#throughput-legend li")).to_have_text([sneaky])
    expect(page.locator("#stuck tbody td").nth(2)).to_have_text("<b>reason</b>")
    expect(page.locator("#stuck tbody th")).to_have_text("<b>id</b>")
    expect(page.locator("#types tbody th").filter(has_text="onerror")).to_have_text(sneaky)
    expect(page.locator("#throughput-graph rect.failed title")).to_have_text(f"12:00 {sneaky}: 1 failed")
    assert page.locator("main img, main b").count() == 0
    assert page.title() == "taskproc console"


def png_width(path: Path) -> int:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int(struct.unpack(">I", header[16:20])[0])


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the run saves its screenshots: CONSOLE_SCREENSHOTS, else a temporary directory it prints."""
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.mark.parametrize("width", [1280, 800])
def test_long_ids_digests_and_errors_fit_and_are_saved_as_screenshots(
    browser: Browser, expect: Expect, fake: FakeApi, console: ConsoleServer, screenshots: Path, width: int
) -> None:
    busy_hour(fake)
    fake.add(LONG_ID, "FAILED", last_error=LONG_ERROR)
    fake.add(DIGEST, "FAILED", last_error="checksum mismatch: expected " + DIGEST)
    fake.finish(DIGEST, "FAILED", result={"sha256": DIGEST, "expected": DIGEST}, last_error="mismatch " + DIGEST)
    fake.add("w-1", "RETRYING", last_error="timeout after 30 s", attempts=1)
    fake.add("ok-1", "COMPLETED")
    fake.add_stuck("hung-" + DIGEST[:20], "PROCESSING", "PROCESSING past its lease", "2026-11-25T11:55:00.000Z")
    fake.types["capped"] = type_entry("capped", {"concurrency": 5, "maxAttempts": 2}, running=3)

    with watching(browser, width=width) as watched:
        page = watched.page
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        page.goto(console.url + "#/task/" + DIGEST)
        expect(page.locator("#task-status")).to_have_text("FAILED")
        expect(page.locator("#tasks tbody tr")).to_have_count(2)
        expect(page.locator("#stuck tbody tr")).to_have_count(1)
        expect(page.locator("#throughput-graph rect.completed").first).to_be_attached()

        wide = page.evaluate(
            "[...document.querySelectorAll('main *')].filter(n => n.getBoundingClientRect().right > innerWidth + 1)"
            ".map(n => n.tagName + '#' + n.id + '.' + n.className + ' ' + (n.textContent || '').slice(0, 40))"
        )
        assert wide == [], f"the page scrolls sideways: {wide}"
        # An id breaks only where the page put a break point: each piece between them sits on one line.
        for selector in ("#tasks tbody th a", "#task-id", "#stuck tbody th a"):
            split = page.locator(selector).evaluate_all(
                "links => links.flatMap(link => [...link.childNodes].filter(n => n.nodeType === 3).filter(n => {"
                " const range = document.createRange(); range.selectNodeContents(n);"
                " return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1; })"
                ".map(n => n.textContent))"
            )
            assert split == [], f"{selector} broke inside {split}"
        # An error's words are never stood one letter a line: its cell stays readably wide.
        error_widths = page.locator("#tasks td.error-text").evaluate_all(
            "cells => cells.map(c => c.getBoundingClientRect().width)"
        )
        assert min(error_widths) >= 150, error_widths
        result = page.locator("#task-result")
        expect(result).to_contain_text(DIGEST)
        assert result.evaluate("pre => pre.scrollWidth <= pre.clientWidth"), "the digest runs out of its box"

        page.locator("#task-copy").click()
        expect(page.locator("#message")).to_have_text(f'Copied the id of task "{DIGEST}".')
        assert page.evaluate("navigator.clipboard.readText()") == DIGEST

        path = screenshots / f"console-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert png_width(path) == width
        assert watched.errors == []
