"""The schedules page in Chromium over the real offline stack: a schedule made through the API is shown, and
triggered from its button; the task it made is the one the page links to, and it runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import ConsoleProcess, Expect, Watched, console_process, eventually
from tests.e2e.stack import Api, Stack, free_port, stack_environment, start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Stack]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, CONSOLE_PORT=str(free_port()))
    process = start("run", ["run"], env, tmp_path_factory.mktemp("schedules-stack"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ConsoleProcess]:
    with console_process(stack.api.base_url) as running:
        yield running


def test_a_schedule_made_through_the_api_is_shown_triggered_from_the_page_and_its_task_runs(
    watched: Watched, expect: Expect, stack: Stack, console: ConsoleProcess
) -> None:
    definition = {
        "id": "berlin-morning",
        "type": "simulate",
        "payload": {"simulation": {"failureChance": 0}},
        "cron": "0 9 * * MON-FRI",
        "timezone": "Europe/Berlin",
        "overlap": "skip",
    }
    status, created = stack.api.call("POST", "/schedules", definition)
    assert status == 201, created
    next_utc = created["nextFirings"][0]
    page = watched.page

    page.goto(console.url + "#/schedules")

    row = page.locator('#schedules tr[data-schedule="berlin-morning"]')
    expect(row.locator('td[data-label="When"]')).to_contain_text("cron 0 9 * * MON-FRI")
    # 09:00 in Berlin is 08:00 or 07:00 UTC, by the season of the next weekday.
    expect(row.locator(".next-local")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d 09:00:00 GMT\+0[12]:00 Europe/Berlin$")
    )
    expect(row.locator(".next-utc")).to_have_text(f"{next_utc[:10]} {next_utc[11:19]} UTC")
    expect(row.locator('td[data-label="State"]')).to_have_text("Running")
    expect(row.locator('td[data-label="Last firing"]')).to_have_text("never")

    row.get_by_role("button", name="Trigger schedule berlin-morning").click()
    page.get_by_role("dialog", name='Trigger schedule "berlin-morning" now?').get_by_role(
        "button", name="Trigger berlin-morning"
    ).click()

    message = page.locator("#message")
    expect(message).to_have_text(
        re.compile(
            # The answer shows the task as it stood: a quick consumer may have taken it already.
            r'^Triggered: task "berlin-morning@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.manual"'
            r" created \(201, (PENDING|PROCESSING|COMPLETED)\)"
        )
    )
    task_id = message.locator("a").inner_text()
    status, shown = stack.api.call("GET", "/schedules/berlin-morning")
    assert status == 200 and shown["lastFiring"]["taskId"] == task_id
    assert shown["counts"]["fired"] == 1
    expect(row.locator('td[data-label="Last firing"] a')).to_have_text(task_id)
    expect(row.locator('[data-counter="fired"]')).to_have_text("fired 1")
    expect(page.locator('#schedule-counts [data-counter="fired"] dd')).to_have_text("1")

    message.locator("a").click()

    expect(page.locator("#task-id")).to_have_text(task_id)
    expect(page.locator("#task-facts")).to_contain_text("simulate")
    eventually(lambda: stack.api.call("GET", f"/tasks/{task_id}")[1]["status"] == "COMPLETED", "the task ran")
    expect(page.locator("#task-status")).to_have_text("COMPLETED")
    expect(row.locator('td[data-label="Last firing"] .badge')).to_have_text("COMPLETED")
    assert watched.errors == []
