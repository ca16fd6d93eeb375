"""The cell viewer on a big run: 1,000 cells × 20,000 frames (an 80 MB ΔF/F file).

Prints (a) the time to open the viewer (`CellViewer(run_id)`: cell table with per-cell SNR,
outline image, markers), first open and the median of later opens; (b) the median time to show
one cell's trace (`viewer.pick([cell])`: read from the memory map, plot); (c) the kernel's RSS
before, after and at its peak; and, as the baseline measured in the same process, the time to
load the whole ΔF/F file into memory, which a non-lazy viewer would pay on every open.
Goals: open < 2 s, trace < 200 ms, kernel memory < 500 MB.

    .venv/bin/python benchmarks/viewer.py [--cells 1000] [--frames 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from pico_nb.lab import Lab
from pico_nb.models import Run, utcnow
from pico_nb.settings import load_settings


def write_run(folder: Path, cells: int, frames: int, size: int = 512) -> None:
    """A finished run folder in the summary.json contract, written in row blocks."""
    seg = folder / "seg"
    seg.mkdir(parents=True)
    (folder / "mc").mkdir()
    labels = np.zeros((size, size), np.int32)
    side = int(np.ceil(np.sqrt(cells)))
    step = size // side
    yy, xx = np.mgrid[:size, :size]
    for k in range(cells):
        y, x = (k // side) * step + step // 2, (k % side) * step + step // 2
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= 16] = k + 1
    np.save(seg / "masks.npy", labels)
    np.save(folder / "mc" / "reference.npy", np.random.default_rng(0).random((size, size)))
    dff = np.lib.format.open_memmap(seg / "dff.npy", "w+", np.float32, (cells, frames))
    rng = np.random.default_rng(1)
    for start in range(0, cells, 100):
        block = rng.normal(0, 0.05, (min(100, cells - start), frames)).astype(np.float32)
        block[:, ::500] += 1.0
        dff[start : start + len(block)] = block
    dff.flush()
    del dff
    summary = {
        "neurons": cells,
        "frames": frames,
        "result_dir": "seg",
        "files": {"masks": "seg/masks.npy", "dff": "seg/dff.npy"},
        "params": {"fr": 20.0},
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def finished_run(lab: Lab, data: Path, cells: int, frames: int) -> int:
    """An experiment whose run 1 finished with the big results (recorded, not executed)."""
    frames_dir = data / "input"
    frames_dir.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames_dir / f"frame_{i}.jpg"), np.zeros((16, 16), np.uint8))
    exp = lab.create_experiment("viewer benchmark", str(frames_dir), str(data / "out"))
    folder = data / "out" / "run-0001"
    write_run(folder, cells, frames)
    with lab.db.write() as session:
        now = utcnow()
        run = Run(
            experiment_id=exp.id,
            number=1,
            user_id=lab._user_id,
            status="completed",
            argv=[],
            params=exp.params,
            input_path=exp.input_path,
            output_path=str(folder),
            log_path=str(data / "log"),
            queued_at=now,
            started_at=now,
            finished_at=now,
            exit_code=0,
            reason="exit code 0",
        )
        session.add(run)
        session.flush()
        return run.id


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from pico_nb.widgets.cells import CellViewer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        lab = Lab(user="bench", settings=load_settings(data / "home", data_roots=[str(data)]))
        run_id = finished_run(lab, data, args.cells, args.frames)
        dff_file = data / "out" / "run-0001" / "seg" / "dff.npy"
        before = rss_mb()
        began = time.perf_counter()
        viewer = CellViewer(run_id, lab)
        first_open = time.perf_counter() - began
        opens = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            CellViewer(run_id, lab).close()
            opens.append(time.perf_counter() - began)
        traces = []
        rng = np.random.default_rng(2)
        for cell in rng.integers(1, args.cells + 1, args.repeat * 4):
            began = time.perf_counter()
            viewer.pick([int(cell)])
            traces.append(time.perf_counter() - began)
        after = rss_mb()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        loads = []
        for _ in range(3):
            began = time.perf_counter()
            whole = np.load(dff_file)
            loads.append(time.perf_counter() - began)
            del whole
        baseline = statistics.median(loads)
    load = os.getloadavg()
    print(f"{args.cells:,} cells × {args.frames:,} frames; load average {load[0]:.2f}")
    print(
        f"open viewer: first {first_open * 1000:.0f} ms, median of {args.repeat} later "
        f"{statistics.median(opens) * 1000:.0f} ms (goal < 2000 ms)"
    )
    print(
        f"show a trace: median {statistics.median(traces) * 1000:.1f} ms, "
        f"max {max(traces) * 1000:.1f} ms over {len(traces)} (goal < 200 ms)"
    )
    print(
        f"kernel RSS: {before:.0f} MB before, {after:.0f} MB after, peak {peak:.0f} MB "
        "(goal < 500 MB)"
    )
    print(
        f"baseline, load the whole dF/F file: median {baseline * 1000:.0f} ms; first open / "
        f"baseline = {first_open / baseline:.2f}, trace / baseline = "
        f"{statistics.median(traces) / baseline:.3f}"
    )


if __name__ == "__main__":
    main()
