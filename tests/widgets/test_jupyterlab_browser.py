"""The widgets as an analyst sees them in JupyterLab (not Voila), rendered in Chromium: a run
panel that follows its live log and announces the end, and the cell viewer on the result."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, expect

from chromium import AT_BOTTOM
from support import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
FOLLOWING = (
    "() => { const s = document.querySelector('.jp-OutputArea .pico-log-scroll');"
    f" return !!s && ({AT_BOTTOM})(s) }}"
)
NO_NEWS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}
}


def notebook(folder: Path, frames: Path, gate: Path) -> Path:
    """A notebook an analyst would write: run an experiment, watch it, look at its cells."""
    params = {"lines": 300, "wait_file": str(gate), "cells": 12}
    cells = [
        "from pico_nb import Lab, RunPanel\n"
        "lab = Lab()\n"
        f"exp = lab.create_experiment('in lab', {str(frames)!r}, {str(folder / 'out')!r},\n"
        f"                            params={json.dumps(params)})\n"
        "run = lab.run_experiment(exp.id)\n"
        "RunPanel(run.id, lab)",
        "from pico_nb.widgets.cells import CellViewer\n"
        "assert lab.wait(run.id, timeout=600).status == 'completed'\n"
        "CellViewer(run.id, lab)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kernelspec"] = kernel
    path = folder / "watch.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def jupyterlab(settings_for, tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving tmp_path, its kernels on the test's data home and test pipeline."""
    settings = settings_for("")
    port, token = free_port(), secrets.token_hex(16)
    for name, values in NO_NEWS.items():  # no "official Jupyter news?" toast over the page
        (tmp_path / "lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lab-settings" / name).write_text(json.dumps(values))
    env = {
        **os.environ,
        "PICO_NB_HOME": str(settings.home),
        "PICO_NB_DATA_ROOTS": str(tmp_path),
        "PICO_NB_PIPELINE_SPEC": str(settings.pipeline_spec),
        "PICO_NB_HEARTBEAT_SECONDS": "0.5",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.expose_app_in_browser=True",
    ]
    log = (tmp_path / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 90
        while not answers():  # a server that has not bound its port yet has nothing to wait on
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "jupyterlab.log"
            ).read_text()
            time.sleep(0.2)
        yield f"{base}/lab/tree/watch.ipynb?token={token}"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_run_panel_and_cell_viewer_in_jupyterlab(
    page: Page, jupyterlab: str, frames: Path, tmp_path: Path, screenshot
) -> None:
    gate = tmp_path / "gate"
    notebook(tmp_path, frames, gate)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(jupyterlab)
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel",
        timeout=60_000,
    )
    # Not awaited: the command's promise settles only when the last cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells') }")

    panel = page.locator(".jp-OutputArea .pico-run")
    expect(panel.locator(".pico-log")).to_contain_text("waiting", timeout=60_000)
    expect(panel.locator(".pico-log")).to_contain_text("line 299")
    page.wait_for_function(FOLLOWING)
    screenshot("17-jupyterlab-run-panel")
    gate.touch()
    expect(panel.locator(".pico-log")).to_contain_text("# finished: completed", timeout=60_000)
    page.wait_for_function(FOLLOWING)  # the last line is in view without scrolling
    # The run ended: JupyterLab's own notification says which run and how, and stays listed.
    toast = page.locator(".jp-Notification-Toast-success")
    expect(toast).to_contain_text("Run 1 of “in lab” completed · exit code 0", timeout=30_000)
    expect(toast).to_be_in_viewport()
    expect(page.locator(".pico-toast")).to_have_count(0)  # one notice, not two
    expect(toast).to_have_count(1)  # once, though the panel and the page both saw the end
    screenshot("17-jupyterlab-run-ended-notification")

    viewer = page.locator(".jp-OutputArea .pico-cells")
    dots = viewer.locator(".bqplot .dot")
    expect(dots).to_have_count(12, timeout=60_000)
    viewer.scroll_into_view_if_needed()
    dots.nth(6).click(force=True)
    expect(viewer.locator(".pico-trace-captions")).to_contain_text("cell #7")
    expect(viewer.locator(".pico-traces")).to_contain_text("time (s)")
    screenshot("18-jupyterlab-cell-viewer")
