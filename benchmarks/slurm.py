"""Runs through Slurm beside the local executor, measured in one run on one machine.

Starts a real one-node Slurm cluster (munged, slurmctld, slurmd as root, 2 CPUs; the test
suite's `tests/slurm_cluster.py`) and uses the machine's PostgreSQL (a fresh database, dropped
afterwards) and Redis (database 13). For each executor it prints (a) p50/p95 of the time from
`Lab.run_experiment` to the pipeline printing its first line, 20 runs one at a time with the
node idle, and (b) for a burst of short runs submitted at once by two users, the runs per
second from the first submission to the last run finishing, with p50/p95 of submit → start
(queueing included). The local executor gets 2 slots, as Slurm has 2 CPUs, so the ratio is
what Slurm's scheduling and a supervisor per job cost.

    sudo .venv/bin/python benchmarks/slurm.py [--runs 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
from distributed import (
    PIPELINE,
    SPEC,
    USERS,
    Dispatch,
    dispatch,
    fresh_database,
    idle_dispatch,
    quantiles_ms,
)

from pico_nb.lab import Lab
from pico_nb.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from slurm_cluster import SlurmCluster  # the test suite's cluster

REDIS_URL = "redis://127.0.0.1:6379/13"


def measure(root: Path, label: str, count: int, **settings: Any) -> tuple[list[float], Dispatch]:
    """Idle dispatch and a burst, on a data home and output folder of this executor's own."""
    data = root / "data"
    values = {
        "data_roots": [str(data)],
        "pipeline_spec": str(root / "spec.toml"),
        "heartbeat_seconds": 0.5,
        **settings,
    }
    home = load_settings(root / label, **values)
    labs = [Lab(user=user, settings=home) for user in USERS]
    try:
        idle = idle_dispatch(labs[0], data / "frames", data / label / "idle", 20)
        burst = dispatch(labs, data / "frames", data / label / "burst", count)
    finally:
        labs[0].db.engine.dispose()
    return idle, burst


def report(label: str, idle: list[float], burst: Dispatch) -> str:
    """One line of figures for an executor."""
    i50, i95 = quantiles_ms(idle)
    d50, d95 = quantiles_ms(burst.latencies)
    return (
        f"{label}: idle start p50 {i50:.0f} ms, p95 {i95:.0f} ms over {len(idle)} runs; "
        f"{len(burst.latencies)} runs at once: {burst.rate:.2f} runs/s, submit → start "
        f"p50 {d50 / 1000:.1f} s, p95 {d95 / 1000:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "pipeline.py").write_text(PIPELINE)
        (root / "spec.toml").write_text(SPEC)
        frames = root / "data" / "frames"
        frames.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(frames / f"frame_{i}.jpg"), np.zeros((8, 8), np.uint8))
        with fresh_database() as local_db:
            local = measure(root, "local", args.runs, database_url=local_db, max_concurrent_runs=2)
        with SlurmCluster(cpus=2).start(root / "slurm") as cluster, fresh_database() as slurm_db:
            slurm = measure(
                root,
                "slurm",
                args.runs,
                database_url=slurm_db,
                executor="slurm",
                slurm_conf=cluster.env["SLURM_CONF"],
                log_stream_url=REDIS_URL,
            )
    print(report("local executor, 2 slots", *local))
    print(report("Slurm, one node of 2 CPUs", *slurm))
    ratio = slurm[1].rate / local[1].rate
    print(f"throughput ratio Slurm / local: {ratio:.2f}")


if __name__ == "__main__":
    main()
