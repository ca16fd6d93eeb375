"""Run bookkeeping every executor shares: the final record, the queue lock, provenance, launch
plans, process identity, signalling a pipeline's group, and reconcile (runs whose supervisor
stopped reporting are failed as lost; what they left running is killed).

The local executor, the Celery worker and the supervisor all import from here, and this module
imports none of them, so execution has no import cycle.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
from datetime import timedelta
from functools import cache
from importlib import metadata
from typing import Any

import psutil
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pico_nb.contract.errors import NotFound
from pico_nb.contract.spec import PipelineSpec
from pico_nb.db import QUEUE_LOCK, Database, advisory_xact_lock
from pico_nb.execution.runas import owner_account
from pico_nb.models import Run, utcnow
from pico_nb.settings import Settings

HOST = socket.gethostname()
START_TOLERANCE = 0.05
"""Seconds two readings of one process's start time may differ by (clock ticks, rounding)."""
_PACKAGES = ("pico-nb", "numpy", "scipy", "opencv-python-headless", "tifffile")


@cache
def _versions() -> dict[str, str]:
    """Versions of the packages that shape results, read once per process."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance(spec: PipelineSpec, argv: list[str], username: str) -> dict[str, Any]:
    """Enough to say later exactly what produced a result."""
    return {
        "pipeline": spec.name,
        "pipeline_version": spec.version,
        "command": spec.base_command(),
        **machine(),
        "user": username,
        "argv_length": len(argv),
    }


def machine() -> dict[str, Any]:
    """The machine a run executes on and the package versions there."""
    return {"packages": _versions(), "host": HOST, "platform": platform.platform()}


def run_row(session: Session, run_id: int) -> Run:
    """A run's record by id; runs are never deleted, so a missing one is a bad id."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def lock_queue(session: Session) -> None:
    """Serialise queue changes: SQLite's BEGIN IMMEDIATE already does; PostgreSQL needs a lock."""
    advisory_xact_lock(session, QUEUE_LOCK)


def finish(run: Run, status: str, reason: str, **fields: Any) -> None:
    """Close a run's record in one place so every ending looks the same."""
    run.status = status
    run.reason = reason
    run.finished_at = utcnow()
    for key, value in fields.items():
        setattr(run, key, value)


def launch_plan(
    run: Run, settings: Settings, log_path: str | None = None, hide_gpus: bool = False
) -> dict[str, Any]:
    """What the supervisor needs to start the pipeline before it loads the database stack."""
    if run.started_at is None:
        raise RuntimeError(f"run {run.id} has no launch plan until it is claimed")
    gpus = run.gpus or ""
    where = f"{HOST} ({run.worker})" if run.worker else HOST
    return {
        "argv": list(run.argv),
        "account": owner_account(settings, run.user.username),
        "log_path": log_path or run.log_path,
        "output_path": run.output_path,
        "gpus": gpus if gpus or hide_gpus else None,
        "header": [
            f"# experiment {run.experiment_id}: {run.experiment.name}",
            f"# run {run.number} by {run.user.username} on {where}"
            + (f", GPU {gpus}" if gpus else ""),
            f"# started {run.started_at.isoformat(timespec='seconds')}",
            "# command: " + subprocess.list2cmdline(run.argv),
        ],
    }


def alive(pid: int | None, started: float | None) -> bool:
    """The process with this pid and start time exists and is not a zombie.

    A pid alone is not an identity: after a reboot, or a long uptime, another process has it.
    A record without a start time (written before they were kept) falls back to the pid.
    """
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > START_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_group(pgid: int | None, signum: int) -> None:
    """Signal a pipeline's process group, which may already be gone."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def kill_orphans(run: Run) -> None:
    """Kill what is left of a pipeline whose supervisor vanished: its group and session.

    A supervisor killed before it recorded the pipeline's group still left the pipeline in its
    own session, so the session id finds it. An id counts only while it still names the run's
    own processes (see `_still_ours`): after a reboot they belong to strangers.
    """
    groups = {run.pgid} if _still_ours(run.pgid, run.pipeline_start) else set()
    if _still_ours(run.supervisor_pid, run.supervisor_start):
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if os.getsid(pid) == run.supervisor_pid:
                    groups.add(os.getpgid(pid))
    for group in groups:
        signal_group(group, signal.SIGKILL)


def _still_ours(leader: int | None, started: float | None) -> bool:
    """A group or session id is the run's while its leader is the run's process, or is gone.

    The kernel never gives a new process a pid still in use as a group or session id, so an
    id whose leader died is still held only by the leader's descendants. From before the last
    boot, nothing of the run can be left.
    """
    if not leader:
        return False
    if started is None:
        return True  # a record from before start times were kept
    if started < psutil.boot_time() - START_TOLERANCE:
        return False
    try:
        return abs(psutil.Process(leader).create_time() - started) <= START_TOLERANCE
    except psutil.NoSuchProcess:
        return True


def _never_launched(run: Run) -> bool:
    """Claimed, but its launcher died before a supervisor existed: no pid and no log."""
    return run.supervisor_pid is None and not os.path.exists(run.log_path)


def reconcile(db: Database, settings: Settings) -> list[int]:
    """Fail runs whose heartbeat is stale and whose supervisor is gone; return the ids changed.

    A run claimed by a caller that died before it launched a supervisor produced nothing:
    it goes back to the queue, in its place, rather than being failed.
    """
    cutoff = utcnow() - timedelta(seconds=settings.lost_after_seconds)
    with db.read() as session:
        stale = [
            (r.id, r.host, r.supervisor_pid, r.supervisor_start)
            for r in session.scalars(
                select(Run).where(Run.status == "running", Run.heartbeat_at < cutoff)
            )
        ]
    lost = [rid for rid, host, pid, start in stale if host != HOST or not alive(pid, start)]
    if not lost:
        return []
    with db.write() as session:
        lock_queue(session)
        for run_id in lost:
            run = run_row(session, run_id)
            if run.status != "running" or run.heartbeat_at is None or run.heartbeat_at >= cutoff:
                continue
            if run.host == HOST and not run.worker and _never_launched(run):
                run.status, run.started_at, run.heartbeat_at = "queued", None, None
                run.host, run.gpus = None, None
                continue
            last = run.heartbeat_at.strftime("%H:%M:%S UTC")
            if run.host == HOST and run.report_token_hash is None:  # a member's job's pids
                kill_orphans(run)  # are its word only: never signal what it named
            who = f"worker {run.worker}" if run.worker else "supervisor"
            finish(run, "failed", f"lost: {who} stopped reporting at {last}")
    return lost


def count_active(session: Session) -> tuple[int, int]:
    """Runs (running, queued), for displays."""
    counts = dict(
        session.execute(
            select(Run.status, func.count(Run.id))
            .where(Run.status.in_(("queued", "running")))
            .group_by(Run.status)
        ).all()
    )
    return counts.get("running", 0), counts.get("queued", 0)
