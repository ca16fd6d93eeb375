"""RemoteLab: the Lab interface inside a hub user server, served by the pico service over HTTP.

It holds no database credentials: only the service's URL and the server's hub API token. It
returns the same record types and raises the same exceptions as Lab, so widgets, notebooks
and the CLI cannot tell the difference. The HTTP side is :mod:`pico_nb.hub.transport`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from pico_nb.contract.errors import PermissionDenied
from pico_nb.contract.spec import PipelineSpec, spec_from_dict
from pico_nb.hub import API_TOKEN_ENV, SERVICE_URL_ENV
from pico_nb.hub.transport import (
    RECONNECT_SECONDS,
    STREAM_TIMEOUT,
    ServiceClient,
    ServiceUnavailable,
    eid,
    events,
    raise_for,
    rid,
    seg,
)
from pico_nb.inputs import Scope, Sort, Status
from pico_nb.schemas import (
    CellTable,
    Curation,
    ExperimentRecord,
    FrameInfo,
    LogChunk,
    LogLine,
    MachineRecord,
    NotificationSettings,
    QueueRecord,
    Results,
    RunComparison,
    RunRecord,
    Traces,
    UserRecord,
    WorkerRecord,
)
from pico_nb.settings import Settings


class RemoteLab(ServiceClient):
    """The lab as one hub user sees it, through the pico service."""

    def __init__(
        self,
        home: str | Path | None = None,
        user: str | None = None,
        *,
        settings: Settings | None = None,
        operator: bool = False,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(url or os.environ[SERVICE_URL_ENV], token or os.environ[API_TOKEN_ENV])
        self.username = self.user.username
        if user and user.strip() != self.username:
            raise PermissionDenied(f"this server acts for {self.username} only")

    @classmethod
    def operator(cls, home: str | Path | None = None, **kwargs: Any) -> RemoteLab:
        """Account management goes through the service, which checks the hub's admin flag."""
        return cls(home, **kwargs)

    def __repr__(self) -> str:
        return f"RemoteLab(user={self.username!r}, service={self._url!r})"

    # ------------------------------------------------------------------- identity

    @property
    def user(self) -> UserRecord:
        """Who this Lab acts for, as the service sees them."""
        return self._one(UserRecord, "GET", "whoami")

    @property
    def is_admin(self) -> bool:
        """Read fresh, so a change of rights takes effect."""
        return self.user.is_admin

    @property
    def data_roots(self) -> list[Path]:
        """This member's folders, as the service resolves them for them."""
        return [Path(p) for p in self._call("GET", "folders")]

    @cached_property
    def spec(self) -> PipelineSpec:
        """The service's pipeline spec, rebuilt here so forms validate as the service does."""
        return spec_from_dict(self._call("GET", "spec"))

    @cached_property
    def settings(self) -> Settings:
        """The service's public settings (data roots, slots, grace periods); no credentials."""
        return Settings.model_validate(self._call("GET", "settings"))

    # -------------------------------------------------------------- experiments

    def detect_frames(self, path: str) -> FrameInfo:
        """What a candidate input folder holds."""
        return self._one(FrameInfo, "GET", "frames", query={"path": path})

    def create_experiment(
        self,
        name: str,
        input_path: str,
        output_path: str,
        params: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ExperimentRecord:
        """Store a new experiment; the service validates every field."""
        body = {
            "name": name,
            "input_path": input_path,
            "output_path": output_path,
            "params": dict(params or {}),
            "description": description,
        }
        return self._one(ExperimentRecord, "POST", "experiments", body=body)

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        """One experiment with its latest run."""
        return self._one(ExperimentRecord, "GET", f"experiments/{eid(experiment_id)}")

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
        """A page of the experiments this user may see."""
        query = {
            "status": status,
            "search": search,
            "owner": owner,
            "limit": limit,
            "offset": offset,
            "scope": scope,
            "sort": sort,
            "descending": descending,
        }
        return self._many(ExperimentRecord, "GET", "experiments", query=query)

    def count_experiments(
        self,
        status: Status | None = None,
        search: str | None = None,
        owner: str | None = None,
        *,
        scope: Scope = "visible",
    ) -> int:
        """How many experiments match, for pagination."""
        query = {"status": status, "search": search, "owner": owner, "scope": scope}
        return int(self._call("GET", "experiments/count", query=query))

    def update_experiment(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change fields; refused during a run."""
        path = f"experiments/{eid(experiment_id)}"
        return self._one(ExperimentRecord, "PATCH", path, body=changes)

    def clone_experiment(
        self, experiment_id: int, name: str | None = None, **changes: Any
    ) -> ExperimentRecord:
        """A new experiment from an existing one (own or shared)."""
        body = {"name": name, **changes} if name is not None else changes
        path = f"experiments/{eid(experiment_id)}/clone"
        return self._one(ExperimentRecord, "POST", path, body=body)

    def delete_experiment(self, experiment_id: int, remove_outputs: bool = False) -> None:
        """Hide the experiment and remove its logs (and outputs when asked)."""
        query = {"remove_outputs": remove_outputs}
        self._call("DELETE", f"experiments/{eid(experiment_id)}", query=query)

    def share_experiment(self, experiment_id: int, shared: bool = True) -> ExperimentRecord:
        """Let the lab read (and clone) an experiment, or take that back."""
        path = f"experiments/{eid(experiment_id)}/share"
        return self._one(ExperimentRecord, "POST", path, body={"shared": shared})

    # --------------------------------------------------------------------- runs

    def run_experiment(self, experiment_id: int) -> RunRecord:
        """Queue or start run n+1 in the service, where it outlives this server."""
        return self._one(RunRecord, "POST", f"experiments/{eid(experiment_id)}/run")

    def stop_run(self, run_id: int) -> RunRecord:
        """Stop a queued or running run."""
        return self._one(RunRecord, "POST", f"runs/{rid(run_id)}/stop")

    def runs(self, experiment_id: int) -> list[RunRecord]:
        """Every run of an experiment, oldest first."""
        return self._many(RunRecord, "GET", f"experiments/{eid(experiment_id)}/runs")

    def get_run(self, run_id: int) -> RunRecord:
        """One run's current record."""
        return self._one(RunRecord, "GET", f"runs/{rid(run_id)}")

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> RunRecord:
        """Block until a run has finished (or the timeout passes); the service reconciles."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if not run.active or (deadline is not None and time.monotonic() > deadline):
                return run
            time.sleep(poll)

    def queue(self) -> QueueRecord:
        """Slots in use and runs waiting, and this member's Slurm jobs."""
        return self._one(QueueRecord, "GET", "queue")

    def machines(self) -> list[MachineRecord]:
        """Where runs run, as the service's executor reports them."""
        return self._many(MachineRecord, "GET", "machines")

    def workers(self) -> list[WorkerRecord]:
        """Celery workers with their slots, GPUs and last report."""
        return self._many(WorkerRecord, "GET", "workers")

    def reconcile(self) -> list[int]:
        """Ask the service to mark lost runs and start queued ones now."""
        return list(self._call("POST", "reconcile"))

    # ------------------------------------------------------------------ results

    def results(self, run_id: int) -> Results:
        """The run's summary, preview images and output files."""
        return self._one(Results, "GET", f"runs/{rid(run_id)}/results")

    def result_file(self, run_id: int, path: str) -> bytes:
        """One output file's bytes."""
        return bytes(self._call("GET", f"runs/{rid(run_id)}/file", query={"path": path}))

    # -------------------------------------------------------------------- cells

    def cells(self, run_id: int) -> CellTable:
        """Every cell of a finished run with its numbers and curation."""
        return self._one(CellTable, "GET", f"runs/{seg(run_id)}/cells")

    def traces(self, run_id: int, cells: list[int]) -> Traces:
        """ΔF/F of some cells."""
        return self._one(Traces, "POST", f"runs/{seg(run_id)}/traces", body={"cells": cells})

    def cell_image(self, run_id: int, image: str = "mean") -> bytes:
        """PNG of the run's image with its cells outlined."""
        query = {"image": image}
        return bytes(self._call("GET", f"runs/{seg(run_id)}/image", query=query))

    def curation(self, run_id: int) -> Curation:
        """Which cells of a run are rejected."""
        return self._one(Curation, "GET", f"runs/{seg(run_id)}/curation")

    def set_curation(self, run_id: int, rejected: list[int]) -> Curation:
        """Store the run's rejected cells."""
        body = {"rejected": rejected}
        return self._one(Curation, "PUT", f"runs/{seg(run_id)}/curation", body=body)

    def compare_runs(self, run_ids: list[int]) -> RunComparison:
        """Runs side by side."""
        return self._one(RunComparison, "POST", "compare", body={"run_ids": run_ids})

    def overlay_image(self, run_a: int, run_b: int, image: str = "mean") -> bytes:
        """PNG of two runs' outlines in two colours."""
        query = {"run_a": run_a, "run_b": run_b, "image": image}
        return bytes(self._call("GET", "overlay", query=query))

    def export(self, run_id: int, format: str, destination: str | None = None) -> str:
        """Have the service write an export; returns where."""
        body = {"format": format, "destination": destination}
        return str(self._call("POST", f"runs/{seg(run_id)}/export", body=body))

    # --------------------------------------------------------------------- logs

    def read_log(self, run_id: int, offset: int = 0, limit: int = 1 << 20) -> LogChunk:
        """Log text from a byte offset and where to continue."""
        query = {"offset": offset, "limit": limit}
        return self._one(LogChunk, "GET", f"runs/{rid(run_id)}/log", query=query)

    def follow_log(
        self,
        run_id: int,
        offset: int = 0,
        from_tail: int | None = None,
        poll: float = 0.05,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[LogLine]:
        """Yield lines and progress live from the service's event stream until the run ends
        (or `stop()`, checked at every event and keepalive); a dropped stream (a service
        restart) resumes from the last offset, and so does one the service asks to resume
        (this reader fell too far behind)."""
        path = f"runs/{rid(run_id)}/log/follow"
        query: dict[str, Any] = {"offset": offset, "from_tail": from_tail}
        down_since: float | None = None
        while stop is None or not stop():
            try:
                with self._open("GET", path, query, None, STREAM_TIMEOUT) as stream:
                    down_since = None
                    for kind, data in events(stream):
                        if kind == "end" or (stop is not None and stop()):
                            return
                        if kind == "keepalive":
                            continue
                        if kind == "error":
                            raise_for(500, data.encode())
                        if kind == "resume":
                            query = {"offset": json.loads(data)["offset"]}
                            break
                        event = LogLine.model_validate_json(data)
                        query = {"offset": event.offset}
                        yield event
                    else:
                        raise ServiceUnavailable("the log stream ended early")
                continue  # asked to resume: at once
            except (ServiceUnavailable, TimeoutError, ConnectionError):
                pass
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > RECONNECT_SECONDS:
                raise ServiceUnavailable("lost the pico service while following the log")
            time.sleep(max(poll, 0.5))

    # ----------------------------------------------------------------- accounts

    def notification_settings(self) -> NotificationSettings:
        """How this member hears that a run ended."""
        return self._one(NotificationSettings, "GET", "notifications")

    def set_notifications(
        self, email: str | None = None, webhook: str | None = None
    ) -> NotificationSettings:
        """Opt in or out: a value sets it, "" turns it off, None leaves it as it is."""
        body = {k: v for k, v in (("email", email), ("webhook", webhook)) if v is not None}
        return self._one(NotificationSettings, "PUT", "notifications", body=body)

    def users(self) -> list[UserRecord]:
        """Every account, for admins."""
        return self._many(UserRecord, "GET", "users")

    def add_user(self, username: str, password: str | None, is_admin: bool = False) -> UserRecord:
        """Create an account (admins only)."""
        body = {"username": username, "password": password, "is_admin": is_admin}
        return self._one(UserRecord, "POST", "users", body=body)

    def set_password(self, username: str, password: str) -> None:
        """Change a password: users their own, admins anyone's."""
        self._call("PUT", f"users/{seg(username)}/password", body={"password": password})

    def set_admin(self, username: str, is_admin: bool) -> UserRecord:
        """Grant or revoke admin rights."""
        path = f"users/{seg(username)}/admin"
        return self._one(UserRecord, "PUT", path, body={"is_admin": is_admin})

    def delete_user(self, username: str) -> None:
        """Remove an account that owns nothing."""
        self._call("DELETE", f"users/{seg(username)}")
