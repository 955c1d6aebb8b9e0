"""Pause and resume from the console in Chromium over the real offline stack: the flow table records them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import ConsoleProcess, Expect, Watched, console_process
from tests.e2e.stack import Api, Stack, free_port, stack_environment, start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Stack]:
    port, aws_port = free_port(), free_port()
    env = stack_environment(port, aws_port, CONSOLE_PORT=str(free_port()))
    process = start("run", ["run"], env, tmp_path_factory.mktemp("types-stack"))
    try:
        process.wait_for_line("taskproc is ready")
        yield Stack(Api(f"http://127.0.0.1:{port}"), aws_port, process, env)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ConsoleProcess]:
    with console_process(stack.api.base_url) as running:
        yield running


def entry(api: Api, name: str) -> dict[str, Any]:
    status, body = api.call("GET", f"/types/{name}")
    assert status == 200, body
    return dict(body)


def test_an_operator_pauses_and_resumes_a_type_from_the_page_and_the_api_records_who_and_when(
    watched: Watched, expect: Expect, stack: Stack, console: ConsoleProcess
) -> None:
    page = watched.page
    page.goto(console.url)
    row = page.locator('#types tr[data-type="checksum"]')
    expect(row.locator("td").nth(0)).to_have_text("Running")

    row.get_by_role("button", name="Pause type checksum").click()
    page.get_by_role("dialog", name='Pause task type "checksum"?').get_by_role("button", name="Pause checksum").click()

    expect(page.locator("#message")).to_contain_text('Paused (200): task type "checksum" starts no attempt from ')
    expect(row.locator("td").nth(0)).to_contain_text("Paused by anonymous")
    paused = entry(stack.api, "checksum")
    assert paused["paused"] is True and paused["pausedBy"] == "anonymous"
    status, listed = stack.api.call("GET", "/types")
    assert status == 200 and {t["name"]: t["paused"] for t in listed["types"]}["simulate"] is False

    row.get_by_role("button", name="Resume type checksum").click()
    page.get_by_role("dialog").get_by_role("button", name="Resume checksum").click()

    expect(page.locator("#message")).to_have_text(
        'Resumed (200): task type "checksum" runs again (consumers see it within 5 s).'
    )
    resumed = entry(stack.api, "checksum")
    assert resumed["paused"] is False
    assert [(c["action"], c["by"], c["changed"]) for c in resumed["history"]] == [
        ("pause", "anonymous", True),
        ("resume", "anonymous", True),
    ]
    assert watched.errors == []
