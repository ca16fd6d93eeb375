"""The Slurm executor: each run is one batch job on the lab's cluster, and Slurm queues them.

Submitting records the run as queued and calls `sbatch` (an argument list; the script on its
stdin) with the partition, account, QOS, time limit, memory, CPUs and extra options from the
settings, and ``--gres=gpu:1`` for a run that needs a GPU. The job's script is a Python script
that becomes the run's supervisor on the compute node (`slurm_job`): it claims the run,
heartbeats, ships the log to the database (and Redis), and records how the run ended, so no
log file needs to be shared; the data folders and the data home are shared as usual.

While Slurm holds a job, every reconcile writes Slurm's state into the queued run's reason
("Slurm job 123: PENDING (Resources)"). A run whose job ended without a final record gets
Slurm's reason (time limit, out of memory, node failure, preemption, scancel behind our back)
or, failing that, ``lost``. Stop is ``scancel --batch --signal=TERM`` (the supervisor stops
the pipeline with the usual grace), then a plain ``scancel`` once the grace is long over.
Slurm being unreachable never fails a run: submission waits, queued, and is retried.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from pico_nb.execution import bookkeeping, slurm_commands
from pico_nb.execution.slurm_commands import JobView, SlurmRefused, SlurmUnreachable
from pico_nb.file_modes import private_folder
from pico_nb.models import ACTIVE_STATUSES, Run, utcnow

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.settings import Settings

log = logging.getLogger(__name__)

JOB_PREFIX = "pico-nb-run-"
UNREACHABLE = "waiting for Slurm, which does not answer; submitted when it is back"
RESUBMIT_AFTER = timedelta(seconds=60)
"""A submission that left no job id this long ago died half-way: submit again."""
MIN_RECONCILE_SECONDS = 1.0
"""Dashboards reconcile each tick: ask Slurm at most this often per process."""


def batch_script(settings: Settings, run_id: int) -> str:
    """The job's script: this run's supervisor, in the Python the compute nodes run."""
    python = settings.slurm_python or sys.executable
    return (
        f"#!{python}\n"
        f"# pico-nb run {run_id}: its supervisor on the compute node\n"
        "import sys\n"
        "from pico_nb.execution.slurm_entry import WAKE\n"
        "from pico_nb.execution.slurm_job import main\n"
        f"sys.exit(main({run_id}, {settings.model_dump_json()!r}, WAKE))\n"
    )


def job_output(settings: Settings, run_id: int) -> Path:
    """Where Slurm writes the job's own output (the supervisor's, not the run's log)."""
    return settings.home / "logs" / "supervisors" / f"slurm_run_{run_id}.out"


def sbatch_options(settings: Settings, run: Run) -> list[str]:
    """What the job asks Slurm for; one task on one node, never requeued behind our back."""
    output = job_output(settings, run.id)
    private_folder(output.parent)
    options = [
        f"--job-name={JOB_PREFIX}{run.id}",
        f"--output={output}",
        "--chdir=/tmp",
        "--export=NONE",  # nothing of ours (tokens, URLs) reaches the job's environment
        "--no-requeue",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={settings.slurm_cpus_per_run}",
    ]
    for flag, value in (
        ("--partition", settings.slurm_partition),
        ("--account", settings.slurm_account),
        ("--qos", settings.slurm_qos),
        ("--time", settings.slurm_time_limit),
        ("--mem", settings.slurm_memory),
    ):
        if value:
            options.append(f"{flag}={value}")
    if run.needs_gpu:
        options.append("--gres=gpu:1")
    return options + list(settings.slurm_options)


class SlurmExecutor:
    """Submit, stop and reconcile runs that Slurm executes on the lab's cluster."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._asked_at = 0.0

    def submit(self, run_id: int) -> None:
        """sbatch the run's job; a refusal fails the run with Slurm's words, silence waits."""
        with self.db.write() as session:
            run = bookkeeping.run_row(session, run_id)
            if run.status != "queued" or run.job_id is not None:
                return
            run.dispatched_at = utcnow()  # submitting: a reconcile meanwhile leaves it alone
            options = sbatch_options(self.settings, run)
        try:
            job_id = slurm_commands.sbatch(
                self.settings, options, batch_script(self.settings, run_id)
            )
        except SlurmUnreachable as exc:
            log.info("run %s stays queued: %s", run_id, exc)
            detail = str(exc)
            self._note(run_id, lambda run: _wait_for_slurm(run, detail))
            return
        except SlurmRefused as exc:
            refusal = f"Slurm refused the job: {exc}"
            self._note(run_id, lambda run: bookkeeping.finish(run, "failed", refusal))
            return
        with self.db.write() as session:
            kept = _keep_job(bookkeeping.run_row(session, run_id), job_id)
        if not kept:  # another submission won the race: this job must not linger in Slurm
            self._cancel(job_id)

    def _cancel(self, job_id: str, *options: str) -> None:
        """scancel, best effort: a later reconcile tries again if Slurm did not answer."""
        try:
            slurm_commands.scancel(self.settings, job_id, *options)
        except (SlurmUnreachable, SlurmRefused) as exc:
            log.warning("could not signal Slurm job %s: %s", job_id, exc)

    def _note(self, run_id: int, change: Any) -> None:
        """Apply one change to a run's record in its own transaction."""
        with self.db.write() as session:
            change(bookkeeping.run_row(session, run_id))

    def stop(self, run_id: int) -> None:
        """Wake the run's supervisor through Slurm; a queued run's job is simply cancelled."""
        with self.db.read() as session:
            run = bookkeeping.run_row(session, run_id)
            job_id, status = run.job_id, run.status
        if job_id is None:
            return  # never submitted, or not a Slurm run: the record is all there is
        if status == "running":  # without Slurm, the supervisor's heartbeat sees it too
            self._cancel(job_id, "--batch", "--signal=TERM")
        else:
            self._cancel(job_id)

    def reconcile(self) -> list[int]:
        """Compare our active runs with Slurm's view; return the runs it ended."""
        if time.monotonic() - self._asked_at < MIN_RECONCILE_SECONDS:
            return []
        self._asked_at = time.monotonic()
        with self.db.read() as session:
            active = list(session.scalars(select(Run).where(Run.status.in_(ACTIVE_STATUSES))))
            waiting = [r.id for r in active if r.job_id is None and _submission_due(r)]
            ids = {r.id: r.job_id for r in active if r.job_id is not None}
        for run_id in waiting:
            self.submit(run_id)
        if not ids:
            return []
        try:
            views = self._views(list(ids.values()))
        except (SlurmUnreachable, SlurmRefused) as exc:
            log.warning("Slurm gave no view of its jobs; runs left as they are: %s", exc)
            return []
        ended = []
        for run_id, job_id in ids.items():
            with self.db.write() as session:
                run = bookkeeping.run_row(session, run_id)
                if run.status not in ACTIVE_STATUSES or run.job_id != job_id:
                    continue
                done, cancel = self._settle(run, views.get(job_id))
            if done:
                ended.append(run_id)
            if cancel:  # after the record is written: no subprocess inside a transaction
                self._cancel(job_id)
        return ended

    def _views(self, job_ids: list[str]) -> dict[str, JobView]:
        """Slurm's view of the jobs: squeue for all, scontrol for those that ended."""
        views = slurm_commands.jobs(self.settings, job_ids)
        for job_id, view in list(views.items()):
            if view.final:
                detail = slurm_commands.show_job(self.settings, job_id)
                if detail is not None:
                    views[job_id] = detail
        return views

    def _settle(self, run: Run, view: JobView | None) -> tuple[bool, bool]:
        """Bring one run's record in line with its job: (the run ended here, cancel its job)."""
        now = utcnow()
        job = run.job_id
        if view is None:
            if run.status == "running" and not _stale(run, self.settings, now):
                return False, False  # Slurm forgets finished jobs; a live heartbeat is news
            bookkeeping.finish(run, "failed", f"lost: Slurm no longer knows job {job}")
            return True, False
        if view.final:
            self._finish_ended(run, view)
            return True, False
        if run.status == "queued":
            run.reason = slurm_commands.pending(view)
            return False, False
        if _stale(run, self.settings, now):
            last = run.heartbeat_at.strftime("%H:%M:%S UTC") if run.heartbeat_at else "?"
            bookkeeping.finish(
                run,
                "failed",
                f"lost: the supervisor of Slurm job {job} stopped reporting at {last}; "
                "job cancelled",
            )
            return True, True
        # A stop long past its grace: cancel the job; the reconcile after this one records it.
        return False, run.stop_requested_at is not None and _past_grace(run, self.settings, now)

    def _finish_ended(self, run: Run, view: JobView) -> None:
        """A job over without a final record: Slurm's reason, or lost with what Slurm knows."""
        if run.stop_requested_by:
            bookkeeping.finish(
                run,
                "cancelled",
                f"stopped by {run.stop_requested_by} (Slurm cancelled job {view.job_id})",
            )
            return
        why = slurm_commands.ending(view)
        if why is None:
            out = job_output(self.settings, run.id)
            why = (
                f"lost: Slurm job {view.job_id} ended {view.state} (exit {view.exit_code}) "
                f"without a final report; its output is in {out}"
            )
        bookkeeping.finish(run, "failed", why)

    def queue_state(self) -> dict[str, Any]:
        """Runs running and queued, and the partition's nodes as sinfo lists them."""
        with self.db.read() as session:
            state: dict[str, Any] = bookkeeping.count_active(session)
        try:
            nodes = slurm_commands.nodes(self.settings)
        except (SlurmUnreachable, SlurmRefused) as exc:
            state.update(slots=0, gpus=[], nodes=[], slurm_error=str(exc))
            return state
        up = [n for n in nodes if n["state"].rstrip("*~#") in ("idle", "mixed", "allocated")]
        cpus = sum(int(n["cpus"] or 0) for n in up)
        state.update(
            slots=cpus // max(self.settings.slurm_cpus_per_run, 1),
            gpus=sorted({n["gres"] for n in up if n["gres"]}),
            nodes=nodes,
            partition=self.settings.slurm_partition or "(default)",
        )
        return state


def _keep_job(run: Run, job_id: str) -> bool:
    """Note the submitted job's id; False if the run has another job or has ended."""
    if run.job_id is None and run.status in ACTIVE_STATUSES:
        run.job_id = job_id
        if run.status == "queued":
            run.reason = f"Slurm job {job_id}: submitted"
    return run.job_id == job_id


def _wait_for_slurm(run: Run, detail: str) -> None:
    """Back in line for submission: Slurm did not answer."""
    if run.status == "queued" and run.job_id is None:
        run.dispatched_at = None
        run.reason = f"{UNREACHABLE} ({detail})"


def _submission_due(run: Run) -> bool:
    """A queued run with no job: never sent, or sent so long ago the sender must have died."""
    if run.status != "queued":
        return False
    sent: datetime | None = run.dispatched_at
    return sent is None or utcnow() - sent > RESUBMIT_AFTER


def _stale(run: Run, settings: Settings, now: datetime) -> bool:
    """The supervisor has not reported for longer than the lab allows."""
    beat = run.heartbeat_at
    return beat is not None and now - beat > timedelta(seconds=settings.lost_after_seconds)


def _past_grace(run: Run, settings: Settings, now: datetime) -> bool:
    """A stop asked for long enough ago that the supervisor should have carried it out."""
    asked = run.stop_requested_at
    slack = settings.stop_grace_seconds + 2 * settings.heartbeat_seconds + 5
    return asked is not None and now - asked > timedelta(seconds=slack)
