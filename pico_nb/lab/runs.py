"""Runs: starting and stopping them, their history and logs, the queue, workers, notifications."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from pico_nb import logs, logstream, notices
from pico_nb.contract.errors import Conflict, ValidationError
from pico_nb.execution import worker_admin
from pico_nb.inputs import MAX_LOG_READ, whole
from pico_nb.lab.core import LabCore
from pico_nb.lab.records import log_line
from pico_nb.models import ACTIVE_STATUSES, RUN_FOLDER, Run, utcnow
from pico_nb.run_folders import run_folder
from pico_nb.schemas import (
    LogChunk,
    LogLine,
    MachineRecord,
    NotificationSettings,
    QueueRecord,
    RunRecord,
    WorkerRecord,
)


class RunsMixin(LabCore):
    """Runs of the experiments this user may see, and the machinery that executes them."""

    def run_experiment(self, experiment_id: int) -> RunRecord:
        """Record run n+1 with exactly what will execute, then queue or start it."""
        with self.db.read() as session:
            exp = self._load(session, experiment_id, write=True)
            current = self._merged(exp, {})
        values = self._checked(current)
        log_folder = logs.log_folder(self.settings.home, self.username)
        if self.settings.executor == "local" and not logs.has_room(log_folder):
            raise Conflict(f"no space left on device for the run's log ({log_folder})")
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            self.executor.lock_queue(session)
            active = self._active_run(session, exp.id)
            if active is not None:
                raise Conflict(
                    f"experiment {exp.id} already has run {active.number} {active.status}"
                )
            self._output_in_use(session, values["output_path"], exp.id)
            number = (
                session.scalar(select(func.max(Run.number)).where(Run.experiment_id == exp.id)) or 0
            ) + 1
            output = Path(values["output_path"])
            inside = Run.output_path.startswith(str(output), autoescape=True)
            recorded = set(session.scalars(select(Run.output_path).where(inside)))
            folder = str(run_folder(output, exp.id, number, recorded))
            argv = self.spec.to_argv(values["params"], values["input_path"], folder)
            now = utcnow()
            run = Run(
                experiment_id=exp.id,
                number=number,
                user_id=self._user_id,
                status="queued",
                argv=argv,
                params=values["params"],
                input_path=values["input_path"],
                output_path=folder,
                layout=RUN_FOLDER,
                log_path=str(logs.log_path(self.settings.home, self.username, exp.id, number, now)),
                queued_at=now,
                needs_gpu=self.spec.needs_gpu(values["params"]),
                provenance=self.executor.provenance(self.spec, argv, self.username),
            )
            session.add(run)
            session.flush()
            run_id = run.id
        self.executor.submit(run_id)
        return self.get_run(run_id)

    def stop_run(self, run_id: int) -> RunRecord:
        """Stop a run: a queued one leaves the queue, a running one gets SIGTERM then SIGKILL."""
        with self.db.write() as session:
            self.executor.lock_queue(session)  # a claim committed meanwhile is seen
            run = self._load_run(session, run_id, write=True)
            if run.status not in ACTIVE_STATUSES:
                raise Conflict(
                    f"experiment {run.experiment_id} run {run.number} has already finished "
                    f"({run.status})"
                )
            if run.status == "queued":
                self.executor.cancel_queued(run, self.username)
            else:
                run.stop_requested_by, run.stop_requested_at = self.username, utcnow()
        self.executor.stop(run_id)
        return self.get_run(run_id)

    def runs(self, experiment_id: int) -> list[RunRecord]:
        """Every run of an experiment, oldest first: its history."""
        with self.db.read() as session:
            exp = self._load(session, experiment_id, write=False)
            rows = session.scalars(
                select(Run).where(Run.experiment_id == exp.id).order_by(Run.number)
            )
            return [self._run_record(session, r) for r in rows]

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> RunRecord:
        """Block until a run has finished (or the timeout passes) and return its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if not run.active or (deadline is not None and time.monotonic() > deadline):
                return run
            self.reconcile()
            time.sleep(poll)

    def _settled(self, run_id: int) -> RunRecord:
        """The run's record, reconciled first once its heartbeat is stale: a follower must not
        wait forever on a run nobody supervises any more, viewers or not."""
        run = self.get_run(run_id)
        beat = run.heartbeat_at
        cutoff = utcnow() - timedelta(seconds=self.settings.lost_after_seconds)
        if run.status == "running" and beat is not None and beat < cutoff:
            self.reconcile()
            run = self.get_run(run_id)
        return run

    def queue(self) -> QueueRecord:
        """Slots in use and runs waiting, for the resources view; only this member's jobs."""
        queue = self.executor.queue_state()
        mine = self._mine({job.run_id for job in queue.jobs})
        return queue.model_copy(update={"jobs": [j for j in queue.jobs if j.run_id in mine]})

    def machines(self) -> list[MachineRecord]:
        """Where runs run, as the executor reports them; other members' runs unnamed."""
        machines = self.executor.machines()
        mine = self._mine({rid for m in machines for rid in m.runs})
        return [m.model_copy(update={"runs": [r for r in m.runs if r in mine]}) for m in machines]

    def _mine(self, run_ids: set[int]) -> set[int]:
        """Those of these runs this member may see named: their own, or all for an admin."""
        if self.is_admin or not run_ids:
            return run_ids
        with self.db.read() as session:
            query = select(Run.id).where(Run.id.in_(run_ids), Run.user_id == self._user_id)
            return set(session.scalars(query))

    def workers(self) -> list[WorkerRecord]:
        """Celery workers with their slots, GPUs, runs and last report; others' runs unnamed."""
        return worker_admin.worker_records(self.db, self.settings, self._user_id, self.is_admin)

    def serve_as_worker(self, name: str | None, slots: int | None, gpus: str | None) -> None:
        """Run this process as a Celery worker until it is shut down (operators only)."""
        self._require_admin("start a worker")
        worker_admin.serve(self.db, self.settings, name, slots, gpus)

    # ---------------------------------------------------------------------- logs

    def log_source(self, run_id: int, poll: float = 0.05) -> logs.LogSource:
        """Where a readable run's log is: a worker's run in the central store, a local one in
        its file; the caller closes it. The hub service follows runs through it."""
        return self._log_source(self.get_run(run_id), poll)

    def _log_source(self, run: RunRecord, poll: float = 0.05) -> logs.LogSource:
        """A worker's run is read from the central store; a local one from its file."""
        remote = run.worker is not None or (
            run.status == "queued" and self.settings.executor != "local"
        )
        if not remote:
            return logs.FileLog(Path(run.log_path), poll)
        client = logstream.connect(self.settings.effective_log_stream_url)
        return logstream.RemoteLog(self.db, client, run.id)

    def read_log(self, run_id: int, offset: int = 0, limit: int = 1 << 20) -> LogChunk:
        """Log text from a byte offset and where to continue: any viewer, any time."""
        run = self.get_run(run_id)
        offset = whole(offset, "offset")
        limit = min(whole(limit, "limit", minimum=4), MAX_LOG_READ)
        with contextlib.closing(self._log_source(run)) as source:
            text, next_offset = logs.read_log(source, offset, limit)
            size = source.size()
        return LogChunk(
            run_id=run.id,
            text=text,
            offset=offset,
            next_offset=next_offset,
            size=size,
            finished=not run.active,
        )

    def follow_log(
        self,
        run_id: int,
        offset: int = 0,
        from_tail: int | None = None,
        poll: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[LogLine]:
        """Yield lines and progress live until the run ends (or `stop()`) and the log is read."""
        run = self.get_run(run_id)
        offset = whole(offset, "offset")
        if from_tail is not None:
            from_tail = whole(from_tail, "from_tail")
        state = {"checked": 0.0, "done": not run.active}

        def done() -> bool:
            if stop is not None and stop():
                return True
            now = time.monotonic()
            if not state["done"] and now - state["checked"] > 0.25:
                state["checked"] = now
                state["done"] = not self._settled(run_id).active
            return bool(state["done"])

        with contextlib.closing(self._log_source(run, poll)) as source:
            for event in logs.follow(source, offset, done=done, from_tail=from_tail):
                yield log_line(event)

    def active_runs(self, run_ids: Collection[int]) -> set[int]:
        """Which of these runs are still queued or running, in one query: the hub service
        learns that followed runs ended this way (operators and admins only)."""
        self._require_admin("watch every run")
        if not run_ids:
            return set()
        with self.db.read() as session:
            query = select(Run.id).where(Run.id.in_(run_ids), Run.status.in_(ACTIVE_STATUSES))
            return set(session.scalars(query))

    # ------------------------------------------------------------- notifications

    def notification_settings(self) -> NotificationSettings:
        """How this member hears that a run ended (opt-in e-mail and/or webhook)."""
        with self.db.read() as session:
            row = self._me(session)
            return NotificationSettings(
                email=row.notify_email,
                webhook=notices.mask_webhook(row.notify_webhook),
                email_available=bool(self.settings.smtp_host),
            )

    def set_notifications(
        self, email: str | None = None, webhook: str | None = None
    ) -> NotificationSettings:
        """Opt in or out: a value sets it, "" turns it off, None leaves it as it is."""
        errors: dict[str, str] = {}
        values: dict[str, str | None] = {}
        for field, value, check in (
            ("email", email, notices.check_email),
            ("webhook", webhook, notices.check_webhook),
        ):
            if value is None:
                continue
            if not isinstance(value, str):
                errors[field] = "must be text"
            elif not value.strip():
                values[field] = None
            else:
                try:
                    values[field] = check(value)
                except ValueError as exc:
                    errors[field] = str(exc)
        if "email" in values and values["email"] and not self.settings.smtp_host:
            errors["email"] = "this lab has no mail server configured (smtp_host)"
        if errors:
            raise ValidationError(errors)
        with self.db.write() as session:
            row = self._me(session)
            if "email" in values:
                row.notify_email = values["email"]
            if "webhook" in values:
                row.notify_webhook = values["webhook"]
        return self.notification_settings()
