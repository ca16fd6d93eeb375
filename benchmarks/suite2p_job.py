"""suite2p on one TIFF movie, run by the pipeline benchmark with suite2p's own Python.

suite2p is GPL, so it never enters pico_nb's environment: this script runs in a separate one
(`python -m venv S; S/bin/pip install torch==2.13.0 suite2p`) and imports only suite2p and
numpy. The movie's folder must hold no other TIFF (suite2p reads every one in it). Settings
are those a fair user would give: the movie's rate, the generator's decay time and cell
diameter, rigid registration on the CPU, and the true bad frames. It writes the ROIs suite2p
classifies as cells as a label image (labels.npy) into OUT and prints one JSON line: wall
seconds, peak memory (VmHWM, MB) and ROI counts.

    S/bin/python benchmarks/suite2p_job.py MOVIE.tif OUT --fs 10 --tau 0.75 --diameter 12
        [--bad-frames BAD.npy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import suite2p


def peak_memory_mb() -> float:
    """This process's high-water mark, which a forking parent's memory does not inflate."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def labels_of(plane: Path, shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The ROIs suite2p calls cells, drawn without their overlapping pixels; all ROIs' count."""
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    iscell = np.load(plane / "iscell.npy")
    labels = np.zeros(shape, np.int32)
    kept = 0
    for roi, (is_cell, _) in zip(stat, iscell, strict=True):
        if is_cell < 0.5:
            continue
        kept += 1
        own = ~roi["overlap"] if "overlap" in roi else np.ones(len(roi["ypix"]), bool)
        labels[roi["ypix"][own], roi["xpix"][own]] = kept
    return labels, len(stat)


def main() -> None:
    """Run suite2p once and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("movie", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fs", type=float, required=True)
    parser.add_argument("--tau", type=float, required=True)
    parser.add_argument("--diameter", type=float, required=True)
    parser.add_argument("--bad-frames", type=Path)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.bad_frames:  # suite2p looks for bad_frames.npy beside its results
        shutil.copy(args.bad_frames, args.out / "bad_frames.npy")
    db = suite2p.default_db()
    db.update(
        data_path=[str(args.movie.parent)],
        save_path0=str(args.out),
        fast_disk=str(args.out),
        input_format="tif",
    )
    settings = suite2p.default_settings()
    settings.update(fs=args.fs, tau=args.tau, diameter=[args.diameter] * 2, torch_device="cpu")
    settings["registration"]["nonrigid"] = False
    started = time.perf_counter()
    suite2p.run_s2p(db=db, settings=settings)
    seconds = time.perf_counter() - started
    plane = args.out / "suite2p" / "plane0"
    found = np.load(plane / "db.npy", allow_pickle=True).item()  # the plane's frame size
    labels, rois = labels_of(plane, (int(found["Ly"]), int(found["Lx"])))
    np.save(args.out / "labels.npy", labels)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_memory_mb": peak_memory_mb(),
                "rois": rois,
                "cells": int(labels.max()),
            }
        )
    )


if __name__ == "__main__":
    main()
