"""The notebooks run as shipped: the tour end to end, the dashboard's cell builds the app."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pico_nb.settings import Settings

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(name: str, folder: Path) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel; any cell error fails the test."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return nb


def widget_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )


@pytest.fixture
def analyst_env(
    monkeypatch: pytest.MonkeyPatch, settings_for, frames: Path, tmp_path: Path
) -> Settings:
    """The kernel inherits a tmp data home, the test pipeline and a small input folder."""
    settings = settings_for("")
    monkeypatch.setenv("PICO_NB_HOME", str(settings.home))
    monkeypatch.setenv("PICO_NB_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("PICO_NB_PIPELINE_SPEC", str(settings.pipeline_spec))
    monkeypatch.setenv("PICO_NB_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("PICO_TOUR_INPUT", str(frames))
    monkeypatch.setenv("PICO_TOUR_PARAMS", json.dumps({"lines": 4, "tqdm_steps": 5, "cells": 12}))
    return settings


@pytest.mark.slow
def test_tour_runs(analyst_env: Settings, tmp_path: Path) -> None:
    nb = execute("tour.ipynb", tmp_path)
    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert "name: " in text and "no_such_flag: unknown parameter" in text
    assert "completed · exit code 0" in text
    assert "12 cells, 200 frames at 10.0 Hz" in text and "exported to" in text
    assert widget_outputs(nb) >= 8
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []


@pytest.mark.slow
def test_dashboard_notebook_builds_the_app(analyst_env: Settings, tmp_path: Path) -> None:
    nb = execute("dashboard.ipynb", tmp_path)
    assert widget_outputs(nb) == 1
