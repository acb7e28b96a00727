"""Debian's Chromium through Playwright, as the browser tests use it (`playwright install` cannot run here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install -y chromium): browser tests need it", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extras)")


@contextmanager
def chromium() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def sign_in(browser, base_url: str, name: str, password: str, watch: Callable[[object], None] | None = None):
    """A new page signed in to the dashboard as `name`; `watch` sees the page before it loads anything."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=base_url)
    page.set_default_timeout(30_000)
    if watch:
        watch(page)
    page.goto("/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")
    return page
