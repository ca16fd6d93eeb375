"""Local execution: slots, the fair queue, detached supervisors and stop, with no daemon.

Whoever frees a slot or reconciles claims the next queued run in one transaction; the
supervisor of a run on this machine (`LocalSupervisor`) hands its slot on when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pico_nb.db import Database
from pico_nb.execution import measure, queue_policy
from pico_nb.execution.bookkeeping import (
    HOST,
    alive,
    count_active,
    finish,
    launch_plan,
    lock_queue,
    reconcile,
    run_row,
)
from pico_nb.execution.pipeline_process import Started, process_start
from pico_nb.execution.queue_keeping import QueueKeeping
from pico_nb.execution.reports import DbLedger
from pico_nb.execution.supervisor import PLAN_ENV, SETTINGS_ENV, Supervisor, settings_from_env
from pico_nb.file_modes import private_file, private_folder
from pico_nb.models import Run, utcnow
from pico_nb.schemas import MachineRecord, QueueRecord
from pico_nb.settings import Settings


def _claim(session: Session, settings: Settings) -> dict[int, dict[str, Any]]:
    """Move queued runs into free slots by the queue policy, within the GPU pool.

    Each claimed run's launch plan is read in the same transaction, so starting a run costs
    one write here and no further read.
    """
    lock_queue(session)
    in_use = list(session.scalars(select(Run.gpus).where(Run.status == "running")))
    free = settings.max_concurrent_runs - len(in_use)
    if free <= 0:
        return {}
    used_gpus = {g for gpus in in_use for g in (gpus or "").split(",") if g}
    spare_gpus = [g for g in settings.gpus if g not in used_gpus]
    line = queue_policy.read_line(session)
    plans: dict[int, dict[str, Any]] = {}
    while len(plans) < free and (not settings.gpus or spare_gpus):
        run_id = line.take(settings.max_runs_per_user)
        if run_id is None:
            break
        run = run_row(session, run_id)
        if settings.gpus:
            run.gpus = spare_gpus.pop(0)
        now = utcnow()
        run.status, run.started_at, run.heartbeat_at, run.host = "running", now, now, HOST
        plans[run.id] = launch_plan(run, settings)
    return plans


def dispatch(db: Database, settings: Settings) -> list[int]:
    """Fill free slots, after a cheap read that finds most calls have no queue to serve."""
    with db.read() as session:  # skip taking the write lock when nothing waits
        if session.scalar(select(Run.id).where(Run.status == "queued").limit(1)) is None:
            return []
    return fill_slots(db, settings)


def fill_slots(db: Database, settings: Settings) -> list[int]:
    """Claim free slots in one transaction, then launch a supervisor for each claimed run."""
    if settings.member_accounts and os.geteuid() == 0:
        return []  # on a lab server only the service account launches runs, never root
    with db.write() as session:
        plans = _claim(session, settings)
    for run_id, plan in plans.items():
        _launch(db, settings, run_id, plan)
    return list(plans)


def _launch(db: Database, settings: Settings, run_id: int, plan: dict[str, Any]) -> None:
    """Start the supervisor detached: own session, stdin closed, output to a file."""
    out_dir = private_folder(settings.home / "logs" / "supervisors")
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
            run = run_row(session, run_id)
            finish(run, "failed", f"could not start the supervisor: {exc}")
        return
    # Reap it when it ends so no zombie lingers in a long-lived kernel.
    threading.Thread(target=proc.wait, daemon=True).start()
    started = process_start(proc.pid)
    with db.write() as session:
        run = run_row(session, run_id)
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


def signal_stop(db: Database, run_id: int) -> None:
    """Wake the supervisor on this host; a remote one sees the request at its next heartbeat."""
    with db.read() as session:
        run = run_row(session, run_id)
        pid, started, host, status = run.supervisor_pid, run.supervisor_start, run.host, run.status
    if pid is not None and status == "running" and host == HOST and alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class LocalExecutor(QueueKeeping):
    """Runs on this machine in detached supervisors; whoever frees a slot fills it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    def submit(self, run_id: int) -> None:
        """Start the run now if a slot is free; otherwise it waits its turn in the queue."""
        fill_slots(self.db, self.settings)  # a run was just queued: no need to look first

    def stop(self, run_id: int) -> None:
        """Wake the run's supervisor so it acts on the stop request at once."""
        signal_stop(self.db, run_id)

    def reconcile(self) -> list[int]:
        """Fail runs whose supervisor vanished, then fill the slots that frees."""
        lost = reconcile(self.db, self.settings)
        dispatch(self.db, self.settings)
        return lost

    def queue_state(self) -> QueueRecord:
        """Slots in use, runs waiting and the GPU pool."""
        with self.db.read() as session:
            running, queued = count_active(session)
        return QueueRecord(
            slots=self.settings.max_concurrent_runs,
            running=running,
            queued=queued,
            gpus=list(self.settings.gpus),
        )

    def machines(self) -> list[MachineRecord]:
        """This host, measured now, with the runs running on it."""
        with self.db.read() as session:
            runs = list(
                session.scalars(
                    select(Run.id).where(Run.status == "running", Run.host == HOST).order_by(Run.id)
                )
            )
        return [
            measure.machine_record(
                measure.this_machine(),
                name=HOST,
                kind="host",
                state="online",
                slots=self.settings.max_concurrent_runs,
                running=len(runs),
                runs=runs,
                last_seen=utcnow(),
            )
        ]


class LocalSupervisor(Supervisor):
    """A run's supervisor on this machine: it keeps the machine's slots moving."""

    def __init__(self, db: Database, settings: Settings, run_id: int, wake: threading.Event):
        super().__init__(settings, run_id, wake, DbLedger(db, run_id))
        self.db = db

    def check_peers(self) -> None:
        """Find runs whose supervisor died and hand their slots on, so no viewer is needed."""
        with self.outage_tolerated():
            if reconcile(self.db, self.settings):
                dispatch(self.db, self.settings)

    def hand_on(self) -> None:
        """Let the next queued run have the slot, and any slot a dead peer left."""
        with self.outage_tolerated():
            reconcile(self.db, self.settings)
            dispatch(self.db, self.settings)


def supervise(run_id: int, wake: threading.Event, started: Started | OSError) -> int:
    """Load the database stack once the pipeline runs, and see the run through to its record."""
    from pico_nb.db import open_database

    settings = settings_from_env()
    db = open_database(settings.effective_database_url)
    LocalSupervisor(db, settings, run_id, wake).see_through(started)
    return 1 if isinstance(started, OSError) else 0
