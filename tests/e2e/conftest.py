"""Browser tests: Playwright for Python driving the Debian chromium at /usr/bin/chromium.

Never `playwright install`: the system browser is launched by path. Without it (or without the built console,
frontend/dist/index.html, which the Makefile builds before the tests) every test here is skipped with the
reason, or fails when REQUIRE_SERVICES=1.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_INDEX = ROOT / "frontend" / "dist" / "index.html"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES", "") not in ("", "0"):
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _browser_prerequisites() -> None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _skip_or_fail(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    if not CONSOLE_INDEX.is_file():
        _skip_or_fail(f"the console is not built ({CONSOLE_INDEX.relative_to(ROOT)} missing): "
                      "run `make frontend` (cd frontend && npm ci && npm run build)")


@pytest.fixture(scope="session")
def browser(_browser_prerequisites: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001 - report why the browser would not start
            _skip_or_fail(f"{CHROMIUM} could not be launched by Playwright: {exc}")
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the live server; page errors are collected in `page.errors`."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 800}, locale="en-US",
                                  timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # "Failed to load resource" is the browser logging an HTTP error status (the 401 of /auth/me before
    # signing in is expected); anything else logged as an error is a bug of the console
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.errors = errors
    try:
        yield page
    finally:
        context.close()
