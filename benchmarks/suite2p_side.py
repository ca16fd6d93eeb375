"""The pipeline benchmark's side-by-side with suite2p, run in suite2p's own environment.

`pipeline.py --suite2p S/bin/python` calls run_suite2p and report for each movie kind: both
programs read the same TIFF in the same session, suite2p through suite2p_job.py (which keeps
its own VmHWM reader, since pico_nb is not installed beside suite2p), and both sets of cells
are scored by pico_nb's own scorer against the generator's ground truth.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from pico_nb.pipeline import score

JOB = Path(__file__).with_name("suite2p_job.py")
TAU_SECONDS = 0.75
"""The generator's calcium decay is 0.5–1 s: its middle, as a user who knows the indicator."""


def run_suite2p(python: Path, movie: Path, out: Path, diameter: float) -> dict:
    """suite2p once on movie with the true bad frames; its figures and its cells' score."""
    truth = movie.parent / "ground_truth.npz"
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad_frames.npy"
        with np.load(truth) as npz:
            np.save(bad, npz["bad_frames"])
            fr = float(npz["fr"])
        settings = ["--fs", str(fr), "--tau", str(TAU_SECONDS), "--diameter", str(diameter)]
        started = time.perf_counter()
        done = subprocess.run(
            [str(python), str(JOB), str(movie), str(out), *settings, "--bad-frames", str(bad)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"suite2p failed: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall"] = wall
    figures["score"] = score.score_labels(np.load(out / "labels.npy"), truth)
    return figures


def report(title: str, ours_wall: float, ours_gb: float, ours_f1: float, theirs: dict) -> None:
    """Both programs' F1, time and memory on one movie, and the ratios the goals name."""
    found = theirs["score"]["centre"]  # matched by centre, as the benchmark scores pico_nb
    gb = theirs["peak_memory_mb"] / 1024
    print(f"\n=== {title}: pico_nb vs suite2p, same TIFF, same session ===")
    print(f"pico_nb  F1 {ours_f1:.3f}  wall {ours_wall:6.1f} s  peak RSS {ours_gb:.2f} GB")
    print(
        f"suite2p  F1 {found['f1']:.3f} (P {found['precision']:.3f}, R {found['recall']:.3f}; "
        f"{theirs['cells']} cells of {theirs['rois']} ROIs)  wall {theirs['wall']:6.1f} s  "
        f"peak RSS {gb:.2f} GB"
    )
    speed, memory = theirs["wall"] / ours_wall, ours_gb / gb
    print(
        f"speed {speed:.1f}× suite2p's (goal ≥ 10×: {'met' if speed >= 10 else 'NOT met'}); "
        f"memory {memory:.2f} of suite2p's (goal ≤ 0.20: {'met' if memory <= 0.2 else 'NOT met'})"
    )
