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
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from pico_nb.execution import bookkeeping, job_desk, slurm_commands
from pico_nb.execution.queue_keeping import QueueKeeping
from pico_nb.execution.runas import owner_account
from pico_nb.execution.slurm_commands import JobView, SlurmRefused, SlurmUnreachable
from pico_nb.execution.slurm_script import batch_script, job_output, sbatch_options
from pico_nb.models import ACTIVE_STATUSES, Run, utcnow
from pico_nb.schemas import JobRecord, MachineRecord, QueueRecord

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy.orm import Session

    from pico_nb.db import Database
    from pico_nb.settings import Settings

log = logging.getLogger(__name__)

UNREACHABLE = "waiting for Slurm, which does not answer; submitted when it is back"
RESUBMIT_AFTER = timedelta(seconds=60)
"""A submission that left no job id this long ago died half-way: submit again."""
STARTED = utcnow()
"""When this process began listening for reports."""
MIN_RECONCILE_SECONDS = 1.0
"""Dashboards reconcile each tick: ask Slurm at most this often per process."""


class SlurmExecutor(QueueKeeping):
    """Submit, stop and reconcile runs that Slurm executes on the lab's cluster."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._asked_at = 0.0

    def submit(self, run_id: int) -> None:
        """sbatch the run's job (as its owner on a lab server, with a new token for its
        reports); a refusal fails the run with Slurm's words, silence waits."""
        token = None
        with self.db.write() as session:
            run = bookkeeping.run_row(session, run_id)
            if run.status != "queued" or run.job_id is not None:
                return
            run.dispatched_at = utcnow()  # submitting: a reconcile meanwhile leaves it alone
            account, folder = self._owner(run), run.output_path
            if account:
                token, run.report_token_hash = job_desk.new_token()
            options = sbatch_options(self.settings, run)
        try:
            script = batch_script(self.settings, run_id, token)
        except ValueError as exc:
            unset = str(exc)
            self._note(run_id, lambda run: bookkeeping.finish(run, "failed", unset))
            return
        try:
            job_id = slurm_commands.sbatch(self.settings, options, script, account, folder)
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
            self._cancel(job_id, account=account)

    def _owner(self, run: Run) -> str | None:
        """The account a run's job is submitted and signalled as: the owner's on a lab
        server, so Slurm's accounting and fair share see the member; else ours."""
        return owner_account(self.settings, run.user.username)

    def queue_position(self, session: Session, run: Run) -> int | None:
        """Slurm keeps the queue: a queued run's reason gives Slurm's state, not a place."""
        return None

    def _our_jobs(self, session: Session, statuses: Collection[str]) -> dict[str, int]:
        """Job id → run id of our runs in these states: the only jobs pico-nb asks Slurm about,
        so no other user's job is ever named."""
        rows = session.execute(
            select(Run.job_id, Run.id).where(Run.status.in_(statuses), Run.job_id.is_not(None))
        )
        return {job_id: run_id for job_id, run_id in rows if job_id is not None}

    def _cancel(self, job_id: str, *options: str, account: str | None = None) -> None:
        """scancel, best effort: a later reconcile tries again if Slurm did not answer."""
        try:
            slurm_commands.scancel(self.settings, job_id, *options, account=account)
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
            job_id, status, account = run.job_id, run.status, self._owner(run)
        if job_id is None:
            return  # never submitted, or not a Slurm run: the record is all there is
        if status == "running":  # without Slurm, the supervisor's heartbeat sees it too
            self._cancel(job_id, "--batch", "--signal=TERM", account=account)
        else:
            self._cancel(job_id, account=account)

    def reconcile(self) -> list[int]:
        """Compare our active runs with Slurm's view; return the runs it ended."""
        if time.monotonic() - self._asked_at < MIN_RECONCILE_SECONDS:
            return []
        self._asked_at = time.monotonic()
        with self.db.read() as session:
            active = list(session.scalars(select(Run).where(Run.status.in_(ACTIVE_STATUSES))))
            waiting = [r.id for r in active if r.job_id is None and _submission_due(r)]
            ids = {r.id: r.job_id for r in active if r.job_id is not None}
            owners = {r.id: self._owner(r) for r in active if r.job_id is not None}
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
                self._cancel(job_id, account=owners[run_id])
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
        if _stale(run, self.settings, now, vouched=view.state == "RUNNING"):
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
            out = str(job_output(self.settings, run)).replace("%j", view.job_id)
            why = (
                f"lost: Slurm job {view.job_id} ended {view.state} (exit {view.exit_code}) "
                f"without a final report; its output is in {out}"
            )
        bookkeeping.finish(run, "failed", why)

    def queue_state(self) -> QueueRecord:
        """Runs running and queued, and the slots the partition's nodes that are up offer."""
        with self.db.read() as session:
            running, queued = bookkeeping.count_active(session)
            ours = self._our_jobs(session, ACTIVE_STATUSES)
        partition = self.settings.slurm_partition or "(default)"
        try:
            up = [n for n in slurm_commands.nodes(self.settings) if n.up]
            views = slurm_commands.jobs(self.settings, ours)
        except (SlurmUnreachable, SlurmRefused) as exc:
            return QueueRecord(
                slots=0, running=running, queued=queued, partition=partition, error=str(exc)
            )
        jobs = [
            JobRecord(
                job_id=v.job_id, run_id=ours[v.job_id], state=v.state, reason=v.reason, node=v.node
            )
            for v in sorted(views.values(), key=lambda v: ours[v.job_id])
        ]
        return QueueRecord(
            slots=sum(n.cpus or 0 for n in up) // max(self.settings.slurm_cpus_per_run, 1),
            running=running,
            queued=queued,
            gpus=sorted({n.gres for n in up if n.gres}),
            partition=partition,
            jobs=jobs,
        )

    def machines(self) -> list[MachineRecord]:
        """The partition's nodes from sinfo, each with the pico-nb runs squeue places on it;
        only our own jobs are asked about, so no other user's job is ever named."""
        with self.db.read() as session:
            ours = self._our_jobs(session, ("running",))
        try:
            nodes = slurm_commands.nodes(self.settings)
            views = slurm_commands.jobs(self.settings, ours)
        except (SlurmUnreachable, SlurmRefused) as exc:
            log.warning("Slurm did not describe its nodes: %s", exc)
            return []
        on: dict[str, list[int]] = {}
        for job_id, view in sorted(views.items(), key=lambda item: ours[item[0]]):
            on.setdefault(view.node, []).append(ours[job_id])
        return [
            MachineRecord(
                name=n.name,
                kind="node",
                state=n.state,
                cpus=n.cpus,
                cpus_busy=n.cpus_busy,
                memory_total_mb=n.memory_mb,
                memory_used_mb=(
                    n.memory_mb - n.free_memory_mb
                    if n.memory_mb is not None and n.free_memory_mb is not None
                    else None
                ),
                gres=n.gres,
                running=len(on.get(n.name, [])),
                runs=on.get(n.name, []),
                last_seen=utcnow(),
            )
            for n in nodes
        ]


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


def _stale(run: Run, settings: Settings, now: datetime, vouched: bool = False) -> bool:
    """The supervisor has not reported for longer than the lab allows. A job that reports
    through the pico service could not while no service was up to hear it: its silence
    counts from this process's start at the earliest, so a service restart loses no run.
    A job Slurm ``vouched`` for as running may be riding out an outage between its node and
    the database or service, so it is given the supervisor's own ``db_outage_seconds`` too:
    cancelling it sooner would kill a run its supervisor would have carried through."""
    beat = run.heartbeat_at
    if beat is not None and run.report_token_hash is not None:
        beat = max(beat, STARTED)
    allowed = settings.lost_after_seconds + (settings.db_outage_seconds if vouched else 0.0)
    return beat is not None and now - beat > timedelta(seconds=allowed)


def _past_grace(run: Run, settings: Settings, now: datetime) -> bool:
    """A stop asked for long enough ago that the supervisor should have carried it out."""
    asked = run.stop_requested_at
    slack = settings.stop_grace_seconds + 2 * settings.heartbeat_seconds + 5
    return asked is not None and now - asked > timedelta(seconds=slack)
