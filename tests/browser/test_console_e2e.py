"""The console in Chromium over the real offline stack: `make run`'s processes, `taskctl console` in front.

The stack runs with two attempts per task and a long backoff, so a failing task waits
RETRYING for 10 to 20 s (equal jitter of 20 s): long enough to watch and to cancel from the page.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import ConsoleProcess, Expect, Watched, console_process, eventually, watching
from tests.e2e.stack import ROOT, Api, Stack, free_port, stack_environment, start

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

WATCH_SECONDS = 60.0
ALWAYS_FAILS = {"simulation": {"failureChance": 1, "executionTime": 50}}
SETTINGS = {"MAX_ATTEMPTS": "2", "BACKOFF_BASE_SECONDS": "20", "BACKOFF_MAX_SECONDS": "20"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Stack]:
    """`python -m local run` on free ports; CONSOLE_PORT too, in case the launcher starts a console of its own."""
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, CONSOLE_PORT=str(free_port()), **SETTINGS)
    process = start("run", ["run"], env, tmp_path_factory.mktemp("console-stack"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ConsoleProcess]:
    with console_process(stack.api.base_url) as running:
        yield running


def status_of(api: Api, task_id: str) -> str:
    return str(api.task(task_id)["status"])


def wait_for_status(api: Api, task_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        view = api.task(task_id)
        return view if view["status"] == status else None

    return dict(eventually(reached, f"task {task_id} to be {status}", WATCH_SECONDS))


def seconds_until(iso: str) -> float:
    return (datetime.fromisoformat(iso.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()


def failed_count(api: Api) -> int:
    status, body = api.call("GET", "/stats")
    assert status == 200, body
    return int(body["counts"]["FAILED"])


def hour_of(api: Api, task_type: str, kind: str) -> float:
    """What `/stats` counts of `kind` for `task_type` over the last hour (0 before the metrics have it)."""
    status, body = api.call("GET", "/stats")
    assert status == 200, body
    series = (body.get("throughput") or {}).get("perMinute", {}).get("series", {})
    return float(sum(series.get(task_type, {}).get(kind) or []))


def test_an_operator_sees_a_failure_retries_it_watches_it_and_cancels_it_while_it_waits(
    stack: Stack, console: ConsoleProcess, watched: Watched, expect: Expect
) -> None:
    api, page = stack.api, watched.page
    task_id = f"fails-{uuid.uuid4().hex[:8]}"
    api.publish(task_id, ALWAYS_FAILS)
    seed_id = api.create({"message": "ERROR"})
    failed = wait_for_status(api, task_id, "FAILED")
    seed = wait_for_status(api, seed_id, "FAILED")

    page.goto(console.url)

    # The counts are the API's; the failed tasks are listed with their errors.
    count = page.locator('#counts [data-status="FAILED"] dd')
    eventually(lambda: count.all_text_contents() == [str(failed_count(api))], "the page's FAILED count to be the API's")
    expect(page.locator(f'#tasks tr[data-task-id="{task_id}"]')).to_contain_text(failed["lastError"])
    expect(page.locator(f'#tasks tr[data-task-id="{seed_id}"]')).to_contain_text(seed["lastError"])

    # One task: its attempts as a timeline.
    page.get_by_role("link", name=task_id, exact=True).click()
    expect(page.locator("#task-status")).to_have_text("FAILED")
    timeline = page.locator("#task-history li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(1)).to_contain_text("Attempt 2")
    expect(timeline.nth(1)).to_contain_text(failed["lastError"])

    # Retry: back to PENDING, then on through its attempts.
    page.locator("#task").get_by_role("button", name="Retry").click()
    expect(page.locator("#message")).to_have_text(f'Retry accepted (202): task "{task_id}" is now PENDING.')
    # The action's own answer names who acted; the page's next refresh (a client route) says "operator".
    expect(timeline.nth(2)).to_contain_text(re.compile(r"Retried by (anonymous|operator) \(was FAILED\)"))
    expect(page.locator("#task-status")).to_have_text("RETRYING", timeout=WATCH_SECONDS * 1000)
    expect(timeline.nth(3)).to_contain_text("failed")
    waiting = api.task(task_id)
    assert waiting["status"] == "RETRYING"
    assert seconds_until(waiting["nextAttemptAt"]) > 2, "the machine was too slow to click within the backoff"

    # Cancel while it waits to retry.
    page.locator("#task").get_by_role("button", name="Cancel").click()
    expect(page.locator("#message")).to_have_text(f'Cancelled (200): task "{task_id}" is now CANCELLED.')
    expect(page.locator("#task-status")).to_have_text("CANCELLED")
    expect(timeline.last).to_contain_text(re.compile(r"Cancelled by (anonymous|operator) \(was RETRYING\)"))
    assert status_of(api, task_id) == "CANCELLED"

    page.get_by_role("link", name="Cancelled", exact=True).click()
    expect(page.locator(f'#tasks tr[data-task-id="{task_id}"]')).to_be_visible()
    assert watched.errors == [], watched.errors
    assert watched.failed_loads == []


def test_cancel_from_the_retrying_list(stack: Stack, console: ConsoleProcess, watched: Watched, expect: Expect) -> None:
    api, page = stack.api, watched.page
    task_id = f"waits-{uuid.uuid4().hex[:8]}"
    api.publish(task_id, ALWAYS_FAILS)
    wait_for_status(api, task_id, "RETRYING")

    page.goto(console.url + "#/list/RETRYING")
    page.get_by_role("button", name=f"Cancel task {task_id}").click()

    expect(page.locator("#message")).to_have_text(f'Cancelled (200): task "{task_id}" is now CANCELLED.')
    expect(page.locator(f'#tasks tr[data-task-id="{task_id}"]')).to_have_count(0)
    view = api.task(task_id)
    assert view["status"] == "CANCELLED"
    assert [entry["kind"] for entry in view["history"]][-1] == "cancel"
    assert watched.errors == [], watched.errors


# `make screenshot` (CONSOLE_SCREENSHOT=docs/console.png) defines this one; the suite neither runs nor skips it.
if os.environ.get("CONSOLE_SCREENSHOT"):

    def test_screenshot(stack: Stack, console: ConsoleProcess, browser: Browser, expect: Expect) -> None:
        """docs/console.png at 1280 px: tasks of every kind of ending and some waiting, an hour's graph
        of them, one failure retried and waiting to run again, its timeline open."""
        api = stack.api
        failing = [f"invoice-{n}" for n in (1041, 1042, 1043)]
        for task_id in failing:
            api.publish(task_id, {"message": "ERROR", "simulation": {"failureChance": 1, "executionTime": 120}})
        for n in range(8):
            api.publish(f"report-{n}", {"simulation": {"failureChance": 0, "executionTime": 80}})
        for n in range(5):
            body = {"id": f"digest-{n}", "type": "checksum", "payload": {"text": f"ledger page {n}"}}
            assert api.call("POST", "/publish", body)[0] == 201
        for task_id in ("nightly-export", "nightly-cleanup"):
            body = {"id": task_id, "payload": {"simulation": {"failureChance": 0}}, "delaySeconds": 900}
            assert api.call("POST", "/publish", body)[0] == 201
        assert api.call("POST", "/tasks/nightly-cleanup/cancel")[0] == 200
        for task_id in failing:
            wait_for_status(api, task_id, "FAILED")
        # The throughput comes from the metrics, which /stats caches for up to a minute: wait for it before
        # starting the retries, which fail again within their backoff (10 to 20 s).
        eventually(
            lambda: hour_of(api, "checksum", "completed") and hour_of(api, "simulate", "failed"), "the graph", 180
        )
        api.publish("invoice-1044", {"message": "ERROR", "simulation": {"failureChance": 1}})
        shown = failing[1]
        assert api.call("POST", f"/tasks/{shown}/retry")[0] == 202
        wait_for_status(api, shown, "RETRYING")
        wait_for_status(api, "invoice-1044", "RETRYING")

        with watching(browser, width=1280) as watched:
            page = watched.page
            page.goto(console.url + f"#/task/{shown}")
            expect(page.locator("#task-status")).to_have_text("RETRYING")
            expect(page.locator("#tasks tbody tr")).to_have_count(2)
            expect(page.locator('#counts [data-status="FAILED"] dd')).to_have_text("2")
            expect(page.locator('#counts [data-status="RETRYING"] dd')).to_have_text("2")
            expect(page.locator('#throughput-graph rect.completed[data-type="checksum"]').first).to_be_attached()
            expect(page.locator('#throughput-graph rect.failed[data-type="simulate"]').first).to_be_attached()
            path = ROOT / Path(os.environ["CONSOLE_SCREENSHOT"])
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
            assert watched.errors == [], watched.errors
