"""What a supervisor tells its run's record, as data: so it can go straight to the database,
or, from a batch job running as the run's owner, through the pico service (`job_link`).

A :class:`Report` is one change: the processes that now own the run, a heartbeat with the
latest progress, or the run's end. :func:`apply` writes it into the run's row and returns who
asked for a stop, if anyone, which is all a supervisor needs to hear back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.models import Run

PROCESS_FIELDS = ("supervisor_pid", "supervisor_start", "pid", "pgid", "pipeline_start")
OUTCOMES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Report:
    """One change a supervisor makes to its run's record."""

    processes: dict[str, float] | None = None  # PROCESS_FIELDS → pid or start time
    heartbeat: bool = False
    stage: str = ""
    progress: float | None = None
    eta_seconds: float | None = None
    status: str = ""  # one of OUTCOMES once the run has ended
    reason: str = ""
    exit_code: int | None = None
    signal: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object, for the service."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """A report from a job, checked: only the known fields, each of its type and range."""
        report = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        processes = report.processes or {}
        number = (int, float)
        checks = {
            "processes": isinstance(processes, dict)
            and set(processes) <= set(PROCESS_FIELDS)
            and all(isinstance(v, number) and v >= 0 for v in processes.values()),
            "heartbeat": isinstance(report.heartbeat, bool),
            "stage": isinstance(report.stage, str),
            "progress": report.progress is None
            or (isinstance(report.progress, number) and 0.0 <= report.progress <= 1.0),
            "eta_seconds": report.eta_seconds is None or isinstance(report.eta_seconds, number),
            "status": report.status in ("", *OUTCOMES),
            "reason": isinstance(report.reason, str),
            "exit_code": report.exit_code is None or type(report.exit_code) is int,
            "signal": report.signal is None or isinstance(report.signal, str),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"not a run report: bad {', '.join(bad)}")
        return report


def apply(run: Run, report: Report) -> str | None:
    """Write a report into the run's row; who asked for a stop, if anyone."""
    from pico_nb.execution import bookkeeping
    from pico_nb.models import utcnow

    for name, value in (report.processes or {}).items():
        setattr(run, name, int(value) if name in ("supervisor_pid", "pid", "pgid") else value)
    if report.stage:
        run.stage = report.stage[:200]
    if report.heartbeat:
        run.heartbeat_at = utcnow()
        run.progress, run.eta_seconds = report.progress, report.eta_seconds
    if report.status:
        if report.status == "completed":
            run.progress = 1.0
        bookkeeping.finish(
            run,
            report.status,
            report.reason[:2000],
            exit_code=report.exit_code,
            signal=report.signal,
            heartbeat_at=utcnow(),
        )
    return run.stop_requested_by


class Ledger(Protocol):
    """Where a supervisor's reports go; an outage raises, and the supervisor rides it out."""

    keeper: str  # what keeps the record, in the supervisor's words: "database", "pico service"

    def write(self, report: Report) -> str | None:
        """Record one report; who asked for a stop, if anyone."""
        ...


class DbLedger:
    """Reports straight into the database, for supervisors that may open it."""

    keeper = "database"

    def __init__(self, db: Database, run_id: int) -> None:
        self.db, self.run_id = db, run_id

    def write(self, report: Report) -> str | None:
        from pico_nb.execution.bookkeeping import run_row

        with self.db.write() as session:
            return apply(run_row(session, self.run_id), report)
