"""Lab: every operation a user can do, authorized and validated; the one API all front ends use."""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, object_session

from pico_nb import cells as run_cells
from pico_nb import logins, logs, logstream, notices, outputs, passwords, safe_paths
from pico_nb.db import Database, open_database
from pico_nb.errors import Conflict, NotFound, PermissionDenied, ValidationError
from pico_nb.execution import Executor, executor_for, local
from pico_nb.execution.celery import worker_state
from pico_nb.frames import detect_frames
from pico_nb.input_fit import check_fits_input
from pico_nb.inputs import (
    MAX_LIST_PAGE,
    MAX_LOG_READ,
    Scope,
    Sort,
    Status,
    as_id,
    one_of,
    short_text,
    whole,
)
from pico_nb.models import (
    ACTIVE_STATUSES,
    RUN_FOLDER,
    Experiment,
    LogBytes,
    Run,
    User,
    Worker,
    utcnow,
)
from pico_nb.models import Curation as CurationRow
from pico_nb.params import PipelineSpec, load_spec
from pico_nb.run_folders import run_folder
from pico_nb.schemas import (
    CellMatch,
    CellRecord,
    CellTable,
    Curation,
    ExperimentRecord,
    FrameInfo,
    LogChunk,
    LoginOutcome,
    LogLine,
    NotificationSettings,
    Results,
    RunComparison,
    RunNumbers,
    RunRecord,
    Traces,
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

EDITABLE = ("name", "description", "input_path", "output_path", "params")
MAX_TRACES = 50
MAX_COMPARED = 8
IMAGE_PIXELS = 1024
ACCEPTED_COLOUR, REJECTED_COLOUR = (255, 214, 0), (230, 30, 30)
RUN_A_COLOUR, RUN_B_COLOUR = (255, 0, 200), (0, 230, 90)
SORTS: dict[Sort, Any] = {
    "created": Experiment.created_at,
    "updated": Experiment.updated_at,
    "name": func.lower(Experiment.name),
    "id": Experiment.id,
}

_OTHER = aliased(Run)
_LAST_RUN = (
    select(func.max(_OTHER.number))
    .where(_OTHER.experiment_id == Experiment.id)
    .correlate(Experiment)
    .scalar_subquery()
)  # an experiment's latest run number, read from the (experiment, number) index
_RUN_COUNT = (
    select(func.count(_OTHER.id))
    .where(_OTHER.experiment_id == Experiment.id)
    .correlate(Experiment)
    .scalar_subquery()
)


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
        key = as_id(experiment_id, "experiment_id")
        exp = session.get(Experiment, key) if key <= self.db.max_id else None
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
        key = as_id(run_id, "run_id")
        run = session.get(Run, key) if key <= self.db.max_id else None
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
            folder = check_input_folder(path, self.data_roots, self.settings.private_folders)
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
        roots, private = self.data_roots, self.settings.private_folders
        input_path: Path | None = None
        frames: FrameInfo | None = None
        try:
            input_path = check_input_folder(values["input_path"], roots, private)
            frames = detect_frames(input_path)
            out["input_path"] = str(input_path)
        except ValueError as exc:
            errors["input_path"] = str(exc)
        except ValidationError as exc:
            errors.update(exc.errors)
        try:
            output = check_output_folder(values["output_path"], roots, input_path, private)
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
        status: Status | None,
        search: str | None,
        owner: str | None,
        scope: Scope,
    ) -> Any:
        """The filtered listing query shared by experiments() and count_experiments(): one
        statement, whose latest run and run count come from the (experiment, number) index."""
        scope = one_of(scope, "scope", Scope)
        if status is not None and status != "":
            status = one_of(status, "status", Status)
        search, owner = short_text(search, "search"), short_text(owner, "owner")
        query = (
            select(Experiment, Run, _RUN_COUNT)
            .outerjoin(Run, and_(Run.experiment_id == Experiment.id, Run.number == _LAST_RUN))
            .where(Experiment.deleted_at.is_(None))
        )
        admin = select(User.is_admin).where(User.id == self._user_id).scalar_subquery()
        mine = Experiment.owner_id == self._user_id
        others_shared = and_(Experiment.shared.is_(True), Experiment.owner_id != self._user_id)
        if scope == "mine":
            query = query.where(mine)
        elif scope == "shared":
            query = query.where(others_shared)
        elif scope == "all" and not session.get(User, self._user_id).is_admin:
            raise PermissionDenied("only an admin may list every experiment")
        elif scope == "visible":
            query = query.where(or_(mine, Experiment.shared.is_(True), admin.is_(True)))
        if owner:
            query = query.where(Experiment.owner.has(User.username == owner))
        if status:
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
        status: Status | None = None,
        search: str | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        scope: Scope = "visible",
        sort: Sort = "created",
        descending: bool = True,
    ) -> list[ExperimentRecord]:
        """A page of the experiments this user may see, newest first by default."""
        key = SORTS[one_of(sort, "sort", Sort)]
        limit, offset = whole(limit, "limit"), whole(offset, "offset")
        descending = _flag(descending, "descending")
        with self.db.read() as session:
            query = self._listing(session, status, search, owner, scope)
            query = query.order_by(key.desc() if descending else key.asc(), Experiment.id.desc())
            rows = session.execute(query.limit(min(limit, MAX_LIST_PAGE)).offset(offset)).all()
            return [
                _experiment_from(exp, _run_record(run) if run else None, count or 0)
                for exp, run, count in rows
            ]

    def count_experiments(
        self,
        status: Status | None = None,
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
        """Hide the experiment, remove its logs, and its runs' folders only when asked."""
        with self.db.write() as session:
            exp = self._load(session, experiment_id, write=True)
            if self._active_run(session, exp.id) is not None:
                raise Conflict(f"experiment {exp.id} has an active run; stop it first")
            output = Path(exp.output_path)
            roots = self.settings.data_roots_for(exp.owner.username)
            runs = list(session.scalars(select(Run).where(Run.experiment_id == exp.id)))
            # Runs from before per-run folders wrote into the output folder itself.
            in_place = any(r.layout != RUN_FOLDER for r in runs)
            folders = [
                Path(r.output_path)
                for r in runs
                if r.layout == RUN_FOLDER
                and _own_run_folder(Path(r.output_path), output, Path(exp.input_path))
            ]  # a run folder swapped for a link is left alone, never followed
            if _flag(remove_outputs, "remove_outputs"):
                if in_place:
                    self._check_removable(session, exp, output)
                else:  # the folder holding the run folders must not have become a link
                    safe_paths.check_unlinked(output, roots)
                for target in [output] if in_place else folders:  # refused before any change
                    safe_paths.check_removable(target, roots)
            exp.deleted_at = utcnow()
            session.execute(
                delete(LogBytes).where(LogBytes.run_id.in_([r.id for r in runs] or [-1]))
            )
            log_paths = [Path(r.log_path) for r in runs]
        for path in log_paths:
            path.unlink(missing_ok=True)
        if not remove_outputs:
            return
        if in_place:
            safe_paths.remove_folder(output, roots)
            return
        for folder in folders:
            safe_paths.remove_folder(folder, roots)
        with contextlib.suppress(OSError):
            output.rmdir()  # only when no other experiment's runs or files are left in it

    def _check_removable(self, session: Session, exp: Experiment, output: Path) -> None:
        """Never remove a folder another experiment writes to, a root, or one holding input."""
        if output in self.data_roots or Path(exp.input_path).is_relative_to(output):
            raise ValidationError.one("remove_outputs", f"refusing to remove {output}")
        if self.settings.member_accounts and output.exists():  # results belong to the member
            raise ValidationError.one(
                "remove_outputs",
                f"the lab server cannot remove {output}: it belongs to your account; delete it "
                "from your notebook or terminal, then delete the experiment",
            )
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
            exp.shared = _flag(shared, "shared")
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
        folder = logs.log_folder(self.settings.home, self.username)
        if self.settings.executor == "local" and not logs.has_room(folder):
            raise Conflict(f"no space left on device for the run's log ({folder})")
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
            local.lock_queue(session)  # a claim committed meanwhile is seen, not overwritten
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

    def log_source(self, run_id: int, poll: float = 0.05) -> logs.LogSource:
        """Where a readable run's log is: a worker's run in the central store, a local one in
        its file; the caller closes it. The hub service follows runs through it."""
        return self._log_source(self.get_run(run_id), poll)

    def _log_source(self, run: RunRecord, poll: float = 0.05) -> logs.LogSource:
        """A worker's run is read from the central store; a local one from its file."""
        remote = run.worker is not None or (
            run.status == "queued" and self.settings.executor == "celery"
        )
        if not remote:
            return logs.FileLog(Path(run.log_path), poll)
        client = logstream.connect(self.settings.effective_log_stream_url)
        return logstream.RemoteLog(self.db, client, run.id)

    def active_runs(self, run_ids: Collection[int]) -> set[int]:
        """Which of these runs are still queued or running, in one query: the hub service
        learns that followed runs ended this way (operators and admins only)."""
        self._require_admin("watch every run")
        if not run_ids:
            return set()
        with self.db.read() as session:
            query = select(Run.id).where(Run.id.in_(run_ids), Run.status.in_(ACTIVE_STATUSES))
            return set(session.scalars(query))

    # ------------------------------------------------------------------- results

    def results(self, run_id: int) -> Results:
        """The run's summary.json, preview images and output files, for the results view."""
        run = self.get_run(run_id)
        replaced_by = self._replaced_by(run)
        if replaced_by is not None:
            note = (
                f"run {run.number} wrote into {run.output_path}, the folder every run used before "
                f"runs had folders of their own; run {replaced_by} later replaced its results there"
            )
            return Results(run_id=run.id, output_path=run.output_path, note=note)
        return outputs.collect(run.id, Path(run.output_path), self._roots_of(run))

    def _replaced_by(self, run: RunRecord) -> int | None:
        """For an old-layout run: the number of the later run that wrote into the same folder."""
        if run.layout == RUN_FOLDER:
            return None
        with self.db.read() as session:
            return session.scalar(
                select(func.max(Run.number)).where(
                    Run.experiment_id == run.experiment_id,
                    Run.output_path == run.output_path,
                    Run.number > run.number,
                    Run.started_at.is_not(None),
                )
            )

    def result_file(self, run_id: int, path: str) -> bytes:
        """One output file's bytes; only files inside the run's output folder, size-capped."""
        run = self.get_run(run_id)
        return outputs.read_file(Path(run.output_path), path, self._roots_of(run))

    def _roots_of(self, run: RunRecord) -> list[Path]:
        """The data roots of whoever ran it: its outputs are re-checked against these at use."""
        return self.settings.data_roots_for(run.user)

    # --------------------------------------------------------------------- cells

    def _finished_cells(self, run: RunRecord) -> run_cells.RunCells:
        """A run's cells from its own folder; NotFound while it runs or once it was replaced."""
        if run.active:
            raise NotFound(f"run {run.id} has not finished yet")
        if self._replaced_by(run) is not None:
            raise NotFound(self.results(run.id).note or f"run {run.id} has no results")
        return run_cells.open_run(Path(run.output_path))

    def _curation_state(self, run_id: int) -> tuple[RunRecord, bool, Curation]:
        """The run, whether this user may curate it, and its stored curation."""
        with self.db.read() as session:
            row = self._load_run(session, run_id, write=False)
            try:
                self._load(session, row.experiment_id, write=True)
                editable = True
            except PermissionDenied:
                editable = False
            stored = session.get(CurationRow, row.id)
            curation = Curation(
                run_id=row.id,
                rejected=sorted(stored.rejected) if stored else [],
                updated_by=stored.updated_by if stored else None,
                updated_at=stored.updated_at if stored else None,
            )
            return _run_record(row), editable, curation

    def cells(self, run_id: int) -> CellTable:
        """Every cell of a finished run with its numbers and whether it is accepted."""
        run, editable, curation = self._curation_state(run_id)
        data = self._finished_cells(run)
        found = run_cells.stats(data)
        rejected = set(curation.rejected)
        rows = [
            CellRecord(
                id=k + 1,
                area=int(found.area[k]),
                centre_y=round(float(found.centre[k, 0]), 2),
                centre_x=round(float(found.centre[k, 1]), 2),
                peak_dff=round(float(found.peak[k]), 4),
                snr=round(float(found.snr[k]), 3),
                active=round(float(found.active[k]), 4),
                accepted=k + 1 not in rejected,
            )
            for k in range(data.count)
        ]
        height, width = data.labels.shape
        return CellTable(
            run_id=run.id,
            frames=data.frames,
            frame_rate=data.rate,
            height=height,
            width=width,
            cells=rows,
            editable=editable,
            curated_by=curation.updated_by,
            curated_at=curation.updated_at,
        )

    def traces(self, run_id: int, cells: list[int]) -> Traces:
        """ΔF/F of up to 50 cells, read from the memory-mapped traces file."""
        if not isinstance(cells, list) or not cells:
            raise ValidationError.one("cells", "must be a list of cell numbers")
        if len(cells) > MAX_TRACES:
            raise ValidationError.one("cells", f"at most {MAX_TRACES} at once")
        data = self._finished_cells(self.get_run(run_id))
        ids = [data.check_cell(c) for c in cells]
        values = [data.trace(c).tolist() for c in ids]
        return Traces(run_id=int(run_id), frame_rate=data.rate, cells=ids, values=values)

    def cell_image(self, run_id: int, image: str = "mean") -> bytes:
        """PNG of the run's mean/correlation/max image with accepted cells outlined in yellow
        and rejected ones in red."""
        run, _, curation = self._curation_state(run_id)
        data = self._finished_cells(run)
        rejected = np.isin(data.labels, curation.rejected) if curation.rejected else None
        accepted = data.labels if rejected is None else np.where(rejected, 0, data.labels)
        layers = [(accepted, ACCEPTED_COLOUR)]
        if rejected is not None:
            layers.append((np.where(rejected, data.labels, 0), REJECTED_COLOUR))
        return run_cells.outline_png(data.image(image), layers, IMAGE_PIXELS)[0]

    def curation(self, run_id: int) -> Curation:
        """Which cells of a run are rejected, by whom and when."""
        return self._curation_state(run_id)[2]

    def set_curation(self, run_id: int, rejected: list[int]) -> Curation:
        """Store the run's rejected cells (the rest are accepted); owners and admins only."""
        if not isinstance(rejected, list):
            raise ValidationError.one("rejected", "must be a list of cell numbers")
        with self.db.read() as session:
            run = _run_record(self._load_run(session, run_id, write=True))
        data = self._finished_cells(run)
        try:
            ids = sorted({data.check_cell(c) for c in rejected})
        except ValidationError as exc:
            raise ValidationError.one("rejected", exc.errors["cells"]) from None
        with self.db.write() as session:
            self._load_run(session, run.id, write=True)
            row = session.get(CurationRow, run.id)
            if row is None:
                row = CurationRow(run_id=run.id, updated_by=self.username)
                session.add(row)
            row.rejected, row.updated_by, row.updated_at = ids, self.username, utcnow()
        return self.curation(run.id)

    def compare_runs(self, run_ids: list[int]) -> RunComparison:
        """Two or more runs side by side; the first two also matched cell by cell."""
        if not isinstance(run_ids, list):
            raise ValidationError.one("run_ids", "pick at least two runs")
        if len(run_ids) > MAX_COMPARED:
            raise ValidationError.one("run_ids", f"at most {MAX_COMPARED} runs at once")
        ids = list(dict.fromkeys(as_id(r, "run_ids") for r in run_ids))  # ids before set()
        if len(ids) < 2:
            raise ValidationError.one("run_ids", "pick at least two runs")
        numbers: list[RunNumbers] = []
        opened: list[run_cells.RunCells | None] = []
        for run_id in ids:
            run, _, curation = self._curation_state(run_id)
            name = self.get_experiment(run.experiment_id).name
            try:
                data: run_cells.RunCells | None = self._finished_cells(run)
            except NotFound:
                data = None
            opened.append(data)
            numbers.append(_run_numbers(run, name, data, curation))
        match = None
        if opened[0] is not None and opened[1] is not None:
            found = run_cells.match(opened[0], opened[1])
            match = CellMatch(
                run_a=ids[0],
                run_b=ids[1],
                matched=len(found.pairs),
                only_a=found.only_a,
                only_b=found.only_b,
                trace_correlation=found.correlation,
            )
        return RunComparison(
            runs=numbers, differing=_differing([n.params for n in numbers]), match=match
        )

    def overlay_image(self, run_a: int, run_b: int, image: str = "mean") -> bytes:
        """PNG of run A's outlines (magenta) and run B's (green) over A's image."""
        a = self._finished_cells(self.get_run(run_a))
        b = self._finished_cells(self.get_run(run_b))
        if a.labels.shape != b.labels.shape:
            raise ValidationError.one("run_b", "has a different frame size; cannot overlay")
        layers = [(a.labels, RUN_A_COLOUR), (b.labels, RUN_B_COLOUR)]
        return run_cells.outline_png(a.image(image), layers, IMAGE_PIXELS)[0]

    def export(self, run_id: int, format: str, destination: str | None = None) -> str:
        """Write a run's accepted cells and traces as NWB or CSV/NumPy; returns where.

        By default into `<output>/exports/`, beside the run folders, never inside them."""
        from pico_nb import export

        if format not in export.FORMATS:
            raise ValidationError.one("format", f"must be one of {', '.join(export.FORMATS)}")
        run, _, curation = self._curation_state(run_id)
        experiment = self.get_experiment(run.experiment_id)
        data = self._finished_cells(run)
        if destination is None:
            folder = Path(experiment.output_path) / "exports"
            stem = f"e{experiment.id}-run-{run.number:04d}"
            target = folder / (stem + export.FORMATS[format])
        else:
            target = self._export_target(destination, run)
        try:
            export.write(format, target, data, run, experiment, curation)
        except OSError as exc:
            where = "destination" if destination is not None else "output_path"
            raise ValidationError.one(where, f"cannot write {target}: {exc.strerror}") from None
        return str(target)

    def _export_target(self, destination: str, run: RunRecord) -> Path:
        """An export goes inside the user's data roots and never into a run's own folder."""
        if not isinstance(destination, str) or not destination.strip():
            raise ValidationError.one("destination", "must be a path")
        target = Path(destination).expanduser().resolve()
        if not any(target.is_relative_to(root) for root in self.data_roots):
            raise ValidationError.one("destination", "must be inside your data folders")
        if target.is_relative_to(Path(run.output_path).resolve()):
            raise ValidationError.one("destination", "must not be inside the run's own folder")
        return target

    # ---------------------------------------------------------------------- logs

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
                state["done"] = not self.get_run(run_id).active
            return bool(state["done"])

        with contextlib.closing(self._log_source(run, poll)) as source:
            for event in logs.follow(source, offset, done=done, from_tail=from_tail):
                yield log_line(event)

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
                is_admin=_flag(is_admin, "is_admin"),
            )
            session.add(row)
            session.flush()
            return _user_record(row)

    def _account(self, session: Session, username: str) -> User:
        """An account by name, or NotFound; a name that is no name is refused, not queried."""
        if not isinstance(username, str) or short_text(username, "username") is None:
            raise ValidationError.one("username", "must be a user name")
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
            row.is_admin = _flag(is_admin, "is_admin")
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

    def attempt_login(
        self, username: str, password: str, address: str, policy: logins.Policy | None = None
    ) -> LoginOutcome:
        """Check a login under the per-account and per-address throttle: while a key is locked
        the password is not even checked, so parallel guesses cannot share one wait."""
        user_key, address_key = logins.keys(username, address)
        held = logins.claim(self.db, user_key, address_key, policy or logins.Policy())
        if held.retry_after > 0:
            return LoginOutcome(ok=False, retry_after=held.retry_after, failures=held.failures)
        if not self.verify_password(username, password):
            return LoginOutcome(ok=False, failures=held.failures)
        logins.succeeded(self.db, user_key, address_key, held)
        return LoginOutcome(ok=True)

    # --------------------------------------------------------------- conversions

    def _experiment_record(self, session: Session, exp: Experiment) -> ExperimentRecord:
        """Experiment plus its latest run, read in the same transaction."""
        last = session.scalar(
            select(Run).where(Run.experiment_id == exp.id).order_by(Run.number.desc()).limit(1)
        )
        count = session.scalar(select(func.count(Run.id)).where(Run.experiment_id == exp.id))
        return _experiment_from(exp, _run_record(last) if last else None, count or 0)


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


def _flag(value: Any, field: str) -> bool:
    """Switches are true or false: the text "false" must not switch anything on."""
    if not isinstance(value, bool):
        raise ValidationError.one(field, "must be true or false")
    return value


def _run_numbers(
    run: RunRecord, name: str, data: run_cells.RunCells | None, curation: Curation
) -> RunNumbers:
    """A run's figures for compare: from summary.json, its cells and its record."""
    summary = data.summary if data else {}
    bad = summary.get("bad_frames")
    stages = summary.get("stage_seconds")
    memory = summary.get("peak_memory_mb", summary.get("peak_rss_mb"))
    return RunNumbers(
        run_id=run.id,
        experiment_id=run.experiment_id,
        number=run.number,
        name=name,
        status=run.status,
        reason=run.reason,
        cells=data.count if data else None,
        accepted=data.count - len(curation.rejected) if data else None,
        bad_frames=len(bad) if isinstance(bad, list) else None,
        motion_rms=data.motion_rms() if data else None,
        pipeline_seconds=summary.get("total_seconds") if data else run.duration_seconds,
        peak_memory_mb=memory if isinstance(memory, int | float) else None,
        stage_seconds=stages if isinstance(stages, dict) else {},
        params=run.params,
    )


def _differing(params: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Parameters whose values are not the same in every run (None where one lacks it)."""
    names = sorted({k for p in params for k in p})
    values = {n: [p.get(n) for p in params] for n in names}
    return {n: v for n, v in values.items() if any(x != v[0] for x in v)}


def _own_run_folder(folder: Path, output: Path, input_path: Path) -> bool:
    """A run folder is removed only if it still is a real folder right inside the output."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    return resolved.parent == output.resolve() and not input_path.is_relative_to(resolved)


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
        layout=run.layout,
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
