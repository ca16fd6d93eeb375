"""The distributed executor: runs go to Celery workers on other machines through Redis.

The database stays the one truth about runs; Celery only carries *tokens*. Submitting a run
records it as queued and publishes one token on ``pico_nb.cpu`` or, for a run that needs a
GPU, ``pico_nb.gpu``. A worker that takes a token claims, in one transaction, the next
queued run of that kind by the one queue policy (`queue_policy`: fair between users, oldest
first within one), so a run is claimed exactly once (a token delivered twice claims nothing
twice), and a run is never silently re-run. A run whose token could not be published (broker
down) stays queued and is published again by the next reconcile, which workers and the hub
service do every heartbeat.

The worker side, the process on each worker machine that takes tokens, is in `worker`.
"""

from __future__ import annotations

import contextlib
import logging
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import select

from pico_nb import logstream
from pico_nb.contract.errors import ValidationError
from pico_nb.execution import bookkeeping, measure
from pico_nb.execution.queue_keeping import QueueKeeping
from pico_nb.models import Run, Worker, utcnow
from pico_nb.schemas import MachineRecord, QueueRecord

if TYPE_CHECKING:
    from celery import Celery

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
    return app


def publish(settings: Settings, needs_gpu: bool) -> None:
    """Put one token on the broker at once, or raise: nobody waits on a broker that is down."""
    celery_app(settings.broker_url).send_task(TASK, args=[needs_gpu], queue=queue_name(needs_gpu))


class CeleryExecutor(QueueKeeping):
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
        client = logstream.connect(self.settings.effective_log_stream_url)
        logstream.expire_streams(self.db, client, lost)
        self.redispatch()
        return lost

    def queue_state(self) -> QueueRecord:
        """Slots, GPUs and the line across the workers that are online."""
        with self.db.read() as session:
            running, queued = bookkeeping.count_active(session)
            workers = list(session.scalars(select(Worker)))
        online = [w for w in workers if worker_state(w, self.settings) == "online"]
        return QueueRecord(
            slots=sum(w.slots for w in online),
            running=running,
            queued=queued,
            gpus=sorted({g for w in online for g in w.gpus}),
            workers=len(online),
        )

    def machines(self) -> list[MachineRecord]:
        """Each registered worker as it measured itself at its last heartbeat."""
        with self.db.read() as session:
            workers = list(session.scalars(select(Worker).order_by(Worker.name)))
            running = session.execute(
                select(Run.worker, Run.id).where(Run.status == "running").order_by(Run.id)
            ).all()
        runs: dict[str | None, list[int]] = {}
        for worker, run_id in running:
            runs.setdefault(worker, []).append(run_id)
        return [
            measure.machine_record(
                w.resources,
                name=w.name,
                kind="worker",
                state=worker_state(w, self.settings),
                slots=w.slots,
                running=len(runs.get(w.name, [])),
                runs=runs.get(w.name, []),
                last_seen=w.heartbeat_at,
            )
            for w in workers
        ]


def worker_state(worker: Worker, settings: Settings) -> str:
    """'online', 'stopped' or 'lost', from the worker's own reports."""
    if worker.stopped_at is not None:
        return "stopped"
    age = (utcnow() - worker.heartbeat_at).total_seconds()
    return "online" if age < settings.lost_after_seconds else "lost"
