"""Worker operations for operators and the resources view: the workers' records and states,
and turning this process into a worker. `Lab` reaches workers only through here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from pico_nb.contract.errors import ValidationError
from pico_nb.execution.bookkeeping import HOST
from pico_nb.execution.celery import worker_state
from pico_nb.models import Run, Worker
from pico_nb.schemas import WorkerRecord

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.settings import Settings


def worker_records(
    db: Database, settings: Settings, user_id: int, everyone: bool
) -> list[WorkerRecord]:
    """Workers with their slots, GPUs, state and load; only `user_id`'s runs are named,
    unless `everyone` (an admin) may see them all."""
    with db.read() as session:
        rows = list(session.scalars(select(Worker).order_by(Worker.name)))
        active = session.execute(
            select(Run.worker, Run.id, Run.user_id).where(Run.status == "running")
        ).all()
    out = []
    for w in rows:
        mine = [(rid, uid) for name, rid, uid in active if name == w.name]
        out.append(
            WorkerRecord(
                name=w.name,
                host=w.host,
                slots=w.slots,
                gpus=list(w.gpus),
                state=worker_state(w, settings),
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                busy=len(mine),
                runs=[rid for rid, uid in mine if uid == user_id or everyone],
            )
        )
    return out


def serve(
    db: Database, settings: Settings, name: str | None, slots: int | None, gpus: str | None
) -> None:
    """Check an operator's worker options, then run this process as that worker until shut
    down; Celery is imported only here."""
    gpu_ids = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    if any(not g.isdigit() for g in gpu_ids):
        raise ValidationError.one("--gpus", "must be GPU numbers separated by commas, e.g. 0,1")
    if slots is not None and slots < 1:
        raise ValidationError.one("--slots", "must be at least 1")
    if not settings.broker_url:
        raise ValidationError.one("broker_url", "is required: set PICO_NB_BROKER_URL")
    from pico_nb.execution import worker

    name = worker.check_worker_name(name or HOST)
    worker.run_worker(settings, db, name, slots or max(len(gpu_ids), 1), gpu_ids)
