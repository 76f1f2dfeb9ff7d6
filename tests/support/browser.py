"""Shared helpers for the browser tests: Debian's Chromium under Playwright, page helpers, screenshots.

Never ``playwright install``: the tests drive the system ``/usr/bin/chromium``
with flags that keep it from calling home. Import this only after checking
that Chromium and Playwright are there (``require_browser``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "bars",
    "card",
    "chromium_session",
    "launch_chromium",
    "open_page",
    "require_browser",
    "screenshot",
    "server_logs_on_failure",
    "wait_for_labels",
]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def require_browser():
    """Skip the calling test module unless Chromium and Playwright are there; returns ``playwright.sync_api``."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (Debian package 'chromium'); browser tests skipped", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api", reason="playwright's Python package is not installed")


@pytest.fixture(autouse=True)
def server_logs_on_failure(request):
    """After each test, print the test module's ``server`` fixture's recent log: pytest shows it when the test fails.

    Autouse in every module that imports it (both browser test modules).
    """
    yield
    if "server" in request.fixturenames:
        server = request.getfixturevalue("server")
        print(f"---- server exit status: {server.proc.poll()}; log (tail) ----")
        print(server.logs()[-4000:])


def launch_chromium(playwright, extra_args: Iterable[str] = ()):
    """Debian's Chromium with the offline flags (plus ``extra_args``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@contextlib.contextmanager
def chromium_session(extra_args: Iterable[str] = ()) -> Iterator:
    """Playwright plus one launched Chromium, closed at the end (for a module-scoped ``browser`` fixture)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright, extra_args)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, *, width: int = 1366, height: int = 900, color_scheme: str = "light", init_script: str | None = None):
    """A new page at ``url``/ that logs its requests and console, and collects uncaught errors in ``page.errors``."""
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=color_scheme)
    if init_script:
        page.add_init_script(init_script)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # checked at the end of each test: the page must not throw
    # What the page asked for and got: printed when a test fails (pytest shows captured output).
    page.on("request", lambda r: print(f"{time.monotonic():.2f} -> {r.method} {r.url}"))
    page.on("requestfinished", lambda r: print(f"{time.monotonic():.2f} <- {r.method} {r.url}"))
    page.on("requestfailed", lambda r: print(f"{time.monotonic():.2f} !! {r.method} {r.url} {r.failure}"))
    page.on("console", lambda m: print(f"{time.monotonic():.2f} console.{m.type}: {m.text}"))
    page.set_default_timeout(20_000)
    page.goto(url + "/")
    return page


def screenshot(page, name: str, *, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def card(stream_id: str) -> str:
    return f'.card[data-stream="{stream_id}"]'


def bars(page, stream_id: str) -> list[tuple[str, str, str]]:
    """(label, percent text, data-score) per top-k row of one card, as rendered."""
    return page.eval_on_selector_all(
        f"{card(stream_id)} .bar",
        "rows => rows.map(r => [r.querySelector('.bar-label').textContent,"
        " r.querySelector('.bar-value').textContent, r.dataset.score || ''])",
    )


def wait_for_labels(page, stream_id: str, timeout: float | None = None) -> None:
    """Wait until the card's first top-k row carries a score (a labels message reached it)."""
    page.wait_for_function(
        "sel => { const r = document.querySelector(sel + ' .bar'); return r && r.dataset.score !== undefined; }",
        arg=card(stream_id),
        timeout=timeout,
    )
