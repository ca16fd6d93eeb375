"""Lab: every operation a user can do, authorized and validated; the one API all front ends use."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from pico_nb import logs, logstream, notices, outputs, passwords
from pico_nb.db import Database, open_database
from pico_nb.errors import Conflict, NotFound, PermissionDenied, ValidationError
from pico_nb.execution import Executor, executor_for, local
from pico_nb.execution.celery import worker_state
from pico_nb.frames import detect_frames
from pico_nb.input_fit import check_fits_input
from pico_nb.models import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    Experiment,
    LogBytes,
    Run,
    User,
    Worker,
    utcnow,
)
from pico_nb.params import PipelineSpec, load_spec
from pico_nb.schemas import (
    ExperimentRecord,
    FrameInfo,
    LogChunk,
    LogLine,
    NotificationSettings,
    Results,
    RunRecord,
    UserRecord,
    WorkerRecord,
)
from pico_nb.settings import Settings, load_settings
from pico_nb.validation import (
    check_description,
    check_input_folder,
    check_name,
    check_output_folder,
)

Scope = Literal["visible", "mine", "shared", "all"]
EDITABLE = ("name", "description", "input_path", "output_path", "params")
SORTS = {
    "created": Experiment.created_at,
    "updated": Experiment.updated_at,
    "name": func.lower(Experiment.name),
    "id": Experiment.id,
}


def current_username() -> str:
    """Local identity: the hub's user if we are in a hub server, else the OS user."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


class Lab:
    """The lab as one user sees it: their experiments, runs and logs."""

    def __init__(
        self,
        home: str | Path | None = None,
        user: str | None = None,
        *,
        settings: Settings | None = None,
        operator: bool = False,
    ) -> None:
        self.settings = settings or load_settings(home)
        self.spec: PipelineSpec = load_spec(self.settings.pipeline_spec)
        self.db: Database = open_database(self.settings.effective_database_url)
        self.executor: Executor = executor_for(self.db, self.settings)
        self.username = (user or current_username()).strip()
        self._operator = operator
        try:
            check_name(self.username)
        except ValueError as exc:
            raise ValidationError.one("user", str(exc)) from None
        try:
            with self.db.write() as session:
                self._user_id = self._user_row(session).id
        except IntegrityError:  # another process added this user first (PostgreSQL)
            with self.db.write() as session:
                self._user_id = self._user_row(session).id
        self.reconcile()

    @classmethod
    def operator(cls, home: str | Path | None = None, **kwargs: Any) -> Lab:
        """A Lab for whoever holds the database itself (CLI on the server): may manage accounts."""
        return cls(home, operator=True, **kwargs)

    # ------------------------------------------------------------------ identity

    @property
    def user(self) -> UserRecord:
        """Who this Lab acts for."""
        with self.db.read() as session:
            return _user_record(session.get(User, self._user_id))

    @property
    def is_admin(self) -> bool:
        """Admins see and act on every experiment; read fresh so a demotion takes effect."""
        with self.db.read() as session:
            return bool(session.get(User, self._user_id).is_admin)

    def _user_row(self, session: Session) -> User:
        """The acting user's row, created on first sight (the hub or the OS vouched for them)."""
        row = session.scalar(select(User).where(User.username == self.username))
        if row is None:
            row = User(username=self.username, is_admin=False)
            session.add(row)
            session.flush()
        return row

    @property
    def data_roots(self) -> list[Path]:
        """The folders this user's experiments may use."""
        return self.settings.data_roots_for(self.username)

    # --------------------------------------------------------------- access rules

    def _load(self, session: Session, experiment_id: int, *, write: bool) -> Experiment:
        """Fetch an experiment and apply the ownership rule in one place."""
        exp = session.get(Experiment, _as_id(experiment_id, "experiment_id"))
        if exp is None or exp.deleted_at is not None:
            raise NotFound(f"experiment {experiment_id} does not exist")
        if exp.owner_id == self._user_id or session.get(User, self._user_id).is_admin:
            return exp
        if exp.shared and not write:
            return exp
        if exp.shared:
            raise PermissionDenied(
                f"experiment {experiment_id} is shared read-only by {exp.owner.username}; "
                "clone it to change or run it"
            )
        raise PermissionDenied(f"experiment {experiment_id} belongs to another user")

    def _load_run(self, session: Session, run_id: int, *, write: bool) -> Run:
        """Fetch a run through its experiment's access rule."""
        run = session.get(Run, _as_id(run_id, "run_id"))
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        self._load(session, run.experiment_id, write=write)
        return run

    def _require_admin(self, action: str) -> None:
        """Account management belongs to admins and to the operator holding the database."""
        if not (self._operator or self.is_admin):
            raise PermissionDenied(f"only an admin may {action}")

    # ------------------------------------------------------------------ checking

    def detect_frames(self, path: str) -> FrameInfo:
        """What a candidate input folder holds, for forms to show before saving."""
        try:
            folder = check_input_folder(path, self.data_roots)
        except ValueError as exc:
            raise ValidationError.one("input_path", str(exc)) from None
        return detect_frames(folder)

    def _checked(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a whole experiment at once, so the user sees every bad field together."""
        errors: dict[str, str] = {}
        out: dict[str, Any] = {}
        checks = {"name": check_name, "description": check_description}
        for field, check in checks.items():
            try:
                out[field] = check(values[field])
            except ValueError as exc:
                errors[field] = str(exc)
        roots = self.data_roots
        input_path: Path | None = None
        frames: FrameInfo | None = None
        try:
            input_path = check_input_folder(values["input_path"], roots)
            frames = detect_frames(input_path)
            out["input_path"] = str(input_path)
        except ValueError as exc:
            errors["input_path"] = str(exc)
        except ValidationError as exc:
            errors.update(exc.errors)
        try:
            output = check_output_folder(values["output_path"], roots, input_path)
            out["output_path"] = str(output)
        except ValueError as exc:
            errors["output_path"] = str(exc)
        if not isinstance(values["params"], Mapping):
            errors["params"] = "must be a mapping of parameter name to value"
        else:
            try:
                out["params"] = self.spec.validate(values["params"])
            except ValidationError as exc:
                errors.update({f"params.{k}": v for k, v in exc.errors.items()})
        if frames is not None and "params" in out:
            misfits = check_fits_input(self.spec, out["params"], frames)
            errors.update({f"params.{k}": v for k, v in misfits.items()})
        if errors:
            raise ValidationError(errors)
        return out

    def _output_in_use(self, session: Session, output: str, experiment_id: int | None) -> None:
        """Two active runs must never write into the same output folder."""
        query = select(Run).where(Run.output_path == output, Run.status.in_(ACTIVE_STATUSES))
        if experiment_id is not None:
            query = query.where(Run.experiment_id != experiment_id)
        clash = session.scalar(query.limit(1))
        if clash is not None:
            raise ValidationError.one(
                "output_path",
                f"is being written by an active run (experiment {clash.experiment_id}, "
                f"run {clash.number}); choose another folder",
            )

    # --------------------------------------------------------------- experiments

    def create_experiment(
        self,
        name: str,
        input_path: str,
        output_path: str,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ExperimentRecord:
        """Store a new experiment once every field is valid; nothing is stored otherwise."""
        values = self._checked(
            {
                "name": name,
                "description": description,
                "input_path": input_path,
                "output_path": output_path,
                "params": params or {},
            }
        )
        with self.db.write() as session:
            self._output_in_use(session, values["output_path"], None)
            exp = Experiment(owner_id=self._user_id, pipeline=self.spec.name, **values)
            session.add(exp)
            session.flush()
            return self._experiment_record(session, exp)

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        """One experiment with its latest run."""
        with self.db.read() as session:
            return self._experiment_record(session, self._load(session, experiment_id, write=False))

    def _listing(
        self,
        session: Session,
        status: str | None,
        search: str | None,
        owner: str | None,
        scope: Scope,
    ) -> Any:
        """The filtered listing query shared by experiments() and count_experiments()."""
        latest = (
            select(
                Run.experiment_id.label("eid"),
                func.max(Run.number).label("n"),
                func.count(Run.id).label("c"),
            )
            .group_by(Run.experiment_id)
            .subquery()
        )
        query = (
            select(Experiment, Run, latest.c.c)
            .outerjoin(latest, latest.c.eid == Experiment.id)
            .outerjoin(Run, and_(Run.experiment_id == Experiment.id, Run.number == latest.c.n))
            .where(Experiment.deleted_at.is_(None))
        )
        admin = session.get(User, self._user_id).is_admin
        mine = Experiment.owner_id == self._user_id
        others_shared = and_(Experiment.shared.is_(True), Experiment.owner_id != self._user_id)
        if scope == "mine":
            query = query.where(mine)
        elif scope == "shared":
            query = query.where(others_shared)
        elif scope == "all" and not admin:
            raise PermissionDenied("only an admin may list every experiment")
        elif scope == "visible" and not admin:
            query = query.where(or_(mine, Experiment.shared.is_(True)))
        if owner:
            query = query.where(Experiment.owner.has(User.username == owner))
        if status:
            if status not in ("created", *RUN_STATUSES):
                raise ValidationError.one("status", f"unknown status {status!r}")
            query = query.where(func.coalesce(Run.status, "created") == status)
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
            pattern += "%"
            query = query.where(
                or_(
                    Experiment.name.ilike(pattern, escape="\\"),
                    Experiment.description.ilike(pattern, escape="\\"),
                )
            )
        return query

    def experiments(
        self,
        status: str | None = None,
        search: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        scope: Scope = "visible",
        sort: str = "created",
        descending: bool = True,
    ) -> list[ExperimentRecord]:
        """A page of the experiments this user may see, newest first by default."""
        if sort not in SORTS:
            raise ValidationError.one("sort", f"must be one of {', '.join(SORTS)}")
        limit, offset = _as_id(limit, "limit", minimum=0), _as_id(offset, "offset", minimum=0)
        self.reconcile()
        with self.db.read() as session:
            key = SORTS[sort]
            query = self._listing(session, status, search, owner, scope)
            query = query.order_by(key.desc() if descending else key.asc(), Experiment.id.desc())
            rows = session.execute(query.limit(min(limit, 1000)).offset(offset)).all()
            return [
                _experiment_from(exp, _run_record(run) if run else None, count or 0)
                for exp, run, count in rows
            ]

    def count_experiments(
        self,
        status: str | None = None,
        search: str | None = None,
        owner: str | None = None,
        *,
        scope: Scope = "visible",
    ) -> int:
        """How many experiments match, for pagination."""
        with self.db.read() as session:
            query = self._listing(session, status, search, owner, scope).subquery()
            return int(session.scalar(select(func.count()).select_from(query)) or 0)

    def update_experiment(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change fields (params are merged onto the current ones); refused during a run."""
        unknown = [k for k in changes if k not in EDITABLE]
        if unknown:
            raise ValidationError({k: "cannot be edited" for k in unknown})
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            active = self._active_run(session, exp.id)
            if active is not None:
                raise Conflict(
                    f"experiment {exp.id} has an active run ({active.number}, {active.status}); "
                    "stop it or wait before editing"
                )
            values = self._checked(self._merged(exp, changes))
            self._output_in_use(session, values["output_path"], exp.id)
            for field, value in values.items():
                setattr(exp, field, value)
            exp.updated_at = utcnow()
            session.flush()
            return self._experiment_record(session, exp)

    def clone_experiment(
        self, experiment_id: int, name: str | None = None, **changes: Any
    ) -> ExperimentRecord:
        """A new experiment from an existing one (own or shared), remembering its parent."""
        unknown = [k for k in changes if k not in EDITABLE]
        if unknown:
            raise ValidationError({k: "cannot be set on a clone" for k in unknown})
        with self.db.read() as session:
            parent = self._load(session, experiment_id, write=False)
            merged = self._merged(parent, changes)
        merged["name"] = name if name is not None else f"{parent.name} (copy)"[:200]
        values = self._checked(merged)
        with self.db.write() as session:
            self._output_in_use(session, values["output_path"], None)
            exp = Experiment(
                owner_id=self._user_id, pipeline=self.spec.name, parent_id=parent.id, **values
            )
            session.add(exp)
            session.flush()
            return self._experiment_record(session, exp)

    def _merged(self, exp: Experiment, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Current values with the requested changes on top; params merge key by key."""
        values = {f: getattr(exp, f) for f in EDITABLE}
        for field, value in changes.items():
            if field == "params":
                if not isinstance(value, Mapping):
                    raise ValidationError.one("params", "must be a mapping of name to value")
                values["params"] = {**exp.params, **value}
            else:
                values[field] = value
        return values

    def delete_experiment(self, experiment_id: int, remove_outputs: bool = False) -> None:
        """Hide the experiment, remove its logs, and its outputs only when asked."""
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            if self._active_run(session, exp.id) is not None:
                raise Conflict(f"experiment {exp.id} has an active run; stop it first")
            output = Path(exp.output_path)
            if remove_outputs:
                self._check_removable(session, exp, output)
            exp.deleted_at = utcnow()
            run_ids = select(Run.id).where(Run.experiment_id == exp.id)
            session.execute(delete(LogBytes).where(LogBytes.run_id.in_(run_ids)))
            log_paths = [
                Path(p)
                for p in session.scalars(select(Run.log_path).where(Run.experiment_id == exp.id))
            ]
        for path in log_paths:
            path.unlink(missing_ok=True)
        if remove_outputs and output.is_dir():
            shutil.rmtree(output)

    def _check_removable(self, session: Session, exp: Experiment, output: Path) -> None:
        """Never remove a folder another experiment writes to, a root, or one holding input."""
        if output in self.data_roots or Path(exp.input_path).is_relative_to(output):
            raise ValidationError.one("remove_outputs", f"refusing to remove {output}")
        other = session.scalar(
            select(Experiment.id).where(
                Experiment.output_path == exp.output_path,
                Experiment.id != exp.id,
                Experiment.deleted_at.is_(None),
            )
        )
        if other is not None:
            raise Conflict(
                f"output folder {output} is also used by experiment {other}; not removing it"
            )

    def share_experiment(self, experiment_id: int, shared: bool = True) -> ExperimentRecord:
        """Let the whole lab read (and clone) an experiment, or take that back."""
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            exp.shared = bool(shared)
            exp.updated_at = utcnow()
            return self._experiment_record(session, exp)

    # ---------------------------------------------------------------------- runs

    def _active_run(self, session: Session, experiment_id: int) -> Run | None:
        """The queued or running run of an experiment, if any."""
        return session.scalar(
            select(Run).where(Run.experiment_id == experiment_id, Run.status.in_(ACTIVE_STATUSES))
        )

    def run_experiment(self, experiment_id: int) -> RunRecord:
        """Record run n+1 with exactly what will execute, then queue or start it."""
        with self.db.read() as session:
            exp = self._load(session, experiment_id, write=True)
            current = self._merged(exp, {})
        values = self._checked(current)
        argv = self.spec.to_argv(values["params"], values["input_path"], values["output_path"])
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            local.lock_queue(session)
            active = self._active_run(session, exp.id)
            if active is not None:
                raise Conflict(
                    f"experiment {exp.id} already has run {active.number} {active.status}"
                )
            self._output_in_use(session, values["output_path"], exp.id)
            number = (
                session.scalar(select(func.max(Run.number)).where(Run.experiment_id == exp.id)) or 0
            ) + 1
            now = utcnow()
            run = Run(
                experiment_id=exp.id,
                number=number,
                user_id=self._user_id,
                status="queued",
                argv=argv,
                params=values["params"],
                input_path=values["input_path"],
                output_path=values["output_path"],
                log_path=str(logs.log_path(self.settings.home, self.username, exp.id, number, now)),
                queued_at=now,
                needs_gpu=self.spec.needs_gpu(values["params"]),
                provenance=local.provenance(self.spec, argv, self.username),
            )
            session.add(run)
            session.flush()
            run_id = run.id
        self.executor.submit(run_id)
        return self.get_run(run_id)

    def stop_run(self, run_id: int) -> RunRecord:
        """Stop a run: a queued one leaves the queue, a running one gets SIGTERM then SIGKILL."""
        with self.db.write() as session:
            run = self._load_run(session, run_id, write=True)
            if run.status not in ACTIVE_STATUSES:
                raise Conflict(
                    f"experiment {run.experiment_id} run {run.number} has already finished "
                    f"({run.status})"
                )
            if run.status == "queued":
                local.finish(run, "cancelled", f"stopped by {self.username} while queued")
            else:
                run.stop_requested_by = self.username
        self.executor.stop(run_id)
        return self.get_run(run_id)

    def runs(self, experiment_id: int) -> list[RunRecord]:
        """Every run of an experiment, oldest first: its history."""
        with self.db.read() as session:
            exp = self._load(session, experiment_id, write=False)
            rows = session.scalars(
                select(Run).where(Run.experiment_id == exp.id).order_by(Run.number)
            )
            return [_run_record(r) for r in rows]

    def get_run(self, run_id: int) -> RunRecord:
        """One run's current record."""
        with self.db.read() as session:
            return _run_record(self._load_run(session, run_id, write=False))

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> RunRecord:
        """Block until a run has finished (or the timeout passes) and return its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if not run.active or (deadline is not None and time.monotonic() > deadline):
                return run
            self.reconcile()
            time.sleep(poll)

    def queue(self) -> dict[str, Any]:
        """Slots in use and runs waiting, for the resources view."""
        return self.executor.queue_state()

    def workers(self) -> list[WorkerRecord]:
        """Celery workers with their slots, GPUs, runs and last report; others' runs unnamed."""
        with self.db.read() as session:
            rows = list(session.scalars(select(Worker).order_by(Worker.name)))
            active = session.execute(
                select(Run.worker, Run.id, Run.user_id).where(Run.status == "running")
            ).all()
        out = []
        for w in rows:
            mine = [(rid, uid) for name, rid, uid in active if name == w.name]
            out.append(
                WorkerRecord(
                    name=w.name,
                    host=w.host,
                    slots=w.slots,
                    gpus=list(w.gpus),
                    state=worker_state(w, self.settings),
                    started_at=w.started_at,
                    heartbeat_at=w.heartbeat_at,
                    busy=len(mine),
                    runs=[rid for rid, uid in mine if uid == self._user_id or self.is_admin],
                )
            )
        return out

    def serve_as_worker(self, name: str | None, slots: int | None, gpus: str | None) -> None:
        """Run this process as a Celery worker until it is shut down (operators only)."""
        self._require_admin("start a worker")
        from pico_nb.execution import celery

        gpu_ids = [g.strip() for g in (gpus or "").split(",") if g.strip()]
        if any(not g.isdigit() for g in gpu_ids):
            raise ValidationError.one("--gpus", "must be GPU numbers separated by commas, e.g. 0,1")
        if slots is not None and slots < 1:
            raise ValidationError.one("--slots", "must be at least 1")
        if not self.settings.broker_url:
            raise ValidationError.one("broker_url", "is required: set PICO_NB_BROKER_URL")
        name = celery.check_worker_name(name or local.HOST)
        celery.run_worker(self.settings, self.db, name, slots or max(len(gpu_ids), 1), gpu_ids)

    def reconcile(self) -> list[int]:
        """Mark runs whose supervisor vanished as lost, start queued runs, announce ended ones."""
        lost = self.executor.reconcile()
        notices.send_run_notices(self.db, self.settings)
        return lost

    # -------------------------------------------------------------- notifications

    def notification_settings(self) -> NotificationSettings:
        """How this member hears that a run ended (opt-in e-mail and/or webhook)."""
        with self.db.read() as session:
            row = session.get(User, self._user_id)
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
            row = session.get(User, self._user_id)
            if "email" in values:
                row.notify_email = values["email"]
            if "webhook" in values:
                row.notify_webhook = values["webhook"]
        return self.notification_settings()

    def _log_source(self, run: RunRecord, poll: float = 0.05) -> logs.LogSource:
        """A worker's run is read from the central store; a local one from its file."""
        remote = run.worker is not None or (
            run.status == "queued" and self.settings.executor == "celery"
        )
        if not remote:
            return logs.FileLog(Path(run.log_path), poll)
        client = logstream.connect(self.settings.effective_log_stream_url)
        return logstream.RemoteLog(self.db, client, run.id)

    # ------------------------------------------------------------------- results

    def results(self, run_id: int) -> Results:
        """The run's summary.json, preview images and output files, for the results view."""
        run = self.get_run(run_id)
        return outputs.collect(run.id, Path(run.output_path))

    def result_file(self, run_id: int, path: str) -> bytes:
        """One output file's bytes; only files inside the run's output folder, size-capped."""
        run = self.get_run(run_id)
        return outputs.read_file(Path(run.output_path), path)

    # ---------------------------------------------------------------------- logs

    def read_log(self, run_id: int, offset: int = 0, limit: int = 1 << 20) -> LogChunk:
        """Log text from a byte offset and where to continue: any viewer, any time."""
        run = self.get_run(run_id)
        offset = _as_id(offset, "offset", minimum=0)
        limit = _as_id(limit, "limit", minimum=4)
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
        offset = _as_id(offset, "offset", minimum=0)
        if from_tail is not None:
            from_tail = _as_id(from_tail, "from_tail", minimum=0)
        state = {"checked": 0.0, "done": not run.active}

        def done() -> bool:
            if stop is not None and stop():
                return True
            now = time.monotonic()
            if not state["done"] and now - state["checked"] > 0.25:
                state["checked"] = now
                state["done"] = not self.get_run(run_id).active
            return bool(state["done"])

        with contextlib.closing(self._log_source(run, poll)) as source:
            for event in logs.follow(source, offset, done=done, from_tail=from_tail):
                progress = event.progress
                yield LogLine(
                    line=event.line,
                    stage=progress.stage if progress else None,
                    progress=progress.fraction if progress else None,
                    eta_seconds=progress.eta_seconds if progress else None,
                    progress_text=progress.text if progress else None,
                    offset=event.offset,
                )

    # ------------------------------------------------------------------ accounts

    def users(self) -> list[UserRecord]:
        """Every account, for admins."""
        self._require_admin("list accounts")
        with self.db.read() as session:
            return [_user_record(u) for u in session.scalars(select(User).order_by(User.username))]

    def add_user(self, username: str, password: str | None, is_admin: bool = False) -> UserRecord:
        """Create an account with a salted argon2 hash; weak passwords are refused."""
        self._require_admin("create accounts")
        try:
            username = check_name(username)
        except ValueError as exc:
            raise ValidationError.one("username", str(exc)) from None
        if password is not None:
            passwords.check_strength(username, password)
        with self.db.write() as session:
            if session.scalar(select(User).where(User.username == username)) is not None:
                raise Conflict(f"user {username} already exists")
            row = User(
                username=username,
                password_hash=passwords.hash_password(password) if password else None,
                is_admin=is_admin,
            )
            session.add(row)
            session.flush()
            return _user_record(row)

    def _account(self, session: Session, username: str) -> User:
        """An account by name, or NotFound."""
        row = session.scalar(select(User).where(User.username == username))
        if row is None:
            raise NotFound(f"user {username} does not exist")
        return row

    def set_password(self, username: str, password: str) -> None:
        """Change a password: users their own, admins anyone's."""
        if username != self.username:
            self._require_admin("change another user's password")
        passwords.check_strength(username, password)
        with self.db.write() as session:
            self._account(session, username).password_hash = passwords.hash_password(password)

    def set_admin(self, username: str, is_admin: bool) -> UserRecord:
        """Grant or revoke admin rights."""
        self._require_admin("change admin rights")
        with self.db.write() as session:
            row = self._account(session, username)
            row.is_admin = is_admin
            return _user_record(row)

    def delete_user(self, username: str) -> None:
        """Remove an account that owns nothing; experiments are never orphaned."""
        self._require_admin("delete accounts")
        with self.db.write() as session:
            row = self._account(session, username)
            owned = session.scalar(
                select(func.count(Experiment.id)).where(
                    Experiment.owner_id == row.id, Experiment.deleted_at.is_(None)
                )
            )
            if owned:
                raise Conflict(f"user {username} still owns {owned} experiment(s)")
            row.password_hash = None
            row.is_admin = False
            row.username = f"{row.username}#deleted-{row.id}"[:100]

    def verify_password(self, username: str, password: str) -> bool:
        """Check a login against the users table; constant work whether or not the user exists."""
        with self.db.read() as session:
            row = session.scalar(select(User).where(User.username == username))
            stored = row.password_hash if row else None
        return passwords.verify(stored, password)

    # --------------------------------------------------------------- conversions

    def _experiment_record(self, session: Session, exp: Experiment) -> ExperimentRecord:
        """Experiment plus its latest run, read in the same transaction."""
        last = session.scalar(
            select(Run).where(Run.experiment_id == exp.id).order_by(Run.number.desc()).limit(1)
        )
        count = session.scalar(select(func.count(Run.id)).where(Run.experiment_id == exp.id))
        return _experiment_from(exp, _run_record(last) if last else None, count or 0)


def _as_id(value: Any, field: str, minimum: int = 1) -> int:
    """Ids and counts from forms and URLs: whole numbers only."""
    if isinstance(value, bool):
        raise ValidationError.one(field, "must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError.one(field, "must be a whole number") from None
    if number != value and str(number) != str(value).strip():
        raise ValidationError.one(field, "must be a whole number")
    if number < minimum:
        raise ValidationError.one(field, f"must be at least {minimum}")
    return number


def _user_record(row: User) -> UserRecord:
    """Accounts without their hash."""
    return UserRecord(
        username=row.username,
        is_admin=row.is_admin,
        has_password=bool(row.password_hash),
        created_at=row.created_at,
    )


def _run_record(run: Run) -> RunRecord:
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
        queue_position=_queue_position(run),
    )


def _queue_position(run: Run) -> int | None:
    """Where a queued run stands in the first-in-first-out line (1 = next), read in its session."""
    session = object_session(run)
    if run.status != "queued" or session is None:
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


def _experiment_from(exp: Experiment, last: RunRecord | None, count: int) -> ExperimentRecord:
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
