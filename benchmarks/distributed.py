"""Runs through Celery workers: dispatch latency, throughput, remote live-log latency.

Starts two `pico-nb worker` processes (one slot each) on the machine's PostgreSQL (a fresh
database, dropped afterwards) and Redis (database 13, emptied first), then prints
(a) p50/p95 of the time from calling `Lab.run_experiment` to the pipeline printing its first
line with a free slot waiting (20 runs, one at a time: the dispatch path itself), then over
200 short runs submitted as fast as possible by two users (queueing included), the runs per
second from
the first submission to the last run finishing, and how the runs split between the workers;
(b) p50/p95 of the time from a worker's pipeline printing a line to `Lab.follow_log` yielding
it in this process, over 300 lines 20 ms apart; and a summary line for the README.
Goal: remote follow p95 < 500 ms.

    .venv/bin/python benchmarks/distributed.py [--runs 200] [--lines 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import psycopg
import redis

from pico_nb.lab import Lab
from pico_nb.schemas import RunRecord
from pico_nb.settings import load_settings

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/13"
WORKERS = ("bw1", "bw2")
USERS = ("alice", "bob")

PIPELINE = r"""
import sys, time
print(f"start {time.time()!r}", flush=True)
n = int(sys.argv[sys.argv.index("--lines") + 1])
for i in range(n):
    time.sleep(0.02)
    print(f"t {time.time()!r}", flush=True)
"""

SPEC = """
name = "dispatch"
command = ["{python}", "{spec_dir}/pipeline.py"]
[[params]]
name = "lines"
type = "int"
default = 0
help = "timestamped lines to print, 50 a second"
"""


def quantiles_ms(values: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds, the two figures every goal is stated in."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000


@contextmanager
def fresh_database() -> Iterator[str]:
    """A PostgreSQL database of our own, dropped even if the benchmark fails."""
    name = f"pico_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(root: Path, name: str, values: dict[str, str]) -> subprocess.Popen[bytes]:
    """`pico-nb worker` in its own session and data home, as on a machine of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_NB_")}
    env.update({f"PICO_NB_{key.upper()}": value for key, value in values.items()})
    env["PICO_NB_HOME"] = str(root / f"worker-{name}")
    with open(root / f"worker-{name}.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "pico_nb.cli", "worker", "--name", name, "--slots", "1"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def wait_online(lab: Lab, procs: dict[str, subprocess.Popen[bytes]], root: Path) -> None:
    """Measure only once both workers report, so start-up is not counted as dispatch."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        online = {w.name for w in lab.workers() if w.state == "online"}
        if online >= set(procs):
            return
        if any(proc.poll() is not None for proc in procs.values()):
            break
        time.sleep(0.05)
    logs = "\n".join((root / f"worker-{name}.log").read_text() for name in procs)
    raise RuntimeError(f"workers did not come online (the temp dir goes with us):\n{logs}")


def stop_workers(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Warm shutdown as an operator's SIGTERM does; SIGKILL whatever lingers."""
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def full_log(lab: Lab, run_id: int) -> str:
    """The whole central log, paged, since one read returns at most a limit of bytes."""
    parts, offset = [], 0
    while True:
        chunk = lab.read_log(run_id, offset)
        parts.append(chunk.text)
        if chunk.next_offset == offset:
            return "".join(parts)
        offset = chunk.next_offset


def started_at(log: str) -> float:
    """The pipeline's own clock at its first line: when the run really began."""
    for line in log.splitlines():
        if line.startswith("start "):
            return float(line.split()[1])
    raise RuntimeError(f"no start line in log:\n{log}")


def finished(lab: Lab, run_id: int) -> RunRecord:
    """A run's final record; a run that did not succeed spoils the figures, so it stops us."""
    run = lab.wait(run_id, timeout=600, poll=0.05)
    if run.status != "completed":
        raise RuntimeError(f"run {run_id} ended {run.status}: {run.reason}")
    return run


class Dispatch(NamedTuple):
    """What the burst of runs measured."""

    latencies: list[float]  # seconds from calling run_experiment to the pipeline's first line
    submit_seconds: float  # from the first submission to the last one returning
    rate: float  # runs per second, first submission to last run finished
    split: Counter[str | None]  # runs per worker


def dispatch(labs: list[Lab], frames: Path, out: Path, count: int) -> Dispatch:
    """Submit runs back to back from alternating users, then read each run's start."""
    owners = [labs[i % len(labs)] for i in range(count)]
    experiments = [
        (lab, lab.create_experiment(f"d{i}", str(frames), str(out / f"d{i}")).id)
        for i, lab in enumerate(owners)
    ]
    submitted = []
    for lab, exp_id in experiments:
        called = time.time()
        submitted.append((lab, lab.run_experiment(exp_id).id, called))
    submit_seconds = time.time() - submitted[0][2]
    runs = [(lab, finished(lab, run_id), called) for lab, run_id, called in submitted]
    latencies = [started_at(full_log(lab, run.id)) - called for lab, run, called in runs]
    last = max(run.finished_at.timestamp() for _, run, _ in runs if run.finished_at)
    rate = count / (last - submitted[0][2])
    return Dispatch(latencies, submit_seconds, rate, Counter(run.worker for _, run, _ in runs))


def idle_dispatch(lab: Lab, frames: Path, out: Path, count: int) -> list[float]:
    """Submit one run at a time to idle workers: what dispatch costs when nothing waits."""
    latencies = []
    for i in range(count):
        exp = lab.create_experiment(f"idle{i}", str(frames), str(out / f"idle{i}"))
        called = time.time()
        run = finished(lab, lab.run_experiment(exp.id).id)
        latencies.append(started_at(full_log(lab, run.id)) - called)
    return latencies


def follow(lab: Lab, frames: Path, out: Path, lines: int) -> list[float]:
    """Follow one remote run live from here; each line's delay from print to yield."""
    exp = lab.create_experiment("follow", str(frames), str(out), params={"lines": lines})
    run_id = lab.run_experiment(exp.id).id
    delays = []
    for event in lab.follow_log(run_id):
        if event.line and event.line.startswith("t "):
            delays.append(time.time() - float(event.line.split()[1]))
    finished(lab, run_id)
    if len(delays) != lines:
        raise RuntimeError(f"followed {len(delays)} of {lines} lines")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--lines", type=int, default=300)
    args = parser.parse_args()
    redis.Redis.from_url(BROKER_URL, socket_connect_timeout=3).flushdb()
    with tempfile.TemporaryDirectory() as tmp, fresh_database() as database_url:
        root = Path(tmp)
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "spec.toml").write_text(SPEC)
        data = root / "data"
        frames = data / "frames"
        frames.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(frames / f"frame_{i}.jpg"), np.zeros((8, 8), np.uint8))
        settings = load_settings(
            root / "submitter",
            database_url=database_url,
            executor="celery",
            broker_url=BROKER_URL,
            data_roots=[str(data)],
            pipeline_spec=str(root / "spec.toml"),
        )
        # The submitting Labs migrate the database before any worker opens it.
        labs = [Lab(user=user, settings=settings) for user in USERS]
        env = {
            "database_url": database_url,
            "executor": "celery",
            "broker_url": BROKER_URL,
            "pipeline_spec": str(root / "spec.toml"),
            "data_roots": str(data),
            "heartbeat_seconds": "0.5",
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in WORKERS:
                procs[name] = start_worker(root, name, env)
            wait_online(labs[0], procs, root)
            idle = idle_dispatch(labs[0], frames, data / "idle", 20)
            burst = dispatch(labs, frames, data / "out", args.runs)
            delays = follow(labs[0], frames, data / "follow", args.lines)
        finally:
            stop_workers(procs)
            labs[0].db.engine.dispose()

    i50, i95 = quantiles_ms(idle)
    d50, d95 = quantiles_ms(burst.latencies)
    f50, f95 = quantiles_ms(delays)
    shares = ", ".join(f"{name} {burst.split[name]}" for name in WORKERS)
    print(
        f"dispatch latency to an idle worker over {len(idle)} runs: "
        f"p50 {i50:.0f} ms, p95 {i95:.0f} ms"
    )
    print(
        f"dispatch latency over {len(burst.latencies)} runs from {len(USERS)} users "
        f"(all submitted in {burst.submit_seconds:.1f} s): p50 {d50:.0f} ms, p95 {d95:.0f} ms, "
        f"max {max(burst.latencies) * 1000:.0f} ms"
    )
    print(f"throughput: {burst.rate:.1f} runs/s; runs per worker: {shares}")
    print(
        f"remote live-log latency over {len(delays)} lines: p50 {f50:.1f} ms, "
        f"p95 {f95:.1f} ms, max {max(delays) * 1000:.1f} ms (goal p95 < 500 ms)"
    )
    print()
    print(
        f"dispatch to an idle worker p50 {i50:.0f} ms, p95 {i95:.0f} ms; burst of "
        f"{len(burst.latencies)}: p50 {d50:.0f} ms, p95 {d95:.0f} ms; {burst.rate:.1f} runs/s over "
        f"{len(WORKERS)} workers (1 slot each); remote follow p50 {f50:.0f} ms, "
        f"p95 {f95:.0f} ms (goal < 500 ms)"
    )


if __name__ == "__main__":
    main()
