"""Finished-run folders in the pipeline's summary.json contract, with known cells and traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = (64, 96)
FRAMES = 200
RATE = 10.0
RADIUS = 2


def centres(count: int, seed: int) -> np.ndarray:
    """Cell centres on a grid; a different seed moves every third cell well away."""
    rows, cols = SIZE
    grid = [(y, x) for y in range(6, rows - 5, 9) for x in range(6, cols - 5, 9)]
    points = np.array(grid[:count], float)
    if seed:
        moved = np.arange(len(points)) % 3 == seed % 3
        points[moved] += (4.0, 4.0)
    return points


def write_results(folder: Path, count: int, seed: int = 0, frames: int = FRAMES) -> Path:
    """A run folder as a finished pipeline leaves it; cell k's ΔF/F peaks at k / 10."""
    seg = folder / "seg_results_thresh_pmap_3"
    (folder / "mc").mkdir(parents=True, exist_ok=True)
    seg.mkdir(exist_ok=True)
    labels = np.zeros(SIZE, np.int32)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    for k, (y, x) in enumerate(centres(count, seed), 1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= RADIUS**2] = k
    rng = np.random.default_rng(7)
    t = np.arange(frames)
    dff = rng.normal(0, 0.01, (count, frames)).astype(np.float32)
    for k in range(count):
        dff[k, (k * 7) % frames] += (k + 1) / 10
    np.save(seg / "masks.npy", labels)
    np.save(seg / "dff.npy", dff)
    np.save(seg / "traces.npy", (100 + 50 * dff).astype(np.float32))
    np.save(seg / "correlation_image.npy", (labels > 0).astype(np.float32))
    np.save(folder / "mc" / "reference.npy", rng.random(SIZE).astype(np.float32))
    shifts = np.column_stack([t, np.full(frames, 3.0), np.full(frames, 4.0)])
    np.savetxt(folder / "mc" / "shifts.csv", shifts, delimiter=",", header="frame,y,x")
    summary = {
        "frames": frames,
        "size": list(SIZE),
        "bad_frames": [3, 9],
        "neurons": count,
        "total_seconds": 12.5,
        "stage_seconds": {"segmentation": 4.0, "traces": 2.0},
        "result_dir": seg.name,
        "files": {
            "masks": f"{seg.name}/masks.npy",
            "dff": f"{seg.name}/dff.npy",
            "traces": f"{seg.name}/traces.npy",
            "shifts": "mc/shifts.csv",
        },
        "previews": {"images": []},
        "params": {"fr": RATE, "seed": seed},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder
