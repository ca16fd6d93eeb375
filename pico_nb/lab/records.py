"""ORM rows as the records the API shows, and the checks the Lab's services share."""

from __future__ import annotations

from typing import Any

from pico_nb import logs
from pico_nb.contract.errors import ValidationError
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


def run_record(run: Run, queue_position: int | None) -> RunRecord:
    """A run as the API shows it; its place in line is the executor's to tell."""
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
        queue_position=queue_position,
    )


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
