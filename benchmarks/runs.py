"""Run latencies through the real supervisor: start latency and live-log latency.

Prints p50/p95 of (a) the time from calling `Lab.run_experiment` to the pipeline process
printing its first line, over 20 runs, and (b) the time from the pipeline printing a line to
`Lab.follow_log` yielding it, over 1,000 lines. Goals: start p50 < 500 ms, follow p95 < 100 ms.

    .venv/bin/python benchmarks/run_latency.py [--lines 1000] [--runs 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pico_nb.lab import Lab
from pico_nb.settings import load_settings

PIPELINE = """
import sys, time
print(f"start {time.time()!r}", flush=True)
n = int(sys.argv[sys.argv.index("--lines") + 1])
for i in range(n):
    print(f"t {time.time()!r}", flush=True)
    time.sleep(0.005)
"""

SPEC = """
name = "latency"
command = ["{python}", "{spec_dir}/pipeline.py"]
[[params]]
name = "lines"
type = "int"
default = 0
help = "lines to print"
"""


def percentile(values: list[float], q: float) -> float:
    """Milliseconds at a percentile."""
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "spec.toml").write_text(SPEC)
        frames = root / "frames"
        frames.mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(frames / "frame_0.jpg")
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

    print(
        f"start latency over {len(starts)} runs: p50 {percentile(starts, 50):.0f} ms, "
        f"p95 {percentile(starts, 95):.0f} ms (goal p50 < 500 ms)"
    )
    print(
        f"live-log latency over {len(delays)} lines: p50 {percentile(delays, 50):.1f} ms, "
        f"p95 {percentile(delays, 95):.1f} ms, max {max(delays) * 1000:.1f} ms "
        f"(goal p95 < 100 ms)"
    )


if __name__ == "__main__":
    main()
