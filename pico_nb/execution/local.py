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
from typing import Any

import psutil
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from pico_nb.db import Database
from pico_nb.execution.runas import owner_account
from pico_nb.execution.supervisor import PLAN_ENV, SETTINGS_ENV
from pico_nb.file_modes import private_file, private_folder
from pico_nb.models import Run, utcnow
from pico_nb.params import PipelineSpec
from pico_nb.settings import Settings

HOST = socket.gethostname()
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
            proc = subprocess.Popen(
                [sys.executable, "-m", "pico_nb.execution.supervisor", str(run_id)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
    except OSError as exc:
        with db.write() as session:
            run = session.get(Run, run_id)
            finish(run, "failed", f"could not start the supervisor: {exc}")
        return
    # Reap it when it ends so no zombie lingers in a long-lived kernel.
    threading.Thread(target=proc.wait, daemon=True).start()
    with db.write() as session:
        run = session.get(Run, run_id)
        if run.supervisor_pid is None:
            run.supervisor_pid = proc.pid


def alive(pid: int | None) -> bool:
    """A process exists and is not a zombie."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_stop(db: Database, run_id: int) -> None:
    """Wake the supervisor on this host; a remote one sees the request at its next heartbeat."""
    with db.read() as session:
        run = session.get(Run, run_id)
        pid, host, status = run.supervisor_pid, run.host, run.status
    if status == "running" and host == HOST and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def signal_group(pgid: int | None, signum: int) -> None:
    """Signal a pipeline's process group, which may already be gone."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _kill_orphans(pgid: int | None, supervisor_pid: int | None) -> None:
    """Kill a pipeline whose supervisor vanished, found by its group or its supervisor's session.

    A supervisor killed before it recorded the pipeline's group still left the pipeline in its
    own session, so the session id finds it.
    """
    groups = {pgid} if pgid else set()
    if supervisor_pid:
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if os.getsid(pid) == supervisor_pid:
                    groups.add(os.getpgid(pid))
    for group in groups:
        signal_group(group, signal.SIGKILL)


def reconcile(db: Database, settings: Settings) -> list[int]:
    """Runs whose heartbeat is stale and whose supervisor is gone are failed as lost."""
    cutoff = utcnow() - timedelta(seconds=settings.lost_after_seconds)
    with db.read() as session:
        stale = [
            (r.id, r.host, r.supervisor_pid)
            for r in session.scalars(
                select(Run).where(Run.status == "running", Run.heartbeat_at < cutoff)
            )
        ]
    lost = [rid for rid, host, pid in stale if host != HOST or not alive(pid)]
    if not lost:
        return []
    with db.write() as session:
        for run_id in lost:
            run = session.get(Run, run_id)
            if run.status != "running" or run.heartbeat_at >= cutoff:
                continue
            last = run.heartbeat_at.strftime("%H:%M:%S UTC")
            if run.host == HOST:
                _kill_orphans(run.pgid, run.supervisor_pid)
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
