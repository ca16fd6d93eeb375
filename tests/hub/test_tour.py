"""The shipped tour notebook, run as a member runs it in JupyterLab under the hub."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lab_server import Hub

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.slow
def test_tour_runs_under_the_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PICO_NB_HOME", "PICO_NB_DATA_ROOTS", "PICO_NB_PIPELINE_SPEC"):
        monkeypatch.delenv(name, raising=False)  # a user server never sees the database
    monkeypatch.setenv("PICO_NB_SERVICE_URL", hub.service_url())
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.token("alice"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("PICO_TOUR_INPUT", str(hub.data / "frames"))
    monkeypatch.setenv("PICO_TOUR_PARAMS", json.dumps({"lines": 4, "tqdm_steps": 5, "cells": 12}))
    nb = nbformat.read(NOTEBOOKS / "tour.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(hub.data)}}
    ).execute()
    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert "signed in as alice" in text
    assert "no_such_flag: unknown parameter" in text
    assert "completed · exit code 0" in text
