"""Local execution: slots, the queue, detached supervisors, stop and reconcile, with no daemon."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from functools import cache
from importlib import metadata
from typing import IO, Any

import psutil
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from pico_nb.db import Database
from pico_nb.execution.runas import owner_account
from pico_nb.execution.supervisor import PLAN_ENV, SETTINGS_ENV, process_start
from pico_nb.file_modes import private_file, private_folder
from pico_nb.models import Run, utcnow
from pico_nb.params import PipelineSpec
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


def lock_queue(session: Session) -> None:
    """Serialise queue changes: SQLite's BEGIN IMMEDIATE already does; PostgreSQL needs a lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7312)"))


def finish(run: Run, status: str, reason: str, **fields: Any) -> None:
    """Close a run's record in one place so every ending looks the same."""
    run.status = status
    run.reason = reason
    run.finished_at = utcnow()
    for key, value in fields.items():
        setattr(run, key, value)


def _claim(session: Session, settings: Settings) -> list[int]:
    """Move queued runs into free slots, FIFO, honouring the per-user cap and the GPU pool."""
    lock_queue(session)
    running = list(session.scalars(select(Run).where(Run.status == "running")))
    free = settings.max_concurrent_runs - len(running)
    if free <= 0:
        return []
    per_user: dict[int, int] = {}
    used_gpus: set[str] = set()
    for run in running:
        per_user[run.user_id] = per_user.get(run.user_id, 0) + 1
        used_gpus.update(g for g in (run.gpus or "").split(",") if g)
    spare_gpus = [g for g in settings.gpus if g not in used_gpus]
    claimed: list[int] = []
    queued = session.scalars(
        select(Run).where(Run.status == "queued").order_by(Run.queued_at, Run.id)
    )
    for run in queued:
        if len(claimed) >= free:
            break
        cap = settings.max_runs_per_user
        if cap is not None and per_user.get(run.user_id, 0) >= cap:
            continue
        if settings.gpus:
            if not spare_gpus:
                break
            run.gpus = spare_gpus.pop(0)
        now = utcnow()
        run.status, run.started_at, run.heartbeat_at, run.host = "running", now, now, HOST
        per_user[run.user_id] = per_user.get(run.user_id, 0) + 1
        claimed.append(run.id)
    return claimed


def dispatch(db: Database, settings: Settings) -> list[int]:
    """Claim free slots in one transaction, then launch a supervisor for each claimed run."""
    if settings.member_accounts and os.geteuid() == 0:
        return []  # on a lab server only the service account launches runs, never root
    with db.read() as session:  # most calls find no queue: skip taking the write lock
        if session.scalar(select(Run.id).where(Run.status == "queued").limit(1)) is None:
            return []
    with db.write() as session:
        claimed = _claim(session, settings)
    for run_id in claimed:
        _launch(db, settings, run_id)
    return claimed


def launch_plan(
    run: Run, settings: Settings, log_path: str | None = None, hide_gpus: bool = False
) -> dict[str, Any]:
    """What the supervisor needs to start the pipeline before it loads the database stack."""
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


def _launch(db: Database, settings: Settings, run_id: int) -> None:
    """Start the supervisor detached: own session, stdin closed, output to a file."""
    out_dir = private_folder(settings.home / "logs" / "supervisors")
    with db.read() as session:
        plan = launch_plan(session.get(Run, run_id), settings)
    env = dict(os.environ)
    env[SETTINGS_ENV] = settings.model_dump_json()
    env[PLAN_ENV] = json.dumps(plan)
    try:
        with open(private_file(out_dir / f"run_{run_id}.out"), "ab") as out:
            proc = _start_detached(
                [sys.executable, "-m", "pico_nb.execution.supervisor_entry", str(run_id)], out, env
            )
    except OSError as exc:
        with db.write() as session:
            run = session.get(Run, run_id)
            finish(run, "failed", f"could not start the supervisor: {exc}")
        return
    # Reap it when it ends so no zombie lingers in a long-lived kernel.
    threading.Thread(target=proc.wait, daemon=True).start()
    started = process_start(proc.pid)
    with db.write() as session:
        run = session.get(Run, run_id)
        if run.supervisor_pid is None:
            run.supervisor_pid, run.supervisor_start = proc.pid, started


def _start_detached(
    argv: list[str], out: IO[bytes], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start a process in its own session with SIGTERM blocked until it installs its handler.

    The child inherits this thread's signal mask; supervisor_entry unblocks SIGTERM once it
    catches it, so a stop sent while the interpreter starts waits for it instead of killing it.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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


def signal_stop(db: Database, run_id: int) -> None:
    """Wake the supervisor on this host; a remote one sees the request at its next heartbeat."""
    with db.read() as session:
        run = session.get(Run, run_id)
        pid, started, host, status = run.supervisor_pid, run.supervisor_start, run.host, run.status
    if status == "running" and host == HOST and alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


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
            run = session.get(Run, run_id)
            if run.status != "running" or run.heartbeat_at >= cutoff:
                continue
            if run.host == HOST and not run.worker and _never_launched(run):
                run.status, run.started_at, run.heartbeat_at = "queued", None, None
                run.host, run.gpus = None, None
                continue
            last = run.heartbeat_at.strftime("%H:%M:%S UTC")
            if run.host == HOST:
                kill_orphans(run)
            who = f"worker {run.worker}" if run.worker else "supervisor"
            finish(run, "failed", f"lost: {who} stopped reporting at {last}")
    return lost


def count_active(session: Session) -> dict[str, int]:
    """Runs running and queued, for displays."""
    counts = dict(
        session.execute(
            select(Run.status, func.count(Run.id))
            .where(Run.status.in_(("queued", "running")))
            .group_by(Run.status)
        ).all()
    )
    return {"running": counts.get("running", 0), "queued": counts.get("queued", 0)}


class LocalExecutor:
    """Runs on this machine in detached supervisors; whoever frees a slot fills it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    def submit(self, run_id: int) -> None:
        """Start the run now if a slot is free; otherwise it waits its turn in the queue."""
        dispatch(self.db, self.settings)

    def stop(self, run_id: int) -> None:
        """Wake the run's supervisor so it acts on the stop request at once."""
        signal_stop(self.db, run_id)

    def reconcile(self) -> list[int]:
        """Fail runs whose supervisor vanished, then fill the slots that frees."""
        lost = reconcile(self.db, self.settings)
        dispatch(self.db, self.settings)
        return lost

    def queue_state(self) -> dict[str, Any]:
        """Slots in use, runs waiting and the GPU pool."""
        with self.db.read() as session:
            state: dict[str, Any] = count_active(session)
        state["slots"] = self.settings.max_concurrent_runs
        state["gpus"] = list(self.settings.gpus)
        return state


def settings_from_env() -> Settings:
    """The settings the launching Lab used, handed to the supervisor through its environment."""
    return Settings(**json.loads(os.environ[SETTINGS_ENV]))
