"""Fixtures for widget tests: real Labs on SQLite in tmp folders, and a live dashboard server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.lab import Lab
from pico_nb.settings import Settings


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
