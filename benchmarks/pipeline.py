"""Benchmark of the built-in pipeline on generated demo movies.

    python benchmarks/pipeline.py [--quick] [--repeat N] [--sizes 512 1000]

Generates (or reuses, under benchmarks/data/, which git ignores) a 512×512×2000 and a
1000×1000×2000 frame_N.jpg movie, runs `python -m pico_nb.pipeline` on each as a real
subprocess, and prints frames per second, per-stage seconds (wall and CPU), peak RSS and
the scores against ground truth. With --repeat, figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pico_nb.pipeline import score, synthetic

DATA = Path(__file__).resolve().parent / "data"
GOALS = {512: (25.0, 2.0), 1000: (None, 4.0)}


def movie(size: int, frames: int) -> Path:
    """The demo movie for this size, generated once and reused."""
    folder = DATA / f"demo_{size}x{size}x{frames}"
    if not (folder / "ground_truth.npz").exists():
        started = time.perf_counter()
        synthetic.generate(folder, size=(size, size), frames=frames, seed=0)
        print(f"generated {folder.name} in {time.perf_counter() - started:.1f}s", flush=True)
    return folder


def run_once(data: Path, out: Path, size: int) -> tuple[float, float, dict]:
    """One pipeline run: (wall seconds, peak RSS in GB, summary.json)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pico_nb.pipeline",
        "--data_path",
        str(data),
        "--out_path",
        str(out),
        "--crop_parameter",
        "0",
        "0",
        str(size),
        str(size),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pipeline failed: {child.stderr.read().decode()}")
    summary = json.loads((out / "summary.json").read_text())
    return wall, usage.ru_maxrss / 2**20, summary


def bench(size: int, frames: int, repeat: int) -> None:
    """Run, repeat, and print the figures for one movie size."""
    data = movie(size, frames)
    out = DATA / "runs" / f"{size}"
    runs = [run_once(data, out, size) for _ in range(repeat)]
    wall = statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs)
    stages = runs[0][2]["stage_seconds"]
    print(f"\n=== {size}×{size}×{frames} frame_N.jpg ({repeat} run{'s' * (repeat > 1)}) ===")
    print(f"end to end: {wall:.1f} s  ({frames / wall:.0f} frames/s), peak RSS {rss:.2f} GB")
    goal_s, goal_gb = GOALS.get(size, (None, None))
    if goal_s:
        print(f"  goal: under {goal_s:.0f} s -> {'met' if wall < goal_s else 'NOT met'}")
    if goal_gb:
        print(f"  goal: peak RSS under {goal_gb:.0f} GB -> {'met' if rss < goal_gb else 'NOT met'}")
    print("stage               wall s   cpu s")
    for name in stages:
        walls = [r[2]["stage_seconds"][name] for r in runs]
        cpus = [r[2].get("stage_cpu_seconds", {}).get(name, 0.0) for r in runs]
        print(f"  {name:<28}{statistics.median(walls):7.2f} {statistics.median(cpus):7.2f}")
    cpu_total = statistics.median(sum(r[2].get("stage_cpu_seconds", {}).values()) for r in runs)
    print(f"  {'all stages, CPU seconds':<28}{'':7} {cpu_total:7.2f}")
    print(score.format_report(score.score(out, data / "ground_truth.npz")))


def main() -> int:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 256×256×500 movie only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per movie (medians)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1000])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average before the run {os.getloadavg()[0]:.1f} "
        "(other processes make wall times longer; CPU seconds are less affected)",
        flush=True,
    )
    if args.quick:
        bench(256, 500, args.repeat)
        return 0
    for size in args.sizes:
        bench(size, args.frames, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
