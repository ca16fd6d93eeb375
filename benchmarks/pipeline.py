"""Benchmark of the built-in pipeline on generated two-photon and one-photon demo movies.

    python benchmarks/pipeline.py [--quick] [--repeat N] [--sizes 512 1000] [--seeds 101 102]
        [--modes two-photon one-photon] [--cell-diameter 7] [--baseline OLD] [--long 30000]
        [--suite2p S/bin/python]

Generates (or reuses, under benchmarks/data/, which git ignores) frame_N.jpg movies with
held-out seeds (no test uses them), runs `python -m pico_nb.pipeline` on each as a real
subprocess and prints, per movie: F1, precision and recall of the neurons, registration
RMS error, bad frames found and false alarms, wall time, peak RSS and per-stage seconds.
When a run suggests other parameters, the suggested clone is run and scored too.

--baseline runs the same movies with an older checkout's pico_nb (e.g. one made with
`git archive main | tar -x -C /tmp/old`) in the same session and prints the ratios, so a
loaded machine still gives a fair comparison. --long N runs an N-frame TIFF movie of the
first size next to a --frames one and prints peak RSS and time per frame for both
(`--sizes 512 --long 30000` is the 30-minute session). --suite2p runs each kind of movie
as a TIFF through pico_nb and through suite2p, installed in an environment of its own (it is
GPL: see suite2p_job.py), and prints both programs' F1, time and memory with the ratios.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import suite2p_side

from pico_nb.pipeline import score, synthetic

DATA = Path(__file__).resolve().parent / "data"
GOALS = {"f1": 0.97, "registration_px": 0.1, "rss_gb_long": 2.0}


@dataclass
class Result:
    """One pipeline run: wall seconds, peak RSS (GB), summary.json and its score."""

    wall: float
    rss: float
    summary: dict[str, Any]
    score: dict[str, Any]


def movie(
    mode: str,
    size: int,
    frames: int,
    seed: int,
    fmt: str = "jpg",
    diameter: float = synthetic.DEFAULT_DIAMETER,
) -> Path:
    """The demo movie for these settings, generated once and reused."""
    cells = "" if diameter == synthetic.DEFAULT_DIAMETER else f"_cells{diameter:g}"
    folder = DATA / f"{mode}_{size}x{size}x{frames}_seed{seed}{cells}_{fmt}"
    if not (folder / "ground_truth.npz").exists():
        started = time.perf_counter()
        synthetic.generate(
            folder,
            size=(size, size),
            frames=frames,
            seed=seed,
            fmt=fmt,
            mode=mode,
            diameter=diameter,
        )
        print(f"generated {folder.name} in {time.perf_counter() - started:.1f}s", flush=True)
    return folder / "movie.tif" if fmt == "tiff" else folder


def run_once(
    data: Path, out: Path, size: int, flags: list[str], code: Path | None = None
) -> Result:
    """One pipeline run as a subprocess, with an older checkout's code when given."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "pico_nb.pipeline", "--data_path", str(data)]
    command += ["--out_path", str(out), "--crop_parameter", "0", "0", str(size), str(size)]
    env = dict(os.environ)
    if code is not None:  # ahead of the installed pico_nb; the working folder comes first
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=code or DATA,
    )
    _, status, _ = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pipeline failed: {child.stderr.read().decode()}")
    summary = json.loads((out / "summary.json").read_text())
    truth = (data if data.is_dir() else data.parent) / "ground_truth.npz"
    rss = summary["peak_memory_mb"] / 1024  # the pipeline's own: ru_maxrss counts this parent
    return Result(wall, rss, summary, score.score(out, truth))


def report(title: str, runs: list[Result]) -> None:
    """Medians of the runs' figures, per-stage seconds, and which goals hold."""
    first = runs[0]
    wall = statistics.median(r.wall for r in runs)
    rss = statistics.median(r.rss for r in runs)
    frames = first.summary["frames"]
    centre = first.score["centre"]
    reg = first.score.get("registration_error_px", {}).get("rms", float("nan"))
    bad = first.score.get("bad_frames", {"found": [], "true": [], "missed": [], "false_alarms": []})
    print(f"\n=== {title} ({len(runs)} run{'s' * (len(runs) > 1)}) ===")
    print(
        f"F1 {centre['f1']:.3f}  precision {centre['precision']:.3f}  recall "
        f"{centre['recall']:.3f}  ({first.score['neurons_found']} found, "
        f"{first.score['neurons_true']} true)"
    )
    print(
        f"registration RMS {reg:.3f} px; bad frames {len(bad['found'])} found of "
        f"{len(bad['true'])}, {len(bad['false_alarms'])} false"
    )
    print(f"wall {wall:.1f} s ({frames / wall:.0f} frames/s), peak RSS {rss:.2f} GB")
    checks = {
        f"F1 ≥ {GOALS['f1']}": centre["f1"] >= GOALS["f1"],
        f"registration ≤ {GOALS['registration_px']} px": reg <= GOALS["registration_px"],
        "every bad frame found, none false": not bad["missed"] and not bad["false_alarms"],
    }
    print("goals: " + "; ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in checks.items()))
    size = first.summary.get("cell_size") or {}
    if size.get("diameter_px"):
        print(f"cell diameter measured: {size['diameter_px']:.1f} px")
    print("  stage                          wall s   cpu s")
    for name in first.summary["stage_seconds"]:
        walls = statistics.median(r.summary["stage_seconds"][name] for r in runs)
        cpus = statistics.median(r.summary["stage_cpu_seconds"].get(name, 0) for r in runs)
        print(f"  {name:<30}{walls:7.2f} {cpus:7.2f}")


def bench(args: argparse.Namespace, mode: str, size: int, seed: int) -> None:
    """Run one movie (and its suggested clone, and the baseline) and print the figures."""
    data = movie(mode, size, args.frames, seed, diameter=args.cell_diameter)
    out = DATA / "runs" / f"{mode}_{size}_{seed}"
    runs = [run_once(data, out, size, []) for _ in range(args.repeat)]
    title = f"{mode} {size}×{size}×{args.frames} JPEG, cells {args.cell_diameter:g} px, "
    title += f"seed {seed}, defaults"
    report(title, runs)
    suggested = runs[0].summary.get("suggestions", {}).get("params")
    if suggested:
        flags = [str(v) for k, value in suggested.items() for v in (f"--{k}", value)]
        print(f"suggested: {' '.join(flags)}")
        report(f"{mode} {size}, suggested clone", [run_once(data, out, size, flags)])
    if args.baseline:
        old = [run_once(data, out, size, [], args.baseline) for _ in range(args.repeat)]
        report(f"{mode} {size}, baseline code {args.baseline}", old)
        ratio = statistics.median(r.wall for r in runs) / statistics.median(r.wall for r in old)
        print(f"wall time new / baseline: {ratio:.2f}")


def bench_long(args: argparse.Namespace) -> None:
    """Peak RSS and time per frame of a long TIFF recording next to a --frames one."""
    size = args.sizes[0]
    rows = []
    for frames in (args.frames, args.long):
        data = movie("two-photon", size, frames, 101, "tiff")
        result = run_once(data, DATA / "runs" / f"long_{size}_{frames}", size, [])
        report(f"two-photon {size}×{size}×{frames} TIFF", [result])
        rows.append((frames, result.wall / frames * 1000, result.rss))
    (n0, ms0, gb0), (n1, ms1, gb1) = rows
    met = "met" if gb1 < GOALS["rss_gb_long"] else "NOT met"
    print(
        f"\nlong recording: {n1} frames {ms1:.2f} ms/frame, {gb1:.2f} GB; {n0} frames "
        f"{ms0:.2f} ms/frame, {gb0:.2f} GB; time per frame ratio {ms1 / ms0:.2f}; "
        f"peak RSS < {GOALS['rss_gb_long']:.0f} GB: {met}"
    )


def bench_suite2p(args: argparse.Namespace) -> None:
    """Each kind of movie as one TIFF, run by pico_nb and by suite2p in the same session."""
    size, seed = args.sizes[0], args.seeds[0]
    for mode in args.modes:
        data = movie(mode, size, args.frames, seed, "tiff", args.cell_diameter)
        ours = run_once(data, DATA / "runs" / f"side_{mode}_{size}", size, [])
        report(f"{mode} {size}×{size}×{args.frames} TIFF, pico_nb defaults", [ours])
        out = DATA / "runs" / f"suite2p_{mode}_{size}"
        theirs = suite2p_side.run_suite2p(args.suite2p, data, out, args.cell_diameter)
        title = f"{mode} {size}×{size}×{args.frames}"
        suite2p_side.report(title, ours.wall, ours.rss, ours.score["centre"]["f1"], theirs)


def main() -> int:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256×256×500 movies only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per movie (medians)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1000])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101])
    parser.add_argument("--modes", nargs="+", choices=synthetic.MODES, default=synthetic.MODES)
    parser.add_argument("--cell-diameter", type=float, default=synthetic.DEFAULT_DIAMETER)
    parser.add_argument("--baseline", type=Path, help="an older checkout to compare with")
    parser.add_argument("--long", type=int, help="also run a N-frame TIFF (first size)")
    parser.add_argument(
        "--suite2p",
        type=Path,
        help="suite2p's Python: also run each kind side by side (first size)",
    )
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(other processes make wall times longer; CPU seconds are less affected)",
        flush=True,
    )
    if args.quick:
        args.sizes, args.frames = [256], 500
    for mode in args.modes:
        for size in args.sizes:
            for seed in args.seeds:
                bench(args, mode, size, seed)
    if args.long:
        bench_long(args)
    if args.suite2p:
        bench_suite2p(args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
