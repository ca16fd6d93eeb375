"""Experiments: creating, listing, editing, cloning, sharing and deleting them."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session, aliased

from pico_nb import safe_paths
from pico_nb.contract.errors import Conflict, PermissionDenied, ValidationError
from pico_nb.frames import detect_frames
from pico_nb.inputs import MAX_LIST_PAGE, Scope, Sort, Status, one_of, short_text, whole
from pico_nb.lab.core import EDITABLE, LabCore
from pico_nb.lab.records import experiment_from, flag
from pico_nb.models import RUN_FOLDER, Experiment, LogBytes, Run, User, utcnow
from pico_nb.schemas import ExperimentRecord, FrameInfo
from pico_nb.validation import check_input_folder

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
_ME: BindParameter[int] = bindparam("me")  # the acting user's id, bound at each execution
_MINE = Experiment.owner_id == _ME
_SCOPES: dict[Scope, Any] = {
    "mine": _MINE,
    "shared": and_(Experiment.shared.is_(True), Experiment.owner_id != _ME),
    "visible": or_(
        _MINE,
        Experiment.shared.is_(True),
        select(User.is_admin).where(User.id == _ME).scalar_subquery().is_(True),
    ),
    "all": None,  # admins only: refused before the statement is used
}
Shape = tuple[Scope, bool, bool, bool]
"""A listing's scope and which of the status, search and owner filters it applies."""


@functools.cache
def _listing_statement(shape: Shape) -> Select[Any]:
    """The listing's one statement, whose latest run and run count come from the (experiment,
    number) index. Built once per shape: the acting user and every filter value are bound at
    execution, so no user's data is ever part of it, and SQLAlchemy's cache key for it is
    computed once instead of on every request."""
    scope, status, search, owner = shape
    query = (
        select(Experiment, Run, _RUN_COUNT)
        .outerjoin(Run, and_(Run.experiment_id == Experiment.id, Run.number == _LAST_RUN))
        .where(Experiment.deleted_at.is_(None))
    )
    if _SCOPES[scope] is not None:
        query = query.where(_SCOPES[scope])
    if owner:
        query = query.where(Experiment.owner.has(User.username == bindparam("owner")))
    if status:
        query = query.where(func.coalesce(Run.status, "created") == bindparam("status"))
    if search:
        pattern: BindParameter[str] = bindparam("pattern")
        query = query.where(
            or_(
                Experiment.name.ilike(pattern, escape="\\"),
                Experiment.description.ilike(pattern, escape="\\"),
            )
        )
    return query


@functools.cache
def _page_statement(shape: Shape, sort: Sort, descending: bool) -> Select[Any]:
    """A page of the listing in one order, the page's bounds bound at execution."""
    key = SORTS[sort]
    return (
        _listing_statement(shape)
        .order_by(key.desc() if descending else key.asc(), Experiment.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


@functools.cache
def _count_statement(shape: Shape) -> Select[Any]:
    """How many rows the listing of this shape has."""
    return select(func.count()).select_from(_listing_statement(shape).subquery())


class ExperimentsMixin(LabCore):
    """The experiments this user owns or may see."""

    def detect_frames(self, path: str) -> FrameInfo:
        """What a candidate input folder holds, for forms to show before saving."""
        try:
            folder = check_input_folder(path, self.data_roots, self.settings.private_folders)
        except ValueError as exc:
            raise ValidationError.one("input_path", str(exc)) from None
        return detect_frames(folder)

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

    def _listing(
        self,
        session: Session,
        status: Status | None,
        search: str | None,
        owner: str | None,
        scope: Scope,
    ) -> tuple[Shape, dict[str, Any]]:
        """The checked filters of experiments() and count_experiments(): the statement's shape
        and the values bound to it, the acting user's id always among them."""
        scope = one_of(scope, "scope", Scope)
        if status is not None and status != "":
            status = one_of(status, "status", Status)
        search, owner = short_text(search, "search"), short_text(owner, "owner")
        if scope == "all" and not self._me(session).is_admin:
            raise PermissionDenied("only an admin may list every experiment")
        values: dict[str, Any] = {"me": self._user_id}
        if owner:
            values["owner"] = owner
        if status:
            values["status"] = status
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
            values["pattern"] = f"%{escaped}%"
        return (scope, bool(status), bool(search), bool(owner)), values

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
        sort = one_of(sort, "sort", Sort)
        limit, offset = whole(limit, "limit"), whole(offset, "offset")
        descending = flag(descending, "descending")
        with self.db.read() as session:
            shape, values = self._listing(session, status, search, owner, scope)
            page = {"limit": min(limit, MAX_LIST_PAGE), "offset": offset}
            query = _page_statement(shape, sort, descending)
            rows = session.execute(query, {**values, **page}).all()
            return [
                experiment_from(exp, self._run_record(session, run) if run else None, count or 0)
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
            shape, values = self._listing(session, status, search, owner, scope)
            return int(session.scalar(_count_statement(shape), values) or 0)

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
            if flag(remove_outputs, "remove_outputs"):
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
            exp.shared = flag(shared, "shared")
            exp.updated_at = utcnow()
            return self._experiment_record(session, exp)


def _own_run_folder(folder: Path, output: Path, input_path: Path) -> bool:
    """A run folder is removed only if it still is a real folder right inside the output."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    resolved = folder.resolve()
    return resolved.parent == output.resolve() and not input_path.is_relative_to(resolved)
