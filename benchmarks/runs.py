"""Runs through the real supervisor: start latency, live-log latency, log throughput.

Prints (a) p50/p95 of the time from calling `Lab.run_experiment` to the pipeline process
printing its first line, over 20 runs; (b) p50/p95 of the time from the pipeline printing a
line to `Lab.follow_log` yielding it, over 1,000 lines; (c) the wall time of a pipeline
printing 1,000,000 lines as fast as it can, under the supervisor and straight into a file,
each timed by the pipeline itself (median of 3), and their ratio.
Goals: start p50 < 500 ms, follow p95 < 100 ms, throughput ratio <= 1.10.

    .venv/bin/python benchmarks/runs.py [--lines 1000] [--runs 20] [--flood 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pico_nb.lab import Lab
from pico_nb.settings import load_settings

PIPELINE = r"""
import sys, time
print(f"start {time.time()!r}", flush=True)
n = int(sys.argv[sys.argv.index("--lines") + 1])
flood = int(sys.argv[sys.argv.index("--flood") + 1])
for i in range(n):
    print(f"t {time.time()!r}", flush=True)
    time.sleep(0.005)
began = time.perf_counter()
write = sys.stdout.write
for i in range(flood):
    write(f"flood line {i} of the throughput benchmark\n")
sys.stdout.flush()
print(f"elapsed {time.perf_counter() - began!r}", flush=True)
"""

SPEC = """
name = "latency"
command = ["{python}", "{spec_dir}/pipeline.py"]
[[params]]
name = "lines"
type = "int"
default = 0
help = "timestamped lines to print, 200 a second"

[[params]]
name = "flood"
type = "int"
default = 0
help = "lines to print as fast as possible"
"""


def percentile(values: list[float], q: float) -> float:
    """Milliseconds at a percentile."""
    return float(np.percentile(values, q)) * 1000


def elapsed(lab: Lab, log: Path) -> float:
    """The pipeline's own timing of its flood, read from the end of its log."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("elapsed "):
            return float(line.split()[1])
    raise RuntimeError(f"no timing in {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--flood", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "spec.toml").write_text(SPEC)
        frames = root / "frames"
        frames.mkdir()
        cv2.imwrite(str(frames / "frame_0.jpg"), np.zeros((8, 8), np.uint8))
        settings = load_settings(
            root / "home", data_roots=[str(root)], pipeline_spec=str(root / "spec.toml")
        )
        lab = Lab(user="bench", settings=settings)

        starts = []
        for i in range(args.runs):
            exp = lab.create_experiment(f"s{i}", str(frames), str(root / f"out{i}"))
            called = time.time()
            run = lab.run_experiment(exp.id)
            for event in lab.follow_log(run.id, poll=0.005):
                if event.line and event.line.startswith("start "):
                    starts.append(float(event.line.split()[1]) - called)
                    break
            lab.wait(run.id, timeout=30, poll=0.05)

        exp = lab.create_experiment(
            "follow", str(frames), str(root / "follow"), params={"lines": args.lines}
        )
        run = lab.run_experiment(exp.id)
        delays = []
        for event in lab.follow_log(run.id):
            if event.line and event.line.startswith("t "):
                delays.append(time.time() - float(event.line.split()[1]))
        lab.wait(run.id, timeout=60)

        supervised, direct = [], []
        argv = lab.spec.to_argv({"flood": args.flood}, str(frames), str(root))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for i in range(3):
            with open(root / f"direct{i}.log", "wb") as out:
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=True)
            direct.append(elapsed(lab, root / f"direct{i}.log"))
            exp = lab.create_experiment(
                f"flood{i}", str(frames), str(root / f"f{i}"), params={"flood": args.flood}
            )
            run = lab.wait(lab.run_experiment(exp.id).id, timeout=300)
            supervised.append(elapsed(lab, Path(run.log_path)))

    print(
        f"start latency over {len(starts)} runs: p50 {percentile(starts, 50):.0f} ms, "
        f"p95 {percentile(starts, 95):.0f} ms (goal p50 < 500 ms)"
    )
    print(
        f"live-log latency over {len(delays)} lines: p50 {percentile(delays, 50):.1f} ms, "
        f"p95 {percentile(delays, 95):.1f} ms, max {max(delays) * 1000:.1f} ms "
        f"(goal p95 < 100 ms)"
    )
    ratio = statistics.median(supervised) / statistics.median(direct)
    print(
        f"{args.flood:,} lines: under the supervisor {statistics.median(supervised):.2f} s, "
        f"straight to a file {statistics.median(direct):.2f} s, ratio {ratio:.2f} (goal <= 1.10)"
    )


if __name__ == "__main__":
    main()
