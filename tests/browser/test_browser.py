"""Stands for the browser tests: it runs Debian's Chromium, or is skipped saying why none of them can run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_debian_chromium_runs_under_playwright(browser: Browser) -> None:
    page = browser.new_page()
    try:
        page.set_content("<main><h1>ready</h1></main>")
        assert page.locator("h1").inner_text() == "ready"
    finally:
        page.close()
    assert browser.version.split(".")[0].isdigit()
