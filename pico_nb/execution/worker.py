"""The worker side of the Celery executor: the `pico-nb worker` process on a worker machine.

A worker is a real Celery worker (thread pool, one thread per slot, a token reserved only
by a free slot). It registers itself in the ``workers`` table and heartbeats there. For each
token it claims the next run of that kind by the queue policy and supervises the pipeline
exactly as the local supervisor does (own process group, heartbeats, stage and progress,
stop, exit code, signal and reason), writing the log to a spool file on its own disk and
shipping it with :class:`pico_nb.logstream.LogShipper`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from pico_nb import logstream
from pico_nb.contract.errors import Conflict, NotFound, ValidationError
from pico_nb.execution import bookkeeping, measure, queue_policy, worker_settings
from pico_nb.execution.celery import (
    STOP_CHANNEL,
    TASK,
    CeleryExecutor,
    celery_app,
    publish,
    queue_name,
    worker_state,
)
from pico_nb.execution.pipeline_process import launch, process_start
from pico_nb.execution.reports import DbLedger
from pico_nb.execution.shipping import ShippingSupervisor
from pico_nb.file_modes import private_folder
from pico_nb.models import Run, Worker, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pico_nb.db import Database
    from pico_nb.settings import Settings

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_worker_name(name: str) -> str:
    """Worker names appear in reasons and node names: keep them plain."""
    if not _NAME.fullmatch(name):
        raise ValidationError.one(
            "name",
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


class WorkerRuntime:
    """One worker machine's identity, slots, GPUs and housekeeping, shared by its task threads."""

    def __init__(
        self, db: Database, settings: Settings, name: str, slots: int, gpus: list[str]
    ) -> None:
        self.db, self.settings = db, settings
        self.name, self.slots, self.gpus = check_worker_name(name), slots, list(gpus)
        self.executor = CeleryExecutor(db, settings)
        self.redis = logstream.connect(settings.effective_log_stream_url)
        self.spool = settings.home / "spool"
        self.wakes: dict[int, threading.Event] = {}
        self._closed = threading.Event()

    def start(self) -> None:
        """Register, clean up after an earlier life of this worker, start reporting."""
        with self.db.write() as session:
            row = session.get(Worker, self.name)
            if row is None:
                row = Worker(name=self.name)
                session.add(row)
            elif worker_state(row, self.settings) == "online" and (
                row.host != bookkeeping.HOST or bookkeeping.alive(row.pid, None)
            ):
                raise Conflict(
                    f"worker {self.name} is already online on {row.host}; "
                    "give this one another --name"
                )
            row.host, row.pid, row.slots, row.gpus = (
                bookkeeping.HOST,
                os.getpid(),
                self.slots,
                self.gpus,
            )
            row.started_at = row.heartbeat_at = utcnow()
            row.stopped_at = None
            row.resources = measure.this_machine()
            workers = session.scalars(select(Worker))
            online = [w for w in workers if worker_state(w, self.settings) == "online"]
            worker_settings.agree(row, online, self.settings)
        self._keep_spools()
        with self.db.write() as session:
            lost = list(
                session.scalars(select(Run).where(Run.status == "running", Run.worker == self.name))
            )
            for run in lost:  # this worker restarted under them: they cannot be reported on
                if run.host == bookkeeping.HOST:
                    bookkeeping.kill_orphans(run)
                bookkeeping.finish(
                    run, "failed", f"lost: worker {self.name} restarted while it ran"
                )
        logstream.expire_streams(self.db, self.redis, [run.id for run in lost])
        private_folder(self.spool)
        for target in (self._housekeep, self._listen_for_stops):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()

    def _keep_spools(self) -> None:
        """Keep centrally the log tails an earlier life of this worker spooled but never shipped.

        A spool file outlives its run only when the worker died before the run ended. Workers
        sharing a home share the spool folder, so only this worker's runs are touched.
        """
        self.spool.mkdir(parents=True, exist_ok=True)
        for spool in sorted(self.spool.glob("run_*_*.log")):
            run_id = int(spool.name.split("_")[1])
            with self.db.read() as session:
                run = session.get(Run, run_id)
                mine = run is not None and run.worker == self.name
            if mine:
                logstream.keep_spool(self.db, run_id, spool)
                spool.unlink()

    def close(self) -> None:
        """Say this worker is gone on purpose, so it is listed as stopped, not lost."""
        self._closed.set()
        with contextlib.suppress(Exception), self.db.write() as session:
            row = session.get(Worker, self.name)
            if row is not None:
                row.stopped_at = utcnow()

    def _housekeep(self) -> None:
        """Heartbeat, fail lost runs anywhere, and send out runs whose tokens went missing."""
        while not self._closed.wait(self.settings.heartbeat_seconds):
            try:
                resources = measure.this_machine()  # measured outside the transaction
                with self.db.write() as session:
                    row = session.get(Worker, self.name)
                    if row is None:
                        raise NotFound(f"worker {self.name} is not registered")
                    row.heartbeat_at = utcnow()
                    row.resources = resources
                self.executor.reconcile()
                self._recover_tokens()
            except Exception as exc:  # the database or broker is away: try again next beat
                log.warning("worker %s housekeeping failed: %s", self.name, exc)

    def _recover_tokens(self) -> None:
        """A run queued long after its token went out while we sit idle lost its token
        (a broker restarted empty, say): publish it again."""
        cutoff = utcnow() - timedelta(seconds=max(10 * self.settings.heartbeat_seconds, 10))
        with self.db.write() as session:
            busy = session.execute(
                select(func.count(Run.id)).where(Run.status == "running", Run.worker == self.name)
            ).scalar_one()
            if busy >= self.slots:
                return
            kinds = [False, True] if self.gpus else [False]
            stale = list(
                session.scalars(
                    select(Run).where(
                        Run.status == "queued",
                        Run.dispatched_at < cutoff,
                        Run.needs_gpu.in_(kinds),
                    )
                )
            )
            for run in stale:
                run.dispatched_at = None
        if stale:
            self.executor.redispatch()

    def _listen_for_stops(self) -> None:
        """Wake a run's supervisor the moment someone asks to stop it."""
        while not self._closed.is_set() and self.redis is not None:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(STOP_CHANNEL)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and (wake := self.wakes.get(int(message["data"]))):
                        wake.set()
            except Exception:  # Redis restarting: heartbeats still carry stop requests
                time.sleep(1.0)

    def take(self, needs_gpu: bool) -> None:
        """Handle one token: claim the fairest run this worker can run, and run it."""
        with self.db.write() as session:
            claim = self._claim(session, needs_gpu)
        if claim == "no free GPU":  # another worker may have one: give the token back
            time.sleep(1.0)
            publish(self.settings, needs_gpu)
        elif isinstance(claim, int):
            self._execute(claim)

    def _claim(self, session: Session, needs_gpu: bool) -> int | str | None:
        """Queued to running in one locked transaction, by the queue policy."""
        bookkeeping.lock_queue(session)
        mine = list(
            session.scalars(
                select(Run.gpus).where(Run.status == "running", Run.worker == self.name)
            )
        )
        if len(mine) >= self.slots:
            return None
        used = {g for gpus in mine for g in (gpus or "").split(",") if g}
        free_gpus = [g for g in self.gpus if g not in used]
        if needs_gpu and not free_gpus:
            return "no free GPU"
        line = queue_policy.read_line(session, needs_gpu)
        run_id = line.take(self.settings.max_runs_per_user)
        if run_id is None:
            return None
        run = bookkeeping.run_row(session, run_id)
        now = utcnow()
        run.status, run.started_at, run.heartbeat_at = "running", now, now
        run.host, run.worker, run.supervisor_pid = bookkeeping.HOST, self.name, os.getpid()
        run.supervisor_start = process_start(os.getpid())
        run.gpus = free_gpus[0] if needs_gpu else None
        run.reason = None
        run.provenance = {**run.provenance, **bookkeeping.machine(), "worker": self.name}
        return run.id

    def _execute(self, run_id: int) -> None:
        """Supervise the run here, logging to the spool and shipping the log as it grows."""
        with self.db.read() as session:
            run = bookkeeping.run_row(session, run_id)
            spool = self.spool / f"run_{run_id}_{time.time_ns()}.log"
            plan = bookkeeping.launch_plan(
                run, self.settings, log_path=str(spool), hide_gpus=bool(self.gpus)
            )
        shipper = logstream.LogShipper(self.db, self.redis, run_id, self.settings.heartbeat_seconds)
        wake = self.wakes[run_id] = threading.Event()
        try:
            started = launch(plan, on_write=shipper.append)
            WorkerSupervisor(self, run_id, wake, shipper, spool).see_through(started)
        finally:
            self.wakes.pop(run_id, None)

    def hand_on(self) -> None:
        """A user's cap may have freed: tokens it made claim nothing are owed to the queue.

        Without a cap every queued run keeps its own token, so nothing needs sending.
        """
        if self.settings.max_runs_per_user is None:
            return
        with self.db.read() as session:
            kinds = set(
                session.scalars(select(Run.needs_gpu).where(Run.status == "queued").distinct())
            )
        for needs_gpu in kinds:
            with contextlib.suppress(Exception):  # reconcile re-sends what this misses
                publish(self.settings, needs_gpu)


class WorkerSupervisor(ShippingSupervisor):
    """A worker's supervisor: its log is shipped, and its slot goes back to the queue."""

    def __init__(
        self,
        runtime: WorkerRuntime,
        run_id: int,
        wake: threading.Event,
        shipper: logstream.LogShipper,
        spool: Path,
    ) -> None:
        ledger = DbLedger(runtime.db, run_id)
        super().__init__(runtime.settings, run_id, wake, ledger, shipper, spool)
        self.runtime = runtime

    def hand_on(self) -> None:
        self.runtime.hand_on()

    def check_peers(self) -> None:
        """A worker's runs are reconciled by the service and the workers' housekeeping."""


_runtime: WorkerRuntime | None = None


def _take_run(needs_gpu: bool) -> None:
    """The Celery task: only a `pico-nb worker` process has the runtime it needs."""
    if _runtime is None:
        raise RuntimeError("pico_nb.take_run runs only inside `pico-nb worker`")
    _runtime.take(bool(needs_gpu))


def run_worker(settings: Settings, db: Database, name: str, slots: int, gpus: list[str]) -> None:
    """Run a Celery worker for pico_nb in this process until it is shut down."""
    from celery import signals

    global _runtime
    runtime = _runtime = WorkerRuntime(db, settings, name, slots, gpus)
    runtime.start()  # before the first token, so its clean-up never meets a run of this life
    signals.worker_shutdown.connect(lambda **_: runtime.close(), weak=False)
    queues = [queue_name(False)] + ([queue_name(True)] if gpus else [])
    app = celery_app(settings.broker_url)
    app.task(name=TASK)(_take_run)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={slots}",
            f"--queues={','.join(queues)}",
            f"--hostname={runtime.name}@{bookkeeping.HOST}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )
