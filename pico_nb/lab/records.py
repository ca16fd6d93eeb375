"""ORM rows as the records the API shows, and the checks the Lab's services share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import object_session

from pico_nb import logs
from pico_nb.errors import ValidationError
from pico_nb.models import Experiment, Run, User
from pico_nb.schemas import ExperimentRecord, LogLine, RunRecord, UserRecord


def log_line(event: logs.LogEvent) -> LogLine:
    """A log event as the API shows it, shared by every way of following a log."""
    progress = event.progress
    return LogLine(
        line=event.line,
        stage=progress.stage if progress else None,
        progress=progress.fraction if progress else None,
        eta_seconds=progress.eta_seconds if progress else None,
        progress_text=progress.text if progress else None,
        offset=event.offset,
    )


def flag(value: Any, field: str) -> bool:
    """Switches are true or false: the text "false" must not switch anything on."""
    if not isinstance(value, bool):
        raise ValidationError.one(field, "must be true or false")
    return value


def user_record(row: User) -> UserRecord:
    """Accounts without their hash."""
    return UserRecord(
        username=row.username,
        is_admin=row.is_admin,
        has_password=bool(row.password_hash),
        created_at=row.created_at,
    )


def run_record(run: Run) -> RunRecord:
    """A run as the API shows it."""
    return RunRecord(
        id=run.id,
        experiment_id=run.experiment_id,
        number=run.number,
        user=run.user.username,
        status=run.status,
        argv=list(run.argv),
        params=dict(run.params),
        input_path=run.input_path,
        output_path=run.output_path,
        log_path=run.log_path,
        host=run.host,
        worker=run.worker,
        job_id=run.job_id,
        pid=run.pid,
        gpus=run.gpus,
        needs_gpu=run.needs_gpu,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        heartbeat_at=run.heartbeat_at,
        exit_code=run.exit_code,
        signal=run.signal,
        reason=run.reason,
        stage=run.stage,
        progress=run.progress,
        eta_seconds=run.eta_seconds,
        provenance=dict(run.provenance or {}),
        layout=run.layout,
        queue_position=_queue_position(run),
    )


def _queue_position(run: Run) -> int | None:
    """Where a queued run stands in the first-in-first-out line (1 = next), read in its session.

    A run in Slurm's queue has no place in ours: its note gives Slurm's state and reason.
    """
    session = object_session(run)
    if run.status != "queued" or run.job_id is not None or session is None:
        return None
    ahead = session.scalar(
        select(func.count(Run.id)).where(
            Run.status == "queued",
            or_(
                Run.queued_at < run.queued_at,
                and_(Run.queued_at == run.queued_at, Run.id < run.id),
            ),
        )
    )
    return int(ahead or 0) + 1


def experiment_from(exp: Experiment, last: RunRecord | None, count: int) -> ExperimentRecord:
    """An experiment as the API shows it, with its status taken from the latest run."""
    return ExperimentRecord(
        id=exp.id,
        owner=exp.owner.username,
        name=exp.name,
        description=exp.description,
        input_path=exp.input_path,
        output_path=exp.output_path,
        pipeline=exp.pipeline,
        params=dict(exp.params),
        parent_id=exp.parent_id,
        shared=exp.shared,
        created_at=exp.created_at,
        updated_at=exp.updated_at,
        status=last.status if last else "created",
        run_count=count,
        last_run=last,
    )
