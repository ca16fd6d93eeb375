"""The ORM records: users, experiments and their runs (DESIGN.md, "Records")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ACTIVE_STATUSES = ("queued", "running")
RUN_FOLDER = "run-folder"
"""Run.layout of runs that write to their own `<output>/run-000n/`."""
SHARED_FOLDER = "shared"
"""Run.layout of runs recorded before that: they all wrote into the experiment's folder."""


def utcnow() -> datetime:
    """The one clock every record uses, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always gives back aware datetimes, even on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use pico_nb.models.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base shared by the models and the migrations."""


class User(Base):
    """A lab member; password_hash is empty for identities the hub or OS vouches for."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notify_email: Mapped[str | None] = mapped_column(String(320))  # opt-in, when a run ends
    notify_webhook: Mapped[str | None] = mapped_column(String(2000))  # a secret: never logged


class Experiment(Base):
    """What to run: folders and parameters; its history is the list of runs."""

    __tablename__ = "experiments"
    __table_args__ = (Index("ix_experiments_owner_created", "owner_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    input_path: Mapped[str] = mapped_column(Text)
    output_path: Mapped[str] = mapped_column(Text)
    pipeline: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id"))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[User] = relationship(lazy="joined")


class Run(Base):
    """One execution of an experiment, kept for good with what exactly ran and how it ended."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_runs_experiment_number"),
        Index("ix_runs_status_queued", "status", "queued_at"),
        Index("ix_runs_user_started", "user_id", "started_at"),
        Index("ix_runs_unnotified", "notified_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    argv: Mapped[list[str]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_path: Mapped[str] = mapped_column(Text)
    output_path: Mapped[str] = mapped_column(Text)
    log_path: Mapped[str] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    worker: Mapped[str | None] = mapped_column(String(255))
    supervisor_pid: Mapped[int | None] = mapped_column(Integer)
    supervisor_start: Mapped[float | None] = mapped_column(Float)  # with the pid, its identity
    pid: Mapped[int | None] = mapped_column(Integer)
    pgid: Mapped[int | None] = mapped_column(Integer)
    pipeline_start: Mapped[float | None] = mapped_column(Float)
    gpus: Mapped[str | None] = mapped_column(String(100))
    needs_gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its end was announced
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    stop_requested_by: Mapped[str | None] = mapped_column(String(100))
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    job_id: Mapped[str | None] = mapped_column(String(64))  # the executor's own id (Slurm's)
    report_token_hash: Mapped[str | None] = mapped_column(String(64))  # a job as the owner's
    stage: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    layout: Mapped[str] = mapped_column(String(20), default=RUN_FOLDER)

    experiment: Mapped[Experiment] = relationship()
    user: Mapped[User] = relationship(lazy="joined")


class Worker(Base):
    """A Celery worker machine's slots and GPUs, as it last reported them."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    slots: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The settings every worker must share, as this one started with them (worker_settings)."""
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The worker's own measurement at its last heartbeat (`execution.measure`)."""


class LogBytes(Base):
    """Bytes [start, stop) of a remote run's log, kept centrally so history outlives workers."""

    __tablename__ = "log_chunks"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stop: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LabIdentity(Base):
    """One row: a random name for this lab's database, made when it was created, so labs that
    share one Redis never read each other's live logs."""

    __tablename__ = "lab_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity: Mapped[str] = mapped_column(String(32))


class Curation(Base):
    """Which cells of a run an analyst rejected; kept apart from the pipeline's own outputs."""

    __tablename__ = "curations"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    rejected: Mapped[list[int]] = mapped_column(JSON, default=list)
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginThrottle(Base):
    """Failed logins of one account ("user:NAME") or one address ("addr:IP"), and until when
    further tries are refused; in the database so a hub restart does not forget an attack."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
