"""The shipped tour notebook, run as a member runs it in JupyterLab under the hub."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lab_server import Hub, start_hub
from support import demo_movie

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def builtin_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A lab server on shipped defaults: the built-in pipeline, its spec's own defaults."""
    server = start_hub(tmp_path_factory.mktemp("hub-builtin"), PIPELINE_SPEC="")
    yield server
    server.stop()


def run_tour(hub: Hub, monkeypatch: pytest.MonkeyPatch, movie: Path, **tour: str) -> str:
    """Execute notebooks/tour.ipynb in alice's kernel as her user server starts it; the text
    of every output, as she reads it."""
    for name in ("PICO_NB_HOME", "PICO_NB_DATA_ROOTS", "PICO_NB_PIPELINE_SPEC", "PICO_TOUR_PARAMS"):
        monkeypatch.delenv(name, raising=False)  # a user server never sees the database
    monkeypatch.setenv("PICO_NB_SERVICE_URL", hub.service_url())
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", hub.token("alice"))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("PICO_TOUR_INPUT", str(movie))
    for name, value in tour.items():
        monkeypatch.setenv(f"PICO_TOUR_{name.upper()}", value)
    nb = nbformat.read(NOTEBOOKS / "tour.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(hub.data)}}
    ).execute()
    outputs = [out for cell in nb.cells for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    return "".join(out.get("text", "") for out in outputs)


@pytest.mark.slow
def test_tour_runs_under_the_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    params = json.dumps({"lines": 4, "tqdm_steps": 5, "cells": 12})
    text = run_tour(hub, monkeypatch, hub.data / "frames", params=params)
    assert "signed in as alice" in text
    assert "no_such_flag: unknown parameter" in text
    assert "completed · exit code 0" in text


@pytest.mark.slow
def test_the_shipped_tour_runs_on_the_built_in_pipeline_s_defaults(
    builtin_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No parameter given: the tour's own values and the spec's defaults must fit the movie."""
    movie = demo_movie(builtin_hub.data / "demo", frames=150, size=128)
    text = run_tour(builtin_hub, monkeypatch, movie)
    assert "pipeline: PICO (built-in CPU pipeline)" in text
    assert "completed · exit code 0" in text
    (summary,) = builtin_hub.data.glob("tour-results-*/run-0001/summary.json")
    found = json.loads(summary.read_text())["neurons"]
    assert found > 0
    cells = re.search(r"^(\d+) cells, (\d+) frames at 10(\.0)? Hz$", text, re.MULTILINE)
    assert cells is not None, text
    assert (int(cells[1]), int(cells[2])) == (found, 150)  # what the run's folder holds
