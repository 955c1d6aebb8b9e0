"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, and a console to point it at.

Playwright never downloads a browser here: it drives the system's Chromium. Where that
Chromium or the playwright package is missing, the browser tests are not collected and
test_browser.py's one skip says why, in one line of `pytest -ra`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from taskctl.client import ApiClient
from taskctl.console import ConsoleServer, running
from tests.cli.fake_api import FakeApi, serving
from tests.cli.fake_schedules import FakeScheduleApi
from tests.e2e.stack import ROOT, free_port, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

Expect = Callable[..., Any]  # playwright's `expect`, handed out by a fixture so a missing package only skips

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a loaded machine: the page refreshes every 5 s.
SEEN_WITHIN_MS = 20_000


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (make .venv/.installed installs requirements-dev.txt)"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package when run as root "
            "(apt-get install chromium); set CHROMIUM to use another"
        )
    return None


WHY_NOT = why_no_browser()
# Without a browser only test_browser.py is collected, and its one skip says why in one line of `pytest -ra`.
collect_ignore_glob = ["test_console_*.py"] if WHY_NOT else []


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if WHY_NOT:
        pytest.skip(f"BROWSER TESTS NOT RUN: {WHY_NOT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def expect(browser: Browser) -> Expect:
    from playwright.sync_api import expect as playwright_expect

    # Assertions wait as long as the page may take to show a change (it refreshes every
    # 5 s), not Playwright's default 5 s, which would race the refresh.
    playwright_expect.set_options(timeout=SEEN_WITHIN_MS)
    return playwright_expect


@dataclass
class Watched:
    """A page and everything it reported: console errors and uncaught exceptions."""

    page: Page
    errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)

    def uncaught(self) -> list[str]:
        """Errors other than the browser's own note of a 4xx/5xx answer, which failure tests provoke."""
        return [e for e in self.errors if not e.startswith("Failed to load resource")]


@contextmanager
def watching(browser: Browser, width: int = 1360, timezone: str = "UTC") -> Iterator[Watched]:
    """A page in a context of its own (cookies, clock zone) `width` pixels wide, watched until the block ends."""
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id=timezone)
    page = context.new_page()
    page.set_default_timeout(SEEN_WITHIN_MS)
    seen = Watched(page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda request: seen.failed_loads.append(request.url))
    try:
        yield seen
    finally:
        context.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A page in a browser whose zone is UTC, so times read the same on every machine."""
    with watching(browser) as seen:
        yield seen


def console_thread(client: ApiClient) -> AbstractContextManager[ConsoleServer]:
    """The console's server in this process, on a free port."""
    return running(client)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    """The fake API the page talks to (a module may serve its own): schedules too, as the page reads them."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with serving(FakeScheduleApi()) as api:
        yield api


@pytest.fixture
def console(fake: FakeApi) -> Iterator[ConsoleServer]:
    """The console's server in this process, in front of `fake`."""
    with console_thread(ApiClient(fake.url)) as server:
        yield server


@dataclass
class ConsoleProcess:
    url: str
    popen: subprocess.Popen[str]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(15)


@contextmanager
def console_process(api_url: str, port: int | None = None) -> Iterator[ConsoleProcess]:
    """`python -m taskctl --url API console --port P`, as an operator starts it (P: a free port unless given)."""
    port = port or free_port()
    popen = subprocess.Popen(
        [sys.executable, "-m", "taskctl", "--url", api_url, "console", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    console = ConsoleProcess(f"http://127.0.0.1:{port}/", popen)
    try:
        first = popen.stdout.readline() if popen.stdout else ""
        assert first.startswith(f"taskproc console on {console.url}"), first
        yield console
    finally:
        console.stop()


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return wait_until(check, timeout, what, interval=0.25)
