"""The records Lab returns: plain pydantic models, never ORM objects, so a remote Lab can too."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Frozen, JSON-round-trippable base of every API record."""

    model_config = ConfigDict(frozen=True, from_attributes=True)


class UserRecord(Record):
    """Who is acting, and whether they may see everything."""

    username: str
    is_admin: bool = False
    has_password: bool = False
    created_at: datetime | None = None


class FrameInfo(Record):
    """What an input folder holds, so forms can confirm the folder before saving."""

    path: str
    kind: str  # "jpeg sequence", "tiff stack", "tiff sequence"
    count: int
    files: int
    first: str
    width: int | None = None
    height: int | None = None


class RunRecord(Record):
    """One run as a user sees it: what ran, where, and how it ended."""

    id: int
    experiment_id: int
    number: int
    user: str
    status: str
    argv: list[str]
    params: dict[str, Any]
    input_path: str
    output_path: str
    log_path: str
    host: str | None = None
    worker: str | None = None
    job_id: str | None = None  # Slurm's job id, under the Slurm executor
    pid: int | None = None
    gpus: str | None = None
    needs_gpu: bool = False
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None
    stage: str | None = None
    progress: float | None = None
    eta_seconds: float | None = None
    provenance: dict[str, Any] = {}
    layout: str = "run-folder"  # "shared": recorded before runs had folders of their own
    queue_position: int | None = None  # 1 = next to start; only while queued

    @property
    def active(self) -> bool:
        """Queued or running: it may still change."""
        return self.status in ("queued", "running")

    @property
    def duration_seconds(self) -> float | None:
        """Wall time so far or in total; None until it started."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return max(0.0, (end - self.started_at).total_seconds())


class ExperimentRecord(Record):
    """An experiment with a summary of its latest run, as lists and detail views need."""

    id: int
    owner: str
    name: str
    description: str
    input_path: str
    output_path: str
    pipeline: str
    params: dict[str, Any]
    parent_id: int | None = None
    shared: bool = False
    created_at: datetime
    updated_at: datetime
    status: str = "created"
    run_count: int = 0
    last_run: RunRecord | None = None


class LogChunk(Record):
    """Text read from a run's log and where the next read starts."""

    run_id: int
    text: str
    offset: int
    next_offset: int
    size: int
    finished: bool


class LogLine(Record):
    """One event while following a log: a complete line and/or the latest progress."""

    line: str | None = None
    stage: str | None = None
    progress: float | None = None
    eta_seconds: float | None = None
    progress_text: str | None = None
    offset: int = 0


class OutputFile(Record):
    """A file a run produced, relative to its output folder."""

    path: str
    size: int


class ResultImage(Record):
    """A preview image the pipeline lists in summary.json."""

    title: str
    path: str


class Results(Record):
    """What a run produced: the pipeline's summary, its preview images, and its files."""

    run_id: int
    output_path: str
    summary: dict[str, Any] | None = None
    images: list[ResultImage] = []
    files: list[OutputFile] = []
    truncated: bool = False
    note: str | None = None  # why a run shows no results, e.g. a later run replaced them


class WorkerRecord(Record):
    """A worker machine as the resources view lists it."""

    name: str
    host: str
    slots: int
    gpus: list[str] = []
    state: str
    started_at: datetime
    heartbeat_at: datetime
    busy: int = 0
    runs: list[int] = []


class JobRecord(Record):
    """A run's job in Slurm's queue, as squeue reports it."""

    job_id: str
    run_id: int
    state: str  # PENDING, RUNNING, COMPLETING, …
    reason: str = ""  # why it is pending: Priority, Resources, …
    node: str = ""


class QueueRecord(Record):
    """The queue wherever runs run: slots, runs running and waiting, the GPUs runs may have."""

    slots: int
    running: int
    queued: int
    gpus: list[str] = []
    workers: int | None = None  # Celery workers online; None under other executors
    partition: str | None = None  # the Slurm partition runs go to, under Slurm
    error: str | None = None  # why the executor could tell no more (Slurm did not answer)
    jobs: list[JobRecord] = []  # this member's Slurm jobs, pending and running (all: admins)


class GpuRecord(Record):
    """One GPU as its machine last measured it."""

    index: str
    name: str
    utilisation: float | None = None  # 0-1
    memory_used_mb: int | None = None
    memory_total_mb: int | None = None


class MachineRecord(Record):
    """A machine runs run on, as it measured itself (or as Slurm describes its node)."""

    name: str
    kind: str  # "host" (local executor), "worker" (Celery), "node" (Slurm)
    state: str  # online / stopped / lost, or Slurm's node state (idle, mixed, down, …)
    cpus: int | None = None  # None: not measured yet
    cpus_busy: int | None = None  # CPUs Slurm has allocated to jobs
    load: float | None = None  # the last minute's load average per CPU
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    gpus: list[GpuRecord] = []
    gpu_note: str | None = None  # why no GPU is listed, in words
    gres: str = ""  # Slurm's generic resources, e.g. gpu:2
    slots: int | None = None  # runs pico-nb starts there at once (None: Slurm decides)
    running: int = 0  # pico-nb runs running there, anyone's
    runs: list[int] = []  # this member's runs among them (every run, for an admin)
    last_seen: datetime | None = None


class CellRecord(Record):
    """One segmented cell: where it is, how big, how active, and whether it was rejected."""

    id: int
    area: int
    centre_y: float
    centre_x: float
    peak_dff: float
    snr: float
    active: float  # fraction of frames above 3 noise levels
    accepted: bool = True


class CellTable(Record):
    """A finished run's cells, for the viewer's table and image."""

    run_id: int
    frames: int
    frame_rate: float
    height: int
    width: int
    cells: list[CellRecord] = []
    editable: bool = False  # may this user change the curation
    curated_by: str | None = None
    curated_at: datetime | None = None

    @property
    def accepted(self) -> int:
        """How many cells survive curation."""
        return sum(c.accepted for c in self.cells)


class Traces(Record):
    """ΔF/F of some cells of a run, with the frame rate to put seconds on the axis."""

    run_id: int
    frame_rate: float
    cells: list[int]
    values: list[list[float]]


class Curation(Record):
    """The cells an analyst rejected in one run; everything else counts as accepted."""

    run_id: int
    rejected: list[int] = []
    updated_by: str | None = None
    updated_at: datetime | None = None


class RunNumbers(Record):
    """One run's figures for the compare table."""

    run_id: int
    experiment_id: int
    number: int
    name: str
    status: str
    reason: str | None = None
    cells: int | None = None
    accepted: int | None = None
    bad_frames: int | None = None
    motion_rms: float | None = None
    pipeline_seconds: float | None = None
    peak_memory_mb: float | None = None
    stage_seconds: dict[str, float] = {}
    params: dict[str, Any] = {}


class CellMatch(Record):
    """Two runs' cells matched by centroid: counts and how alike the matched traces are."""

    run_a: int
    run_b: int
    matched: int
    only_a: int
    only_b: int
    trace_correlation: float | None = None


class RunComparison(Record):
    """Runs side by side: numbers, differing parameters, and the first two runs' cell match."""

    runs: list[RunNumbers]
    differing: dict[str, list[Any]] = {}
    match: CellMatch | None = None


class LoginOutcome(Record):
    """A login attempt's answer: accepted, refused, or refused unchecked while locked."""

    ok: bool
    retry_after: float = 0.0
    failures: int = 0


class NotificationSettings(Record):
    """How a member hears that their runs ended; the webhook is shown without its token."""

    email: str | None = None
    webhook: str | None = None
    email_available: bool = False  # the lab has a mail server configured
