"""The service's request handlers: each identifies the hub user and hands the call to their
Lab in a thread, so ownership is enforced by Lab for every call. One generic handler maps URLs
onto Lab methods; only the live log stream and the whole-log download need handlers of their
own. The one exception to hub identity is a member's Slurm job reporting on its own run, which
proves itself with that run's token (`JobHandler`)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.iostream import StreamClosedError

from pico_nb.contract.errors import PicoError, ValidationError
from pico_nb.hub.fanout import Fanout, Follower
from pico_nb.hub.routes import Endpoint
from pico_nb.hub.wire import bind, count, error_answer, error_body, parse_body, to_json
from pico_nb.lab import Lab
from pico_nb.lab.jobs import RUN_TOKEN_HEADER
from pico_nb.settings import Settings

log = logging.getLogger("pico_nb.hub.service")

KEEPALIVE_SECONDS = 5.0
DOWNLOAD_CHUNK = 1 << 20


class Labs:
    """One Lab per hub user for this process; the engine is shared, so they are cheap."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.operator = Lab.operator(settings=settings)
        self._labs: dict[str, Lab] = {}
        self._lock = threading.Lock()

    def known(self, username: str) -> Lab | None:
        """The user's Lab if this process made it already: no database, so the event loop may
        ask without handing the request to a thread."""
        with self._lock:
            return self._labs.get(username)

    def get(self, username: str) -> Lab:
        """The user's Lab. Identity comes from the hub; rights (admin) from the users table,
        which PicoAuthenticator also hands to the hub."""
        lab = self.known(username)
        if lab is None:
            lab = Lab(user=username, settings=self.settings)
            with self._lock:
                lab = self._labs.setdefault(username, lab)
        return lab


class JsonHandler(web.RequestHandler):
    """Lab calls in a thread, and every error answered as JSON."""

    @property
    def labs(self) -> Labs:
        return self.settings["labs"]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Lab calls block on the database and disk: keep them off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.settings["pool"], fn, *args)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one error path: every exception becomes JSON with a status (400/403/404/409/
        413/503); a fault is answered 500 with only the request id the server log holds."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = error_answer(exc, status_code, self._reason, self._fault_id)
        if status >= 500 and self.settings["stopping"].is_set():
            status = 503  # calls cut short by a restart: try again
            body = {"error": "http", "message": "the pico service is restarting"}
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    _fault_id: str | None = None

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A refusal is the API working, not a server fault; a fault is logged in full with a
        request id, and only that id goes back to the client."""
        if isinstance(value, PicoError | web.HTTPError):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
            return
        if self.settings["stopping"].is_set():  # the pool is gone: a restart, not a fault
            log.info(
                "%s %s cut short by the stop: %r", self.request.method, self.request.path, value
            )
            return
        self._fault_id = uuid.uuid4().hex[:16]
        log.error(
            "request %s failed: %s %s",
            self._fault_id,
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )


class LabHandler(HubOAuthenticated, JsonHandler):
    """Identify the hub user and hand the calls to their Lab."""

    lab: Lab

    async def prepare(self) -> None:
        model = await self.hub_auth.get_user(self, sync=False)
        if model is None:
            if self.request.method == "GET" and "Authorization" not in self.request.headers:
                self.redirect(self.get_login_url())  # a browser: sign in through the hub
                return
            raise web.HTTPError(401, reason="not signed in")
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, reason="only hub users act on experiments")
        try:
            self.current_user = self.check_hub_user(model)
        except UserNotAllowed:
            raise web.HTTPError(403, reason="this token may not use the pico service") from None
        lab = self.labs.known(model["name"])
        self.lab = await self.run(self.labs.get, model["name"]) if lab is None else lab

    def check_xsrf_cookie(self) -> None:
        """Token requests need no XSRF check; cookie sessions get the hub's check."""
        return self.hub_auth.check_xsrf_cookie(self)


class ApiHandler(LabHandler):
    """The REST routes: one endpoint per method, called with the path, query or body values."""

    def initialize(self, endpoints: Mapping[str, Endpoint] | None = None) -> None:
        self.endpoints = endpoints or {}

    @property
    def _in_query(self) -> bool:
        return self.request.method in ("GET", "DELETE")

    def _request_values(self) -> dict[str, Any]:
        """Query arguments for GET/DELETE, a JSON object body for the rest."""
        if self._in_query:
            # unstripped: " " is an unknown word to refuse, not an empty (absent) filter
            return {
                k: self.get_query_argument(k, strip=False) for k in self.request.query_arguments
            }
        if not self.request.body:
            return {}
        return parse_body(self.request.body)

    async def _dispatch(self, **path: str) -> None:
        endpoint = self.endpoints.get(self.request.method or "")
        if endpoint is None:
            raise web.HTTPError(405)
        values = self._request_values()
        result = await self.run(lambda: bind(endpoint(self.lab), values, path, self._in_query))
        if result is None:
            self.set_status(204)
        elif isinstance(result, bytes):
            self.set_header("Content-Type", "application/octet-stream")
            self.write(result)
        else:
            self.set_header("Content-Type", "application/json")
            self.write(to_json(result))

    get = post = patch = put = delete = _dispatch


class FollowHandler(LabHandler):
    """Server-sent events of a run's log, lines and progress, live until the run ends; every
    viewer of a run shares one watcher of it (see :mod:`pico_nb.hub.fanout`)."""

    async def get(self, run_id: str) -> None:
        offset = count(self.get_query_argument("offset", "0"), "offset")
        tail = self.get_query_argument("from_tail", None)
        from_tail = None if tail is None else count(tail, "from_tail")
        run = await self.run(self.lab.get_run, run_id)  # refuse before the stream starts
        fanout: Fanout = self.settings["fanout"]
        async with fanout.follow(self.lab, run, offset, from_tail) as follower:
            self.follower = follower
            self.set_header("Content-Type", "text/event-stream")
            self.set_header("Cache-Control", "no-cache")
            self.set_header("X-Accel-Buffering", "no")
            try:
                await self.flush()  # the viewer knows at once that it is following
                await self._stream(fanout, follower)
            except StreamClosedError:
                pass
            except Exception as exc:
                if self.settings["stopping"].is_set():  # the viewer resumes after the restart
                    log.info("following the log of run %s cut short by the stop", run.id)
                    return
                log.exception("following the log of run %s failed", run.id)
                self.write(f"event: error\ndata: {json.dumps(error_body(exc))}\n\n")

    def on_connection_close(self) -> None:
        """The viewer left: free its stream now, not at the next write."""
        follower: Follower | None = getattr(self, "follower", None)
        if follower is not None:
            follower.gone = True
            follower.ready.set()

    async def _stream(self, fanout: Fanout, follower: Follower) -> None:
        """Send what is waiting in one flush, so a burst of lines costs one packet; a viewer
        too slow for the buffer is told where to resume."""
        while not follower.gone:
            follower.ready.clear()
            if follower.overflowed:
                resume = json.dumps({"offset": follower.resume_at})
                self.write(f"event: resume\ndata: {resume}\n\n")
                return
            if items := follower.drain():
                self.write("".join(f"data: {item.model_dump_json()}\n\n" for item in items))
                await self.flush()
                continue
            if follower.behind:
                if await fanout.catch_up(follower):
                    continue
            elif not follower.feed.active:
                follower.end()
                ending = "".join(f"data: {item.model_dump_json()}\n\n" for item in follower.drain())
                self.write(ending + "event: end\ndata: {}\n\n")
                return
            try:
                await asyncio.wait_for(follower.ready.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                self.write(": keepalive\n\n")
                await self.flush()


class DownloadHandler(LabHandler):
    """The whole log as a file, streamed in chunks so a huge log never sits in memory."""

    async def get(self, run_id: str) -> None:
        run = await self.run(self.lab.get_run, run_id)
        name = f"experiment_{run.experiment_id}_run_{run.number}.log"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        offset = 0
        while True:
            chunk = await self.run(self.lab.read_log, run.id, offset, DOWNLOAD_CHUNK)
            if chunk.next_offset == offset:
                return
            self.write(chunk.text.encode())
            await self.flush()
            offset = chunk.next_offset


class HealthHandler(web.RequestHandler):
    """Unauthenticated liveness for the launcher and load balancers; says nothing else."""

    def get(self) -> None:
        self.write({"ok": True})


class JobHandler(JsonHandler):
    """A member's Slurm job reporting on its own run, proven by the run's token (header
    ``X-Pico-Run-Token``), never by a hub identity: the job runs as the member on a compute
    node, where no hub login exists (see :mod:`pico_nb.execution.job_desk`)."""

    def check_xsrf_cookie(self) -> None:
        """No cookie is ever accepted here, so there is no cross-site request to forge."""

    async def post(self, run_id: str, action: str) -> None:
        token = self.request.headers.get(RUN_TOKEN_HEADER, "")
        if not token:
            raise web.HTTPError(401, reason="a job reports with its run's token")
        run, body = count(run_id, "run_id"), parse_body(self.request.body or b"{}")
        operator = self.labs.operator
        if action == "claim":
            node = body.get("node")
            if not isinstance(node, dict):
                raise ValidationError.one("node", "must be an object")
            plan = await self.run(operator.job_claim, run, token, str(body.get("job_id", "")), node)
            answer: dict[str, Any] = {"plan": plan}
        elif action == "report":
            answer = {"stop": await self.run(operator.job_report, run, token, body)}
        else:
            start, data = count(body.get("start"), "start"), _base64(body.get("data"))
            answer = {"size": await self.run(operator.job_log, run, token, start, data)}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))


def _base64(value: Any) -> bytes:
    """Log bytes as a job sends them."""
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ValidationError.one("data", "must be base64") from None
