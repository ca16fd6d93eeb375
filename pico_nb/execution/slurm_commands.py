"""Slurm's commands as pico-nb uses them, and what Slurm's states mean in words.

Every command runs as an argument list (never a shell) with ``SLURM_CONF`` from the settings,
and a timeout, so an unreachable controller costs seconds, not a hung page. A command that
fails is either *unreachable* (the controller does not answer: try again later) or *refused*
(Slurm said no to what we asked: say so to the person). Without slurmdbd there is no `sacct`:
a finished job's state, reason and exit code come from `scontrol show job`, which keeps jobs
for the cluster's MinJobAge (300 s by default) after they end.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pico_nb.execution.runas import as_member

if TYPE_CHECKING:
    from pico_nb.settings import Settings

TIMEOUT = 30.0
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
        "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
    }
)  # fmt: skip
_UNREACHABLE = re.compile(
    r"unable to contact slurm controller|socket timed out|connection refused|"
    r"zero bytes were transmitted|temporarily unavailable|communication connection failure",
    re.IGNORECASE,
)
OOM = "out of memory (Slurm OOM)"
_UNKNOWN_JOB = re.compile(r"invalid job id", re.IGNORECASE)


class SlurmUnreachable(Exception):
    """Slurm's controller did not answer, or this machine has no Slurm commands."""


class SlurmRefused(Exception):
    """Slurm answered no: a bad partition, account, time limit or option."""


@dataclass(frozen=True)
class JobView:
    """What Slurm says of one job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETING, COMPLETED, TIMEOUT, …
    reason: str  # Slurm's reason code: Priority, Resources, TimeLimit, None, …
    node: str = ""
    time_limit: str = ""
    exit_code: str = ""  # "status:signal", e.g. "0:9"

    @property
    def final(self) -> bool:
        """The job will not change any more."""
        return self.state in FINAL_STATES


def slurm_env(settings: Settings) -> dict[str, str]:
    """The environment Slurm's commands run in: ours, pointed at the configured cluster."""
    env = dict(os.environ)
    if settings.slurm_conf:
        env["SLURM_CONF"] = settings.slurm_conf
    return env


def run(
    settings: Settings,
    argv: list[str],
    stdin: str | None = None,
    account: str | None = None,
    cwd: str = "/",
) -> str:
    """Run one Slurm command, as the member ``account`` if given (so the job is theirs, and
    the cluster's accounting and fair share apply to them); its output, or SlurmUnreachable
    or SlurmRefused."""
    env = slurm_env(settings)
    if account:
        try:
            argv, env = as_member(account, cwd, argv, env)
        except OSError as exc:
            raise SlurmRefused(str(exc)) from exc
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise SlurmUnreachable(
            f"{argv[0]} is not installed here: this machine is not a Slurm submit host"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnreachable(f"{argv[0]} got no answer within {TIMEOUT:g} s") from exc
    if done.returncode:
        message = _message(done.stderr) or f"{argv[0]} exited {done.returncode}"
        kind = SlurmUnreachable if _UNREACHABLE.search(message) else SlurmRefused
        raise kind(message)
    return done.stdout


def _message(stderr: str) -> str:
    """Slurm's error without its `sbatch: error:` prefixes, on one line."""
    lines = [re.sub(r"^\w+: error: ", "", line).strip() for line in stderr.splitlines()]
    return "; ".join(line for line in lines if line)


def sbatch(
    settings: Settings, options: list[str], script: str, account: str | None = None, cwd: str = "/"
) -> str:
    """Submit a batch script given on stdin, as ``account`` if given; the new job's id."""
    out = run(settings, ["sbatch", "--parsable", *options], script, account, cwd)
    return out.strip().split(";")[0]


def scancel(settings: Settings, job_id: str, *options: str, account: str | None = None) -> None:
    """Signal or cancel a job (as its owner, if given); one already ended is not an error."""
    try:
        run(settings, ["scancel", *options, job_id], account=account)
    except SlurmRefused as exc:
        if not _UNKNOWN_JOB.search(str(exc)) and "already completing" not in str(exc):
            raise


def show_job(settings: Settings, job_id: str) -> JobView | None:
    """`scontrol show job`: the job's state, reason, node, limit and exit code; None if Slurm
    no longer knows it."""
    try:
        out = run(settings, ["scontrol", "-o", "show", "job", job_id])
    except SlurmRefused as exc:
        if _UNKNOWN_JOB.search(str(exc)):
            return None
        raise
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return JobView(
        job_id=job_id,
        state=fields.get("JobState", ""),
        reason=fields.get("Reason", ""),
        node=fields.get("NodeList", "") if fields.get("NodeList") != "(null)" else "",
        time_limit=fields.get("TimeLimit", ""),
        exit_code=fields.get("ExitCode", ""),
    )


def jobs(settings: Settings, job_ids: Iterable[str]) -> dict[str, JobView]:
    """Every listed job Slurm still knows, in one squeue call (finished ones included)."""
    ids = sorted(set(job_ids), key=int)
    if not ids:
        return {}
    try:
        out = run(
            settings,
            ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%N|%l"],
        )
    except SlurmRefused as exc:  # one forgotten id fails the whole list: ask one by one
        if not _UNKNOWN_JOB.search(str(exc)):
            raise
        return {i: view for i in ids if (view := show_job(settings, i)) is not None}
    views = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 5 and parts[0] in ids:
            job_id, state, reason, node, limit = parts
            views[job_id] = JobView(job_id, state, reason, node, limit)
    return views


@dataclass(frozen=True)
class NodeView:
    """What sinfo says of one node of the partition."""

    name: str
    state: str  # idle, mixed, allocated, down, drained, … (a suffix *, ~, # marks a condition)
    cpus: int | None
    cpus_busy: int | None  # allocated to jobs, anyone's
    memory_mb: int | None
    free_memory_mb: int | None
    gres: str  # generic resources, e.g. gpu:2; "" for none

    @property
    def up(self) -> bool:
        """The node takes jobs."""
        return self.state.rstrip("*~#") in ("idle", "mixed", "allocated")


def nodes(settings: Settings) -> list[NodeView]:
    """The partition's nodes from sinfo: name, state, CPUs, memory, GPUs (gres)."""
    argv = ["sinfo", "-h", "-N", "-o", "%N|%T|%C|%m|%e|%G"]
    if settings.slurm_partition:
        argv += ["-p", settings.slurm_partition]
    out = run(settings, argv)
    found = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 6:
            name, state, cpus, memory, free, gres = parts
            allocated, _idle, _other, total = [*cpus.split("/"), "", "", ""][:4]
            found.append(
                NodeView(
                    name=name,
                    state=state,
                    cpus=_count(total),
                    cpus_busy=_count(allocated),
                    memory_mb=_count(memory),
                    free_memory_mb=_count(free),
                    gres="" if gres == "(null)" else gres,
                )
            )
    return found


def _count(text: str) -> int | None:
    """A number sinfo printed, or None for its "N/A" and blanks."""
    return int(text) if text.strip().isdigit() else None


def ending(view: JobView) -> str | None:
    """Why Slurm ended (or is ending) a job, in words; None if Slurm did not end it itself."""
    state, reason = view.state, view.reason
    if state == "TIMEOUT" or reason == "TimeLimit":
        return f"killed by Slurm: TIME LIMIT after {_limit(view.time_limit)}"
    if state == "OUT_OF_MEMORY" or reason == "OutOfMemory":
        return OOM
    if state == "NODE_FAIL" or reason == "NodeDown":
        return f"killed by Slurm: node {view.node or '?'} failed"
    if state == "PREEMPTED":
        return "killed by Slurm: preempted by a higher-priority job"
    if state == "DEADLINE":
        return "killed by Slurm: its deadline passed"
    if state == "BOOT_FAIL":
        return f"killed by Slurm: node {view.node or '?'} failed to boot"
    if state == "CANCELLED":
        return "cancelled in Slurm (scancel), not through pico-nb"
    return None


def _limit(time_limit: str) -> str:
    """Slurm's time limit as a person writes it: 00:01:00 → 0:01:00, 1-00:00:00 stays."""
    if re.fullmatch(r"0\d:\d\d:\d\d", time_limit):
        return time_limit[1:]
    return time_limit or "its time limit"


def pending(view: JobView) -> str:
    """A queued run's line while Slurm holds its job."""
    if view.state == "PENDING":
        return f"Slurm job {view.job_id}: PENDING ({view.reason})"
    where = f" on {view.node}" if view.node else ""
    return f"Slurm job {view.job_id}: {view.state}{where}, starting pico-nb"
