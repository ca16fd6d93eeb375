"""The system Chromium as this project's browser tests and benchmarks launch it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
AT_BOTTOM = "s => s.scrollHeight - s.scrollTop - s.clientHeight < 30"
"""A scrolled element showing its last lines: what a log that follows its tail looks like."""
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output"
"""Pictures of every view the browser tests reach, for people to look at (git-ignored)."""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PATIENCE_MS = 20_000
"""How long an assertion waits for what a person would see: a kernel on a busy 2-core CI
machine answers a click in seconds, not in Playwright's default 5 s."""


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium; Playwright's own browser download is not available here."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def running_browser() -> Iterator[Browser]:
    """A launched browser for a fixture's lifetime, closed however the tests end."""
    expect.set_options(timeout=PATIENCE_MS)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str, folder: str = "") -> Path:
    """Keep a full-page picture of the view as it is now, in test-output/[folder]/name.png.

    Voila's app scrolls inside the page, so the window grows to the app's height for the shot
    (JupyterLab lays itself out in the window: it is shot as it is).
    """
    path = SCREENSHOTS / folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 800}
    app = page.locator(".pico-dashboard")
    height = app.first.evaluate("e => e.scrollHeight") if app.count() else size["height"]
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height + 60)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path
