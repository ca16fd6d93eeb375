"""Soak: many short runs under random faults; print every run whose record disagrees with what
happened. Goal: 0 disagreements.

Faults, one per run, chosen at random: none (exit 0 or 3), a stop at a random moment from 0 to
300 ms after `run_experiment` (queued, just claimed, starting or running), a stop once the
pipeline runs, SIGKILL of the pipeline, SIGKILL of the supervisor, SIGKILL of a helper-holding
pipeline's main process, and SIGKILL of the calling process 0-120 ms into `run_experiment`.
Runs go through the real supervisor on SQLite (or --database-url), several trials at once, so
stops race claims for the slots.

    .venv/bin/python benchmarks/soak.py [--runs 500] [--parallel 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import psutil

from pico_nb.lab import Lab
from pico_nb.models import Run
from pico_nb.settings import Settings, load_settings

PIPELINE = r"""
import os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
if args["--helper"] == "true":  # leave a helper that ignores SIGTERM and keeps stdout open
    os.execvp("sh", ["sh", "-c", "(trap '' TERM; exec sleep 600) & echo main $$; exec sleep 600"])
print(f"main {os.getpid()}", flush=True)
for i in range(int(args["--lines"])):
    print(f"line {i}", flush=True)
if args["--wait_file"]:
    print("waiting", flush=True)
    while not os.path.exists(args["--wait_file"]):
        time.sleep(0.02)
print("finished", flush=True)
sys.exit(int(args["--exit_code"]))
"""

SPEC = """
name = "soak"
command = ["{python}", "{spec_dir}/pipeline.py"]
[[params]]
name = "lines"
type = "int"
default = 3
[[params]]
name = "wait_file"
type = "str"
default = ""
[[params]]
name = "exit_code"
type = "int"
default = 0
[[params]]
name = "helper"
type = "bool"
default = false
"""

CALLER = """
import sys
from pico_nb.lab import Lab
from pico_nb.settings import Settings
lab = Lab(user="soak", settings=Settings.model_validate_json(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
lab.run_experiment(int(sys.argv[2]))
print("returned", flush=True)
"""

FAULTS = (
    "none",
    "stop_at_random",
    "stop_running",
    "kill_pipeline",
    "kill_supervisor",
    "kill_helper_main",
    "kill_caller",
)
TIMEOUT = 180.0  # seconds a run may take to end after its fault (--timeout)


class Soak:
    """One data home, one pipeline, and the trials run against them."""

    def __init__(self, root: Path, settings: Settings, timeout: float) -> None:
        self.root, self.settings, self.timeout = root, settings, timeout
        self.frames = root / "frames"
        self.lab = Lab(user="soak", settings=settings)

    def trial(self, i: int, fault: str) -> str | None:
        """Run one trial; None if the record tells what happened, else what it got wrong."""
        try:
            return self._trial(i, fault)
        except Exception as exc:  # a trial that breaks is a finding too, not the end of the soak
            return f"the trial failed: {exc!r}"

    def _trial(self, i: int, fault: str) -> str | None:
        """Make the experiment, start the run, inject the fault, check the outcome."""
        lab = Lab(user="soak", settings=self.settings)
        gate = self.root / f"gate{i}"
        params: dict[str, object] = {"lines": 3}
        if fault == "none":
            params["exit_code"] = random.choice((0, 3))
        else:
            params["wait_file"] = str(gate)
        if fault == "kill_helper_main":
            params["helper"] = True
        exp = lab.create_experiment(
            f"t{i}", str(self.frames), str(self.root / f"out{i}"), params=params
        )
        if fault == "kill_caller":
            return self._kill_caller(lab, exp.id, gate)
        run = lab.run_experiment(exp.id)
        if fault == "stop_at_random":
            time.sleep(random.uniform(0, 0.3))
            lab.stop_run(run.id)
            return self._expect(lab, run.id, "cancelled", "stopped by soak")
        if fault != "none":
            main = self._wait_running(lab, run.id, fault == "kill_helper_main")
            if main is None:
                return f"{fault}: the pipeline never said it started ({lab.get_run(run.id).status})"
        if fault == "stop_running":
            lab.stop_run(run.id)
            return self._expect(lab, run.id, "cancelled", "stopped by soak")
        if fault in ("kill_pipeline", "kill_helper_main"):
            os.kill(main, signal.SIGKILL)  # type: ignore[arg-type]
            return self._expect(lab, run.id, "failed", "killed by SIGKILL")
        if fault == "kill_supervisor":
            with lab.db.read() as session:
                supervisor = session.get(Run, run.id).supervisor_pid
            os.kill(supervisor, signal.SIGKILL)
            return self._expect(lab, run.id, "failed", "lost: supervisor stopped reporting")
        code = params["exit_code"]
        return self._expect(
            lab, run.id, "completed" if code == 0 else "failed", f"exit code {code}", whole=True
        )

    def _wait_running(self, lab: Lab, run_id: int, helper: bool) -> int | None:
        """The pipeline's main pid, once it printed it and its supervisor recorded it."""
        main = None
        for event in lab.follow_log(run_id):
            if event.line and event.line.startswith("main "):
                main = int(event.line.split()[1])
            if main and (helper or event.line == "waiting"):
                break
        deadline = time.monotonic() + self.timeout
        while main and lab.get_run(run_id).pid is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return main

    def _kill_caller(self, lab: Lab, exp_id: int, gate: Path) -> str | None:
        """SIGKILL a caller 0-120 ms into run_experiment: the run, if made, must still complete."""
        caller = subprocess.Popen(
            [sys.executable, "-c", CALLER, self.settings.model_dump_json(), str(exp_id)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert caller.stdin and caller.stdout
        caller.stdout.readline()  # imports done: the kill lands inside run_experiment
        caller.stdin.write("go\n")
        caller.stdin.flush()
        time.sleep(random.uniform(0, 0.12))
        caller.kill()
        caller.wait()
        gate.touch()
        runs = lab.runs(exp_id)
        if not runs:
            return None  # killed before the run was recorded: nothing to tell
        return self._expect(lab, runs[0].id, "completed", "exit code 0", whole=True)

    def _expect(
        self, lab: Lab, run_id: int, status: str, reason: str, *, whole: bool = False
    ) -> str | None:
        """Wait for the run's end and compare its record (and log) with what was done."""
        done = lab.wait(run_id, timeout=self.timeout)
        problems = []
        if (done.status, (done.reason or "")[: len(reason)]) != (
            status,
            reason,
        ):
            problems.append(f"recorded {done.status} ({done.reason}), expected {status} ({reason})")
        path = Path(done.log_path)
        log = path.read_text(errors="replace") if path.exists() else ""
        if whole and not all(f"line {i}\n" in log for i in range(3)):
            problems.append("log lines missing")
        why = done.reason or ""
        unlogged = why.startswith("lost") or why.endswith("while queued")
        if not done.active and not unlogged and f"# finished: {done.status}" not in log:
            problems.append("log has no final line")
        if done.pid and psutil.pid_exists(done.pid):
            with_status = psutil.Process(done.pid).status()
            if with_status != psutil.STATUS_ZOMBIE:
                problems.append(f"pipeline {done.pid} still {with_status}")
        return "; ".join(problems) or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "spec.toml").write_text(SPEC)
        (root / "frames").mkdir()
        cv2.imwrite(str(root / "frames" / "frame_0.jpg"), np.zeros((8, 8), np.uint8))
        settings = load_settings(
            root / "home",
            database_url=args.database_url,
            data_roots=[str(root)],
            pipeline_spec=str(root / "spec.toml"),
            max_concurrent_runs=max(1, args.parallel // 2),  # trials wait for slots: races
            heartbeat_seconds=0.5,
            lost_after_seconds=3,
            stop_grace_seconds=2,
        )
        soak = Soak(root, settings, args.timeout)
        faults = [random.choice(FAULTS) for _ in range(args.runs)]
        began = time.monotonic()
        with ThreadPoolExecutor(args.parallel) as pool:
            outcomes = list(pool.map(lambda item: soak.trial(*item), enumerate(faults)))
        took = time.monotonic() - began
    disagreements = [(i, f, o) for i, (f, o) in enumerate(zip(faults, outcomes, strict=True)) if o]
    for i, fault, outcome in disagreements:
        print(f"run {i} ({fault}): {outcome}")
    print(
        json.dumps(
            {
                "runs": args.runs,
                "seed": seed,
                "faults": Counter(faults),
                "disagreements": len(disagreements),
                "seconds": round(took, 1),
                "load_average": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
