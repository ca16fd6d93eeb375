"""The one-node Slurm cluster the Slurm executor is tested on: jobs run, are signalled, queue."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm

# What the executor's job does: the batch step execs a Python that handles SIGTERM itself.
ON_TERM = """\
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("got TERM", flush=True), sys.exit(0)))
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One cluster per module: it starts in about a second and each test cancels its jobs."""
    with SlurmCluster().start(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def python_job(code: str) -> str:
    """A --wrap command that becomes this Python running `code`, so signals reach it."""
    return f"exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_a_job_runs_and_writes_its_output(slurm: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job = slurm.sbatch(f"--output={out}", "--wrap", "echo hello from $SLURM_JOB_ID")
    fields = slurm.wait_finished(job)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    assert out.read_text() == f"hello from {job}\n"


def test_scancel_term_reaches_the_batch_step(slurm: SlurmCluster, tmp_path: Path) -> None:
    """`--batch` is needed: plain `scancel --signal=TERM` skips the batch step."""
    out = tmp_path / "job.out"
    job = slurm.sbatch(f"--output={out}", "--wrap", python_job(ON_TERM))
    slurm.wait(lambda: out.exists() and "ready" in out.read_text(), 30, "the job to start")
    slurm.run("scancel", "--batch", "--signal=TERM", job)
    fields = slurm.wait_finished(job)
    ours = [line for line in out.read_text().splitlines() if not line.startswith("slurmstepd")]
    assert ours == ["ready", "got TERM"]  # slurmstepd adds "*** JOB … CANCELLED AT … ***"
    assert fields["JobState"] == "COMPLETED"  # the job's own exit status, not CANCELLED


def test_a_job_waits_pending_with_slurms_reason(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Two 1-CPU jobs fill the 2-CPU node; squeue gives the third's state and reason."""

    def state(job: str) -> str:
        return slurm.run("squeue", "-h", "-j", job, "-o", "%T %r")

    jobs = [slurm.sbatch(f"--output={tmp_path}/%j.out", "--wrap", "sleep 300") for _ in range(3)]
    try:
        slurm.wait(lambda: [state(j) for j in jobs[:2]] == ["RUNNING None"] * 2, 30, "2 running")
        assert state(jobs[2]) == "PENDING Resources"
    finally:
        slurm.run("scancel", *jobs)
    assert {slurm.wait_finished(j)["JobState"] for j in jobs} == {"CANCELLED"}


def test_a_job_over_its_memory_is_killed(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Only the cgroup plugins report OUT_OF_MEMORY; linuxproc's polling kills with SIGKILL."""
    out = tmp_path / "job.out"
    grow = "import time; a = b'x' * (400 << 20); time.sleep(60)"  # touched pages, not calloc's
    job = slurm.sbatch(f"--output={out}", "--mem=100M", "--wrap", python_job(grow))
    fields = slurm.wait_finished(job)
    if slurm.cgroups:
        assert (fields["JobState"], fields["Reason"]) == ("OUT_OF_MEMORY", "OutOfMemory")
    else:
        assert (fields["JobState"], fields["ExitCode"]) == ("FAILED", "0:9")
        assert "exceeded memory limit" in out.read_text()
