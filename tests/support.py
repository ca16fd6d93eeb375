"""Helpers the test packages share; conftest files and tests import them from here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

PG_ADMIN_URL = os.environ.get("PICO_NB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_PIPELINE = Path(__file__).parent / "fake_pipeline.py"
DEMO_SIZE = 160


def write_frames(folder: Path, count: int = 3, size: tuple[int, int] = (16, 16)) -> Path:
    """A tiny frame_N.jpg sequence, as the microscope writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        data = rng.integers(0, 255, size=size, dtype=np.uint8)
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), data)
    return folder


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CHECKOUT = Path(__file__).resolve().parents[1]


def source_copy(target: Path) -> Path:
    """The package's sources copied to target, so a pip build leaves nothing in the checkout."""
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "test*", "bench*")
    shutil.copytree(CHECKOUT, target, ignore=skip)
    return target


def demo_movie(folder: Path, frames: int, size: int = DEMO_SIZE) -> Path:
    """A generated movie, written the way an analyst would: `pico-nb demo-data`."""
    command = [sys.executable, "-m", "pico_nb.cli", "demo-data", str(folder)]
    command += ["--size", str(size), str(size), "--frames", str(frames), "--seed", "3"]
    subprocess.run(command, check=True, capture_output=True)
    return folder
