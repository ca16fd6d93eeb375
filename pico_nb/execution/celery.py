"""The distributed executor: runs go to Celery workers on other machines through Redis.

The database stays the one truth about runs; Celery only carries *tokens*. Submitting a run
records it as queued and publishes one token on ``pico_nb.cpu`` or, for a run that needs a
GPU, ``pico_nb.gpu``. A worker that takes a token claims, in one transaction, the fairest
queued run of that kind it can run: the user with the fewest running runs first, then the
user whose last run started longest ago, then that user's oldest run. So one user's fifty
queued runs never starve another's one, a run is claimed
exactly once (a token delivered twice claims nothing twice), and a run is never silently
re-run. A run whose token could not be published (broker down) stays queued and is published
again by the next reconcile, which workers and the hub service do every heartbeat.

A worker is a real Celery worker (thread pool, one thread per slot, a token reserved only
by a free slot). For each run it supervises the pipeline exactly as the local supervisor does (own
process group, heartbeats, stage and progress, stop, exit code, signal and reason), writes the
log to a spool file on its own disk and ships it with :class:`pico_nb.logstream.LogShipper`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from pico_nb import logstream
from pico_nb.errors import Conflict, NotFound, ValidationError
from pico_nb.execution import bookkeeping
from pico_nb.execution.shipping import ShippingSupervisor
from pico_nb.execution.supervisor import launch, process_start
from pico_nb.file_modes import private_folder
from pico_nb.models import Run, Worker, utcnow

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy.orm import Session

    from pico_nb.db import Database
    from pico_nb.settings import Settings

log = logging.getLogger(__name__)

TASK = "pico_nb.take_run"
STOP_CHANNEL = "pico_nb:stop"
BROKER_DOWN = "waiting for the broker, which is unreachable; sent when it is back"


def queue_name(needs_gpu: bool) -> str:
    """GPU runs have their own queue, which only workers with GPUs consume."""
    return "pico_nb.gpu" if needs_gpu else "pico_nb.cpu"


@cache
def celery_app(broker_url: str) -> Celery:
    """The Celery app for a broker: tokens acknowledged late, one reserved per free slot."""
    from celery import Celery

    app = Celery("pico_nb", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=queue_name(False),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": 24 * 3600,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name=TASK)(_take_run)
    return app


def publish(settings: Settings, needs_gpu: bool) -> None:
    """Put one token on the broker at once, or raise: nobody waits on a broker that is down."""
    celery_app(settings.broker_url).send_task(TASK, args=[needs_gpu], queue=queue_name(needs_gpu))


class CeleryExecutor:
    """Submit, stop and reconcile runs that workers on other machines execute."""

    def __init__(self, db: Database, settings: Settings) -> None:
        if not settings.broker_url:
            raise ValidationError.one("broker_url", "is required when executor is celery")
        self.db, self.settings = db, settings

    def submit(self, run_id: int) -> None:
        """Publish the run's token; if the broker is down the run waits, queued, for it."""
        self._send(run_id)

    def _send(self, run_id: int) -> bool:
        """Publish one run's token and note it, or note why not; False if the broker is down."""
        with self.db.read() as session:
            run = bookkeeping.run_row(session, run_id)
            needs_gpu, status = run.needs_gpu, run.status
        if status != "queued":
            return True
        try:
            publish(self.settings, needs_gpu)
        except Exception as exc:
            log.info("run %s stays queued: broker unreachable (%s)", run_id, exc)
            with self.db.write() as session:
                run = bookkeeping.run_row(session, run_id)
                if run.status == "queued":
                    run.reason = BROKER_DOWN
            return False
        with self.db.write() as session:
            run = bookkeeping.run_row(session, run_id)
            run.dispatched_at = utcnow()
            if run.status == "queued":
                run.reason = None
        return True

    def stop(self, run_id: int) -> None:
        """Wake the run's worker at once; without Redis it sees the request at its heartbeat."""
        client = logstream.connect(self.settings.effective_log_stream_url)
        if client is not None:
            with contextlib.suppress(Exception):
                client.publish(STOP_CHANNEL, str(run_id))

    def redispatch(self) -> None:
        """Publish the tokens a down broker refused, so waiting runs go out when it is back."""
        with self.db.read() as session:
            waiting = list(
                session.scalars(
                    select(Run.id)
                    .where(Run.status == "queued", Run.dispatched_at.is_(None))
                    .order_by(Run.id)
                )
            )
        for run_id in waiting:
            if not self._send(run_id):
                return  # the broker is still down; the next reconcile tries again

    def reconcile(self) -> list[int]:
        """Fail runs whose worker stopped reporting, then send out what is waiting."""
        lost = bookkeeping.reconcile(self.db, self.settings)
        logstream.expire_streams(logstream.connect(self.settings.effective_log_stream_url), lost)
        self.redispatch()
        return lost

    def queue_state(self) -> dict[str, Any]:
        """Slots, GPUs and the line across the workers that are online."""
        with self.db.read() as session:
            counts = bookkeeping.count_active(session)
            workers = list(session.scalars(select(Worker)))
        online = [w for w in workers if worker_state(w, self.settings) == "online"]
        return {
            **counts,
            "slots": sum(w.slots for w in online),
            "gpus": sorted({g for w in online for g in w.gpus}),
            "workers": len(online),
        }


def worker_state(worker: Worker, settings: Settings) -> str:
    """'online', 'stopped' or 'lost', from the worker's own reports."""
    if worker.stopped_at is not None:
        return "stopped"
    age = (utcnow() - worker.heartbeat_at).total_seconds()
    return "online" if age < settings.lost_after_seconds else "lost"


# ---------------------------------------------------------------- the worker side

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
        logstream.expire_streams(self.redis, [run.id for run in lost])
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
                with self.db.write() as session:
                    row = session.get(Worker, self.name)
                    if row is None:
                        raise NotFound(f"worker {self.name} is not registered")
                    row.heartbeat_at = utcnow()
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
        """Queued to running in one locked transaction, fairly between users."""
        bookkeeping.lock_queue(session)
        running = session.execute(
            select(Run.user_id, Run.worker, Run.gpus).where(Run.status == "running")
        ).all()
        mine = [r for r in running if r.worker == self.name]
        if len(mine) >= self.slots:
            return None
        used = {g for r in mine for g in (r.gpus or "").split(",") if g}
        free_gpus = [g for g in self.gpus if g not in used]
        if needs_gpu and not free_gpus:
            return "no free GPU"
        run_id = _fairest(session, needs_gpu, Counter(r.user_id for r in running), self.settings)
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


def _fairest(
    session: Session, needs_gpu: bool, running: Counter[int], settings: Settings
) -> int | None:
    """Round robin between users: fewest running, then longest since their last start.

    Each user's own runs go oldest first; a user at the per-user cap waits.
    """
    oldest = dict(
        session.execute(
            select(Run.user_id, func.min(Run.id))
            .where(Run.status == "queued", Run.needs_gpu == needs_gpu)
            .group_by(Run.user_id)
        ).all()
    )
    cap = settings.max_runs_per_user
    users = [u for u in oldest if cap is None or running[u] < cap]
    if not users:
        return None
    last_start = dict(
        session.execute(
            select(Run.user_id, func.max(Run.started_at))
            .where(Run.user_id.in_(users), Run.started_at.is_not(None))
            .group_by(Run.user_id)
        ).all()
    )
    never = datetime.min.replace(tzinfo=UTC)
    user = min(users, key=lambda u: (running[u], last_start.get(u) or never, oldest[u]))
    return oldest[user]


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
        super().__init__(runtime.db, runtime.settings, run_id, wake, shipper, spool)
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
    celery_app(settings.broker_url).worker_main(
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
