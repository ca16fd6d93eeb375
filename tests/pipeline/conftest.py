"""Shared demo movies and runs for the pipeline tests: generated once per session."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.pipeline import synthetic
from pico_nb.pipeline.run import command_line


def run_pipeline(data: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """The pipeline as a real program, exactly as pico_nb launches it."""
    return subprocess.run(
        command_line(data, out, *flags),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def pipeline() -> Callable[..., subprocess.CompletedProcess[str]]:
    """run_pipeline, for tests that start their own runs."""
    return run_pipeline


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256×256×300 frame_N.jpg demo movie (big enough for sub-0.2 px registration)."""
    return synthetic.generate(
        tmp_path_factory.mktemp("demo"), size=(256, 256), frames=300, seed=1, fmt="both"
    )


@pytest.fixture(scope="session")
def demo_run(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One full default run on the demo movie: (out_path, stdout)."""
    out = tmp_path_factory.mktemp("run") / "out"
    done = run_pipeline(demo, out, "--crop_parameter", "0", "0", "256", "256")
    assert done.returncode == 0, done.stderr
    return out, done.stdout


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 128×128×200 demo movie for flag combinations."""
    return synthetic.generate(
        tmp_path_factory.mktemp("small"), size=(128, 128), frames=200, seed=2, fmt="both"
    )
