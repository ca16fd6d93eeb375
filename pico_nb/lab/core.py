"""What every part of the Lab shares: who acts, the access rules, and the checked experiment."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pico_nb import notices
from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.contract.spec import PipelineSpec
from pico_nb.db import Database, open_database
from pico_nb.execution import Executor, executor_for
from pico_nb.frames import detect_frames
from pico_nb.input_fit import check_fits_input
from pico_nb.inputs import as_id
from pico_nb.lab.records import experiment_from, run_record, user_record
from pico_nb.models import ACTIVE_STATUSES, Experiment, Run, User
from pico_nb.params import load_spec
from pico_nb.schemas import ExperimentRecord, FrameInfo, RunRecord, UserRecord
from pico_nb.settings import Settings, load_settings
from pico_nb.validation import (
    check_description,
    check_input_folder,
    check_name,
    check_output_folder,
)

EDITABLE = ("name", "description", "input_path", "output_path", "params")


def current_username() -> str:
    """Local identity: the hub's user if we are in a hub server, else the OS user."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


class LabCore:
    """The acting user, the database and the rules every service of the Lab applies."""

    settings: Settings
    spec: PipelineSpec
    db: Database
    executor: Executor
    username: str
    _operator: bool
    _user_id: int

    def __init__(
        self,
        home: str | Path | None = None,
        user: str | None = None,
        *,
        settings: Settings | None = None,
        operator: bool = False,
    ) -> None:
        self.settings = settings or load_settings(home)
        self.spec = load_spec(self.settings.pipeline_spec)
        self.db = open_database(self.settings.effective_database_url)
        self.executor = executor_for(self.db, self.settings)
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

    @classmethod
    def operator(cls, home: str | Path | None = None, **kwargs: Any) -> Self:
        """A Lab for whoever holds the database itself (CLI on the server): may manage accounts."""
        return cls(home, operator=True, **kwargs)

    def reconcile(self) -> list[int]:
        """Mark runs whose supervisor vanished as lost, start queued runs, announce ended ones.

        An explicit step, never a side effect of making a Lab or listing: the CLI's commands,
        `wait()`, a log follower whose run went quiet, the dashboard's list, the hub service's
        timer and every live supervisor call it.
        """
        lost = self.executor.reconcile()
        notices.send_run_notices(self.db, self.settings)
        return lost

    # ------------------------------------------------------------------ identity

    @property
    def user(self) -> UserRecord:
        """Who this Lab acts for."""
        with self.db.read() as session:
            return user_record(self._me(session))

    @property
    def is_admin(self) -> bool:
        """Admins see and act on every experiment; read fresh so a demotion takes effect."""
        with self.db.read() as session:
            return bool(self._me(session).is_admin)

    def _me(self, session: Session) -> User:
        """The acting user's row, by the id it was given when this Lab was made."""
        row = session.get(User, self._user_id)
        if row is None:  # rows outlive their accounts (delete_user renames): another database
            raise NotFound(f"user {self.username} does not exist")
        return row

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

    # -------------------------------------------------------------- access rules

    def _load(self, session: Session, experiment_id: int, *, write: bool) -> Experiment:
        """Fetch an experiment and apply the ownership rule in one place."""
        key = as_id(experiment_id, "experiment_id")
        exp = session.get(Experiment, key) if key <= self.db.max_id else None
        if exp is None or exp.deleted_at is not None:
            raise NotFound(f"experiment {experiment_id} does not exist")
        if exp.owner_id == self._user_id or self._me(session).is_admin:
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

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        """One experiment with its latest run."""
        with self.db.read() as session:
            return self._experiment_record(session, self._load(session, experiment_id, write=False))

    def get_run(self, run_id: int) -> RunRecord:
        """One run's current record."""
        with self.db.read() as session:
            return self._run_record(session, self._load_run(session, run_id, write=False))

    # ------------------------------------------------------------------ checking

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

    def _active_run(self, session: Session, experiment_id: int) -> Run | None:
        """The queued or running run of an experiment, if any."""
        return session.scalar(
            select(Run).where(Run.experiment_id == experiment_id, Run.status.in_(ACTIVE_STATUSES))
        )

    def _experiment_record(self, session: Session, exp: Experiment) -> ExperimentRecord:
        """Experiment plus its latest run, read in the same transaction."""
        last = session.scalar(
            select(Run).where(Run.experiment_id == exp.id).order_by(Run.number.desc()).limit(1)
        )
        count = session.scalar(select(func.count(Run.id)).where(Run.experiment_id == exp.id))
        return experiment_from(exp, self._run_record(session, last) if last else None, count or 0)

    def _run_record(self, session: Session, run: Run) -> RunRecord:
        """A run as the API shows it, with its place in the executor's line while queued."""
        return run_record(run, self.executor.queue_position(session, run))
