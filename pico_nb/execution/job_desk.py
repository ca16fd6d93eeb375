"""The service's side of Slurm jobs that run as the run's owner.

On a lab server with member accounts a run's batch job is submitted as its owner, so the job
runs as the member and may not open the lab's database. It holds one secret instead, a random
token made for that run only (only its hash is kept), and reports through the pico service:
it claims the run and gets its launch plan, sends heartbeats and the end as
:class:`~pico_nb.execution.reports.Report`\\ s, and sends its log as it is written. A token
opens nothing but its own run, and only while that run is queued or running.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from pico_nb import logstream
from pico_nb.contract.errors import PermissionDenied, ValidationError
from pico_nb.execution import bookkeeping, reports, slurm_job
from pico_nb.models import Run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pico_nb.db import Database
    from pico_nb.settings import Settings

ENDED = "the lab (the run is no longer running)"
"""The stop a job hears once its run was ended without it (lost, or deleted)."""


def new_token() -> tuple[str, str]:
    """(token for the job, hash for the record)."""
    token = secrets.token_urlsafe(32)
    return token, _hashed(token)


def _hashed(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _checked(session: Session, run_id: int, token: str) -> Run:
    """The run this token was made for; any mismatch is the same refusal, saying nothing."""
    run = session.get(Run, run_id)
    kept = run.report_token_hash if run is not None else None
    if run is None or kept is None or not hmac.compare_digest(kept, _hashed(token)):
        raise PermissionDenied("this token does not report for that run")
    return run


def _checked_node(job_id: str, node: dict[str, Any]) -> dict[str, Any]:
    """The job's word on where it runs, each field of its type, or a refusal naming it."""
    pid, start = node.get("supervisor_pid"), node.get("supervisor_start")
    checks = {
        "job_id": job_id.isdigit() and len(job_id) <= 20,
        "node.host": isinstance(node.get("host"), str) and 0 < len(node["host"]) <= 255,
        "node.supervisor_pid": type(pid) is int and 0 < pid < 2**31,
        "node.supervisor_start": start is None or isinstance(start, int | float),
        "node.gpus": isinstance(node.get("gpus", ""), str),
        "node.spool": isinstance(node.get("spool"), str) and node["spool"].startswith("/"),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValidationError({name: "missing or not valid" for name in bad})
    return node


def claim(
    db: Database, settings: Settings, run_id: int, token: str, job_id: str, node: dict[str, Any]
) -> dict[str, Any] | None:
    """Queued to running for this job; its launch plan, or None when there is nothing to do."""
    node = _checked_node(job_id, node)
    with db.write() as session:
        bookkeeping.lock_queue(session)
        run = _checked(session, run_id, token)
        if not slurm_job.claimable(run, job_id):
            return None
        slurm_job.start_job(run, job_id, node)
        session.flush()
        plan = bookkeeping.launch_plan(run, settings, node["spool"])
    plan["account"] = None  # the job already runs as the owner
    return plan


def report(db: Database, run_id: int, token: str, change: dict[str, Any]) -> str | None:
    """Record a job's report; who asked for a stop, if anyone."""
    try:
        parsed = reports.Report.from_json(change)
    except (TypeError, ValueError) as exc:
        raise ValidationError.one("report", str(exc)) from None
    with db.write() as session:
        run = _checked(session, run_id, token)
        if run.status != "running":
            return ENDED
        return reports.apply(run, parsed)


def keep_log(
    db: Database, settings: Settings, run_id: int, token: str, start: int, data: bytes
) -> int:
    """Keep log bytes a job sent; the size kept, from which it sends next."""
    with db.read() as session:
        run = _checked(session, run_id, token)
        if run.status != "running":
            raise PermissionDenied("the run is no longer running")
    client = logstream.connect(settings.effective_log_stream_url)
    return logstream.keep_bytes(db, client, run_id, start, data)
