"""The batch side of a Slurm run: the job's one process is the run's supervisor on the node.

Slurm starts the batch script that `SlurmExecutor` submitted; it imports `slurm_entry` (which
catches SIGTERM) and calls :func:`main`. The run is claimed first: queued to running in one
transaction, only by the job the record names (or by the first job, if the submitter has not
yet written the id), so a job submitted twice runs the pipeline once. From there it is a
worker's supervisor: the pipeline in its own process group, heartbeats, progress, stop with
grace, and the log shipped to the database (and Redis) as it is written, with a spool copy on
the node's own disk. When the pipeline dies of a signal nobody in pico-nb sent, Slurm is asked
why (time limit, memory, node failure, preemption, scancel) and the record says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pico_nb import logstream
from pico_nb.db import Database, open_database
from pico_nb.execution import bookkeeping, slurm_commands
from pico_nb.execution.job_link import JobLink, ServiceLedger, ServiceShipper
from pico_nb.execution.pipeline_process import launch, process_start
from pico_nb.execution.reports import DbLedger
from pico_nb.execution.shipping import ShippingSupervisor
from pico_nb.logs import LogWriter
from pico_nb.models import Run, utcnow
from pico_nb.settings import Settings

T = TypeVar("T")


class SlurmSupervisor(ShippingSupervisor):
    """Slurm queues and reconciles; what Slurm ended, Slurm is asked to explain."""

    job_id = ""

    def check_peers(self) -> None:
        """Other runs are Slurm's and the submitters' business."""

    def hand_on(self) -> None:
        """Slurm starts the next job itself."""

    oom_kills_before = 0

    def conclude(self, returncode: int, writer: LogWriter, write_error: OSError | None) -> None:
        """A signal nobody in pico-nb sent: the reason is Slurm's, if Slurm is ending the job,
        or the job's memory limit, if the kernel killed the pipeline for it."""
        if returncode < 0 and self.term_at is None and self.failure is None:
            if returncode == -signal.SIGKILL and oom_kills() > self.oom_kills_before:
                self.failure = slurm_commands.OOM
            else:
                self.failure = self._slurms_reason()
        super().conclude(returncode, writer, write_error)

    def _slurms_reason(self) -> str | None:
        """Why Slurm is ending this job, if it is."""
        try:
            view = slurm_commands.show_job(self.settings, self.job_id)
        except (slurm_commands.SlurmUnreachable, slurm_commands.SlurmRefused):
            return None
        return None if view is None else slurm_commands.ending(view)


def oom_kills() -> int:
    """Processes the kernel killed for this process's memory cgroup limit (v1 or v2), which
    Slurm's cgroup plugin sets from --mem; Slurm itself says OUT_OF_MEMORY only later."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            stats = Path(f"/sys/fs/cgroup/memory{path}/memory.oom_control")
        elif controllers == "":
            stats = Path(f"/sys/fs/cgroup{path}/memory.events")
        else:
            continue
        with contextlib.suppress(OSError, ValueError):
            for entry in stats.read_text().splitlines():
                name, _, value = entry.partition(" ")
                if name == "oom_kill":
                    return int(value)
    return 0


def this_node() -> dict[str, Any]:
    """Who claims: this node, this supervisor process and the GPUs Slurm gave the job."""
    return {
        "host": bookkeeping.HOST,
        "supervisor_pid": os.getpid(),
        "supervisor_start": process_start(os.getpid()),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES") or "",
        "machine": bookkeeping.machine(),
    }


def claimable(run: Run, job_id: str) -> bool:
    """Only a queued run, and only by the job its record names (or the first, before the
    submitter has written the id), so a job submitted twice runs the pipeline once."""
    if run.status != "queued" or run.job_id not in (None, job_id):
        print(f"run {run.id} is {run.status} (job {run.job_id}): nothing to do", flush=True)
        return False
    return True


def claim(db: Database, run_id: int, job_id: str) -> bool:
    """Queued to running, by this job only; the GPUs are those Slurm gave the job."""
    with db.write() as session:
        bookkeeping.lock_queue(session)
        run = bookkeeping.run_row(session, run_id)
        if not claimable(run, job_id):
            return False
        start_job(run, job_id, this_node())
    return True


def start_job(run: Run, job_id: str, node: dict[str, Any]) -> None:
    """Record that this job on its node now owns the run."""
    now = utcnow()
    run.status, run.started_at, run.heartbeat_at, run.job_id = "running", now, now, job_id
    run.host, run.worker = str(node["host"])[:255], f"slurm job {job_id}"
    run.supervisor_pid, run.supervisor_start = node["supervisor_pid"], node["supervisor_start"]
    visible = str(node.get("gpus") or "")
    run.gpus = visible[:100] if run.needs_gpu and visible else None
    run.reason = None
    run.provenance = {**run.provenance, **_machine(node.get("machine")), "slurm_job": job_id}


def _machine(given: Any) -> dict[str, Any]:
    """The node's description, as text only: a job's report is not trusted with more."""
    given = given if isinstance(given, dict) else {}
    out: dict[str, Any] = {k: str(given[k])[:200] for k in ("host", "platform") if k in given}
    packages = given.get("packages")
    if isinstance(packages, dict):
        out["packages"] = {str(k)[:100]: str(v)[:100] for k, v in list(packages.items())[:50]}
    return out


def main(run_id: int, settings_json: str, wake: threading.Event) -> int:
    """Claim the run for this job and see it through; the job's exit status."""
    settings = Settings.model_validate_json(settings_json)
    job_id = os.environ.get("SLURM_JOB_ID", "")
    db = open_database(settings.effective_database_url)
    if not claim(db, run_id, job_id):
        return 0
    spool = _spool(run_id)
    with db.read() as session:
        plan = bookkeeping.launch_plan(bookkeeping.run_row(session, run_id), settings, str(spool))
    redis = logstream.connect(settings.effective_log_stream_url)
    shipper = logstream.LogShipper(db, redis, run_id, settings.heartbeat_seconds)
    supervisor = SlurmSupervisor(settings, run_id, wake, DbLedger(db, run_id), shipper, spool)
    return _see_through(supervisor, job_id, plan)


def main_as_owner(
    run_id: int, url: str, token: str, job_settings: str, wake: threading.Event
) -> int:
    """The same, for a job running as the run's owner: every record and every byte of the
    log goes through the pico service at ``url``, proven by the run's token."""
    settings = Settings.model_validate({"home": "/nonexistent", **json.loads(job_settings)})
    job_id = os.environ.get("SLURM_JOB_ID", "")
    link = JobLink(url, run_id, token)
    spool = _spool(run_id)
    node = {**this_node(), "spool": str(spool)}
    plan = _patiently(lambda: link.claim(job_id, node), settings.db_outage_seconds)
    if plan is None:
        spool.parent.rmdir()
        return 0
    shipper = ServiceShipper(link, settings.db_outage_seconds)
    supervisor = SlurmSupervisor(settings, run_id, wake, ServiceLedger(link), shipper, spool)
    return _see_through(supervisor, job_id, plan)


def _spool(run_id: int) -> Path:
    """The node's own copy of the log, in a folder only this job's account can read."""
    return Path(tempfile.mkdtemp(prefix=f"pico-nb-run-{run_id}-")) / "log"


def _patiently(call: Callable[[], T], patience: float) -> T:
    """Call until the service answers, for at most ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return call()
        except ConnectionError as exc:
            if time.monotonic() > deadline:
                raise
            print(f"{exc}; retrying", flush=True)
            time.sleep(2.0)


def _see_through(supervisor: SlurmSupervisor, job_id: str, plan: dict[str, Any]) -> int:
    """Start the pipeline and own it to its record; the job's exit status."""
    supervisor.job_id, supervisor.oom_kills_before = job_id, oom_kills()
    supervisor.see_through(launch(plan, on_write=supervisor.shipper.append))
    with contextlib.suppress(OSError):
        supervisor.spool.parent.rmdir()
    return 0
