"""Fixtures for widget tests: real Labs on SQLite in tmp folders, and a live dashboard server."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser, Page

from pico_nb.lab import Lab
from pico_nb.settings import Settings
from pico_nb.widgets.app import start_background, stop_background

import chromium


@pytest.fixture
def lab(settings_for: Callable[..., Settings]) -> Lab:
    """Alice's Lab on a fresh SQLite file, with the fake pipeline."""
    return Lab(user="alice", settings=settings_for(""))


@pytest.fixture
def make_experiment(lab: Lab, frames: Path, tmp_path: Path) -> Callable[..., object]:
    """Experiments with a unique output folder each, on the shared input frames."""
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, **params: object) -> object:
        n = next(counter)
        return lab.create_experiment(
            name or f"exp {n}", str(frames), str(tmp_path / f"out{n}"), params=params
        )

    return make


# ------------------------------------------------------------------ browser tests

SCREENSHOTS = chromium.SCREENSHOTS / "widgets"


@dataclass
class Served:
    """A live dashboard: its URL, the data folder it may use, and a Lab on the same database."""

    url: str
    data: Path
    lab: Lab
    pid: int

    def kernels(self) -> int:
        """How many notebook kernels the server runs now: one per open dashboard tab."""
        count = 0
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a kernel exiting right now
                count += child.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(
                    child.cmdline()
                )
        return count


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings, data: Path, **env: str) -> Iterator[Served]:
    """A live dashboard process on this data home, as an analyst starts it."""
    env = {
        "PICO_NB_HOME": str(settings.home),
        "PICO_NB_DATA_ROOTS": str(data),
        "PICO_NB_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
        **env,
    }
    if settings.pipeline_spec:
        env["PICO_NB_PIPELINE_SPEC"] = str(settings.pipeline_spec)
    proc, url = start_background(free_port(), env)
    try:
        yield Served(url=url, data=data, lab=Lab(settings=settings), pid=proc.pid)
    finally:
        stop_background(proc)


@pytest.fixture
def served_builtin(settings_for: Callable[..., Settings], tmp_path: Path) -> Iterator[Served]:
    """A live dashboard with the built-in PICO pipeline's spec."""
    with serving(settings_for("", pipeline_spec=None), tmp_path) as live:
        yield live


@pytest.fixture
def served(settings_for: Callable[..., Settings], frames: Path, tmp_path: Path) -> Iterator[Served]:
    """A live dashboard with the test pipeline."""
    with serving(settings_for(""), tmp_path) as live:
        yield live


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Remember whether the test body failed, so the page fixture can keep evidence."""
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab at the app's reference size; a failing test leaves a screenshot."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    if request.node.stash.get(FAILED, False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def screenshot(page: Page) -> Callable[[str], Path]:
    """Keep a picture of each view the test reaches, in test-output/widgets/."""
    return lambda name: chromium.screenshot(page, name, "widgets")
