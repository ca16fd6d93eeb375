"""RemoteLab: the Lab interface inside a hub user server, served by the pico service over HTTP.

It holds no database credentials: only the service's URL and the server's hub API token. It
returns the same record types and raises the same exceptions as Lab, so widgets, notebooks
and the CLI cannot tell the difference. Plain urllib, so a kernel needs nothing extra.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pico_nb.errors import Conflict, NotFound, PermissionDenied, PicoError, ValidationError
from pico_nb.hub import API_TOKEN_ENV, SERVICE_URL_ENV
from pico_nb.inputs import Scope, Sort, Status, as_id
from pico_nb.params import PipelineSpec, spec_from_dict
from pico_nb.schemas import (
    CellTable,
    Curation,
    ExperimentRecord,
    FrameInfo,
    LogChunk,
    LogLine,
    NotificationSettings,
    Record,
    Results,
    RunComparison,
    RunRecord,
    Traces,
    UserRecord,
    WorkerRecord,
)
from pico_nb.settings import Settings

R = TypeVar("R", bound=Record)


class ServiceUnavailable(PicoError):
    """The pico service did not answer; runs go on, try again shortly."""

    status = 503


ERRORS: dict[str, type[PicoError]] = {
    cls.__name__: cls for cls in (PermissionDenied, NotFound, Conflict)
}
BY_STATUS: dict[int, type[PicoError]] = {
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    502: ServiceUnavailable,  # the proxy, while the service restarts
    503: ServiceUnavailable,
}
TIMEOUT = 60.0
STREAM_TIMEOUT = 45.0  # the service sends a keepalive every 15 s
RECONNECT_SECONDS = 120.0  # a follower rides out a service restart this long


def raise_for(status: int, body: bytes) -> None:
    """Turn the service's JSON error back into the exception Lab would have raised."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    message = str(data.get("message") or f"the pico service answered {status}")
    if data.get("error") == "ValidationError" or (status == 400 and "errors" in data):
        raise ValidationError(data.get("errors") or {"request": message})
    cls = ERRORS.get(str(data.get("error"))) or BY_STATUS.get(status, PicoError)
    error = cls(message)
    error.status = status
    raise error


class RemoteLab:
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
        self._url = (url or os.environ[SERVICE_URL_ENV]).rstrip("/") + "/api/"
        self._token = token or os.environ[API_TOKEN_ENV]
        self.username = self.user.username
        if user and user.strip() != self.username:
            raise PermissionDenied(f"this server acts for {self.username} only")

    @classmethod
    def operator(cls, home: str | Path | None = None, **kwargs: Any) -> RemoteLab:
        """Account management goes through the service, which checks the hub's admin flag."""
        return cls(home, **kwargs)

    def __repr__(self) -> str:
        return f"RemoteLab(user={self.username!r}, service={self._url!r})"

    # ------------------------------------------------------------------ transport

    def _open(
        self, method: str, path: str, query: Mapping[str, Any] | None, body: Any, timeout: float
    ) -> Any:
        """One HTTP request with the server's token; errors become Lab's exceptions."""
        pairs = {k: _text(v) for k, v in (query or {}).items() if v is not None}
        url = self._url + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"token {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise_for(exc.code, exc.read())
        except OSError as exc:
            raise ServiceUnavailable(f"the pico service is not reachable: {exc}") from None

    def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """JSON in, JSON out (bytes for files, None for 204)."""
        with self._open(method, path, query, body, TIMEOUT) as response:
            data = response.read()
            if response.status == 204:
                return None
            if response.headers.get_content_type() == "application/json":
                return json.loads(data)
            return data

    def _one(self, model: type[R], method: str, path: str, **kwargs: Any) -> R:
        return model.model_validate(self._call(method, path, **kwargs))

    def _many(self, model: type[R], method: str, path: str, **kwargs: Any) -> list[R]:
        return [model.model_validate(item) for item in self._call(method, path, **kwargs)]

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
        return self._one(ExperimentRecord, "GET", f"experiments/{_eid(experiment_id)}")

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
        path = f"experiments/{_eid(experiment_id)}"
        return self._one(ExperimentRecord, "PATCH", path, body=changes)

    def clone_experiment(
        self, experiment_id: int, name: str | None = None, **changes: Any
    ) -> ExperimentRecord:
        """A new experiment from an existing one (own or shared)."""
        body = {"name": name, **changes} if name is not None else changes
        path = f"experiments/{_eid(experiment_id)}/clone"
        return self._one(ExperimentRecord, "POST", path, body=body)

    def delete_experiment(self, experiment_id: int, remove_outputs: bool = False) -> None:
        """Hide the experiment and remove its logs (and outputs when asked)."""
        query = {"remove_outputs": remove_outputs}
        self._call("DELETE", f"experiments/{_eid(experiment_id)}", query=query)

    def share_experiment(self, experiment_id: int, shared: bool = True) -> ExperimentRecord:
        """Let the lab read (and clone) an experiment, or take that back."""
        path = f"experiments/{_eid(experiment_id)}/share"
        return self._one(ExperimentRecord, "POST", path, body={"shared": shared})

    # --------------------------------------------------------------------- runs

    def run_experiment(self, experiment_id: int) -> RunRecord:
        """Queue or start run n+1 in the service, where it outlives this server."""
        return self._one(RunRecord, "POST", f"experiments/{_eid(experiment_id)}/run")

    def stop_run(self, run_id: int) -> RunRecord:
        """Stop a queued or running run."""
        return self._one(RunRecord, "POST", f"runs/{_rid(run_id)}/stop")

    def runs(self, experiment_id: int) -> list[RunRecord]:
        """Every run of an experiment, oldest first."""
        return self._many(RunRecord, "GET", f"experiments/{_eid(experiment_id)}/runs")

    def get_run(self, run_id: int) -> RunRecord:
        """One run's current record."""
        return self._one(RunRecord, "GET", f"runs/{_rid(run_id)}")

    def wait(self, run_id: int, timeout: float | None = None, poll: float = 0.2) -> RunRecord:
        """Block until a run has finished (or the timeout passes); the service reconciles."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if not run.active or (deadline is not None and time.monotonic() > deadline):
                return run
            time.sleep(poll)

    def queue(self) -> dict[str, Any]:
        """Slots in use and runs waiting."""
        return dict(self._call("GET", "queue"))

    def workers(self) -> list[WorkerRecord]:
        """Celery workers with their slots, GPUs and last report."""
        return self._many(WorkerRecord, "GET", "workers")

    def reconcile(self) -> list[int]:
        """Ask the service to mark lost runs and start queued ones now."""
        return list(self._call("POST", "reconcile"))

    # ------------------------------------------------------------------ results

    def results(self, run_id: int) -> Results:
        """The run's summary, preview images and output files."""
        return self._one(Results, "GET", f"runs/{_rid(run_id)}/results")

    def result_file(self, run_id: int, path: str) -> bytes:
        """One output file's bytes."""
        return bytes(self._call("GET", f"runs/{_rid(run_id)}/file", query={"path": path}))

    # -------------------------------------------------------------------- cells

    def cells(self, run_id: int) -> CellTable:
        """Every cell of a finished run with its numbers and curation."""
        return self._one(CellTable, "GET", f"runs/{_seg(run_id)}/cells")

    def traces(self, run_id: int, cells: list[int]) -> Traces:
        """ΔF/F of some cells."""
        return self._one(Traces, "POST", f"runs/{_seg(run_id)}/traces", body={"cells": cells})

    def cell_image(self, run_id: int, image: str = "mean") -> bytes:
        """PNG of the run's image with its cells outlined."""
        query = {"image": image}
        return bytes(self._call("GET", f"runs/{_seg(run_id)}/image", query=query))

    def curation(self, run_id: int) -> Curation:
        """Which cells of a run are rejected."""
        return self._one(Curation, "GET", f"runs/{_seg(run_id)}/curation")

    def set_curation(self, run_id: int, rejected: list[int]) -> Curation:
        """Store the run's rejected cells."""
        body = {"rejected": rejected}
        return self._one(Curation, "PUT", f"runs/{_seg(run_id)}/curation", body=body)

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
        return str(self._call("POST", f"runs/{_seg(run_id)}/export", body=body))

    # --------------------------------------------------------------------- logs

    def read_log(self, run_id: int, offset: int = 0, limit: int = 1 << 20) -> LogChunk:
        """Log text from a byte offset and where to continue."""
        query = {"offset": offset, "limit": limit}
        return self._one(LogChunk, "GET", f"runs/{_rid(run_id)}/log", query=query)

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
        path = f"runs/{_rid(run_id)}/log/follow"
        query: dict[str, Any] = {"offset": offset, "from_tail": from_tail}
        down_since: float | None = None
        while stop is None or not stop():
            try:
                with self._open("GET", path, query, None, STREAM_TIMEOUT) as stream:
                    down_since = None
                    for kind, data in _events(stream):
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
        self._call("PUT", f"users/{_seg(username)}/password", body={"password": password})

    def set_admin(self, username: str, is_admin: bool) -> UserRecord:
        """Grant or revoke admin rights."""
        path = f"users/{_seg(username)}/admin"
        return self._one(UserRecord, "PUT", path, body={"is_admin": is_admin})

    def delete_user(self, username: str) -> None:
        """Remove an account that owns nothing."""
        self._call("DELETE", f"users/{_seg(username)}")


def _eid(value: Any) -> str:
    """An experiment id as a path segment, checked here as Lab checks it: a value that is no
    id (empty, '..', huge) must not turn into another URL, and fails with Lab's error."""
    return str(as_id(value, "experiment_id"))


def _rid(value: Any) -> str:
    """A run id as a path segment, checked as Lab checks it."""
    return str(as_id(value, "run_id"))


def _seg(value: Any) -> str:
    """One URL path segment: ids and names can never add a path or a query."""
    return urllib.parse.quote(str(value), safe="")


def _text(value: Any) -> str:
    """Query values as the service parses them."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _events(stream: Any) -> Iterator[tuple[str, str]]:
    """Parse server-sent events (event name, data) from a line-readable response."""
    kind = "message"
    data: list[str] = []
    for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, "\n".join(data)
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith(":"):  # a keepalive: lets the reader check whether to stop
            yield "keepalive", ""
