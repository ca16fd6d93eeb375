"""The pico service: a hub-managed Tornado app that owns the database and the runs.

Every request is identified by JupyterHub (a user's API token, or the hub OAuth cookie of a
browser session) and served by ``Lab(user=<hub user>)``, so ownership is enforced by Lab for
every call. One generic handler maps URLs onto Lab methods; only the live log stream and the
whole-log download need handlers of their own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import operator
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from operator import attrgetter
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback
from tornado.iostream import StreamClosedError

from pico_nb.errors import PicoError, ValidationError
from pico_nb.hub.fanout import Fanout, Follower
from pico_nb.inputs import MAX_INT64, whole
from pico_nb.lab import Lab
from pico_nb.schemas import Record
from pico_nb.settings import Settings, load_settings

log = logging.getLogger("pico_nb.hub.service")

Endpoint = Callable[[Lab], Callable[..., Any]]
KEEPALIVE_SECONDS = 5.0
RECONCILE_SECONDS = 5.0
DOWNLOAD_CHUNK = 1 << 20
HELPER_STOP_SECONDS = 5.0
SECRET_ENV = "PICO_NB_SERVICE_COOKIE_SECRET"  # handed from the main process to its helpers
PARENT_ENV = "PICO_NB_SERVICE_PARENT"
MAX_BODY_BYTES = 1 << 20
"""A JSON body larger than this is refused (413) before it is parsed."""
MAX_BODY_DEPTH = 32
"""Nesting deeper than this is refused before parsing: no recursion error, no 500."""
PUBLIC_SETTINGS = (
    "home",
    "data_roots",
    "max_concurrent_runs",
    "max_runs_per_user",
    "gpus",
    "stop_grace_seconds",
    "heartbeat_seconds",
    "lost_after_seconds",
    "executor",
)
_ID = r"(?P<{}>[^/]+)"
_EXP = "experiments/" + _ID.format("experiment_id")
_RUN = "runs/" + _ID.format("run_id")
_USER = "users/" + _ID.format("username")

ROUTES: dict[str, dict[str, Endpoint]] = {
    "whoami": {"GET": lambda lab: lambda: lab.user},
    "settings": {"GET": lambda lab: lambda: _public_settings(lab.settings)},
    "folders": {"GET": lambda lab: lambda: [str(p) for p in lab.data_roots]},
    "spec": {"GET": lambda lab: lab.spec.to_dict},
    "schema": {"GET": lambda lab: lab.spec.json_schema},
    "frames": {"GET": attrgetter("detect_frames")},
    "queue": {"GET": attrgetter("queue")},
    "workers": {"GET": attrgetter("workers")},
    "reconcile": {"POST": attrgetter("reconcile")},
    "notifications": {
        "GET": attrgetter("notification_settings"),
        "PUT": attrgetter("set_notifications"),
    },
    "experiments": {"GET": attrgetter("experiments"), "POST": attrgetter("create_experiment")},
    "experiments/count": {"GET": attrgetter("count_experiments")},
    _EXP: {
        "GET": attrgetter("get_experiment"),
        "PATCH": attrgetter("update_experiment"),
        "DELETE": attrgetter("delete_experiment"),
    },
    _EXP + "/clone": {"POST": attrgetter("clone_experiment")},
    _EXP + "/share": {"POST": attrgetter("share_experiment")},
    _EXP + "/run": {"POST": attrgetter("run_experiment")},
    _EXP + "/runs": {"GET": attrgetter("runs")},
    _RUN: {"GET": attrgetter("get_run")},
    _RUN + "/stop": {"POST": attrgetter("stop_run")},
    _RUN + "/log": {"GET": attrgetter("read_log")},
    _RUN + "/results": {"GET": attrgetter("results")},
    _RUN + "/file": {"GET": attrgetter("result_file")},
    _RUN + "/cells": {"GET": attrgetter("cells")},
    _RUN + "/traces": {"POST": attrgetter("traces")},
    _RUN + "/image": {"GET": attrgetter("cell_image")},
    _RUN + "/curation": {"GET": attrgetter("curation"), "PUT": attrgetter("set_curation")},
    _RUN + "/export": {"POST": attrgetter("export")},
    "compare": {"POST": attrgetter("compare_runs")},
    "overlay": {"GET": attrgetter("overlay_image")},
    "users": {"GET": attrgetter("users"), "POST": attrgetter("add_user")},
    _USER: {"DELETE": attrgetter("delete_user")},
    _USER + "/password": {"PUT": attrgetter("set_password")},
    _USER + "/admin": {"PUT": attrgetter("set_admin")},
}


def _public_settings(settings: Settings) -> dict[str, Any]:
    """What clients may know of the configuration: never the database or broker URLs."""
    data = settings.model_dump(mode="json", include=set(PUBLIC_SETTINGS))
    data["data_roots"] = [str(p) for p in settings.effective_data_roots]
    return data


def _coerce(param: inspect.Parameter, value: Any, text: bool) -> Any:
    """JSON types must match the Lab signature (Lab would read "false" as true): booleans and
    whole numbers may also come as query text; mappings must be objects."""
    kind = str(param.annotation)
    if kind == "bool" and not isinstance(value, bool):
        if text and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise ValidationError.one(param.name, "must be true or false")
    if kind == "int":
        if isinstance(value, str) and not text:  # JSON bodies carry numbers as numbers
            raise ValidationError.one(param.name, "must be a whole number")
        return whole(value, param.name, minimum=-MAX_INT64)
    if kind.startswith("Mapping") and not isinstance(value, dict | None):
        raise ValidationError.one(param.name, "must be an object of name to value")
    return value


def bind(
    fn: Callable[..., Any], given: Mapping[str, Any], fixed: Mapping[str, str], text: bool
) -> Any:
    """Call fn with request fields named after its parameters; unknown or missing ones are 400."""
    params = inspect.signature(fn).parameters
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    errors = {
        k: "unknown field" for k in given if k in fixed or (k not in named and not open_ended)
    }
    for name, param in named.items():
        if param.default is param.empty and name not in given and name not in fixed:
            errors[name] = "is required"
    if errors:
        raise ValidationError(errors)
    values = {k: _coerce(named[k], v, text) if k in named else v for k, v in given.items()}
    return fn(**fixed, **values)


def count(value: Any, field: str) -> int:
    """Offsets and line counts from a query string: whole numbers, zero … 2^63-1."""
    return whole(value, field)


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON numbers; Python's parser would let them in."""
    raise ValidationError.one("body", f"{name} is not a JSON number")


def parse_body(body: bytes) -> dict[str, Any]:
    """A JSON object of bounded size and depth, checked before the parser sees it."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the request body is larger than {MAX_BODY_BYTES >> 10} KiB")
    if nesting_depth(body) > MAX_BODY_DEPTH:
        raise ValidationError.one("body", f"must not nest deeper than {MAX_BODY_DEPTH} levels")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except ValueError:  # also bad UTF-8 and numbers longer than Python converts
        raise ValidationError.one("body", "must be JSON") from None
    if not isinstance(data, dict):
        raise ValidationError.one("body", "must be a JSON object")
    return data


def nesting_depth(body: bytes) -> int:
    """Deepest bracket nesting outside JSON strings, in linear time at C speed: strings (even
    an unterminated one) are cut out, brackets become 2 (open) or 0 (close), and the running
    sum minus the count so far is the depth at each bracket."""
    steps = _STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKET)
    return max(map(operator.sub, accumulate(steps), range(1, len(steps) + 1)), default=0)


_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(PicoError):
    """A request body over the size limit."""

    status = 413


def to_json(value: Any) -> Any:
    """Records as their JSON form, so the client rebuilds the very same types."""
    if isinstance(value, Record):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


class Labs:
    """One Lab per hub user for this process; the engine is shared, so they are cheap."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.operator = Lab.operator(settings=settings)
        self._labs: dict[str, Lab] = {}
        self._lock = threading.Lock()

    def get(self, username: str) -> Lab:
        """The user's Lab. Identity comes from the hub; rights (admin) from the users table,
        which PicoAuthenticator also hands to the hub."""
        with self._lock:
            lab = self._labs.get(username)
        if lab is None:
            lab = Lab(user=username, settings=self.settings)
            with self._lock:
                lab = self._labs.setdefault(username, lab)
        return lab


class LabHandler(HubOAuthenticated, web.RequestHandler):
    """Identify the hub user, hand the calls to their Lab in a thread, answer errors as JSON."""

    lab: Lab

    @property
    def labs(self) -> Labs:
        return self.settings["labs"]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Lab calls block on the database and disk: keep them off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.settings["pool"], fn, *args)

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
        self.lab = await self.run(self.labs.get, model["name"])

    def check_xsrf_cookie(self) -> None:
        """Token requests need no XSRF check; cookie sessions get the hub's check."""
        return self.hub_auth.check_xsrf_cookie(self)

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
        self._fault_id = uuid.uuid4().hex[:16]
        log.error(
            "request %s failed: %s %s",
            self._fault_id,
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )


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
            self.write(json.dumps(to_json(result)))

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


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error a client turns back into the same exception; faults say nothing more."""
    if not isinstance(exc, PicoError):
        return {"error": "internal", "message": "internal error"}
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        body["errors"] = exc.errors
    return body


def error_answer(
    exc: BaseException | None, status: int, reason: str, fault_id: str | None
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for any exception: refusals say why, faults give only an id."""
    if isinstance(exc, PicoError):
        return exc.status, error_body(exc)
    if status < 500:
        return status, {"error": "http", "message": reason}
    return 500, {"error": "internal", "message": "internal error", "request_id": fault_id}


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


def make_app(
    settings: Settings, prefix: str, pool: ThreadPoolExecutor, secret: bytes
) -> web.Application:
    """Routes under the service prefix; the OAuth callback completes browser sign-in."""

    def url(path: str) -> str:
        return url_path_join(prefix, path) + "/?"

    handlers: list[Any] = [
        (url("health"), HealthHandler),
        (url("oauth_callback"), HubOAuthCallbackHandler),
        (url(f"api/{_RUN}/log/follow"), FollowHandler),
        (url(f"api/{_RUN}/log/download"), DownloadHandler),
        *((url(f"api/{path}"), ApiHandler, {"endpoints": e}) for path, e in ROUTES.items()),
        (url(""), ApiHandler, {"endpoints": ROUTES["whoami"]}),
    ]
    labs = Labs(settings)
    return web.Application(
        handlers,
        labs=labs,
        fanout=Fanout(labs.operator, pool),
        pool=pool,
        stopping=threading.Event(),  # set before the pool shuts: cut-short calls get 503
        cookie_secret=secret,  # one per service, shared by its processes
        hub_auth=HubOAuth.instance(),
    )


def _keep_token_from_runs(auth: HubOAuth) -> None:
    """Read the service's hub token once, then keep it out of the runs this process launches."""
    if auth.api_token:
        os.environ.pop("JUPYTERHUB_API_TOKEN", None)


async def serve(settings: Settings, secret: bytes, parent: int = 0) -> None:
    """Listen where the hub says, reconcile periodically, and stop promptly on a signal; a
    helper process (``parent`` set) shares the port and stops with its parent."""
    bind_url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/pico/")
    auth = HubOAuth.instance()
    _keep_token_from_runs(auth)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="lab") as pool:
        app = make_app(settings, prefix, pool, secret)
        labs: Labs = app.settings["labs"]
        server = app.listen(
            bind_url.port or 80,
            bind_url.hostname or "127.0.0.1",
            xheaders=False,  # Tornado would believe a client's X-Real-Ip; the proxy is the peer
            reuse_port=settings.service_processes > 1,
        )
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def reconcile() -> None:
            if parent and os.getppid() != parent:  # the main process is gone: so are we
                stopping.set()
            elif not parent:
                loop.run_in_executor(pool, labs.operator.reconcile)

        reconcile()  # at once: runs that died while the service was down are marked lost now
        ticker = PeriodicCallback(reconcile, RECONCILE_SECONDS * 1000)
        ticker.start()
        fanout: Fanout = app.settings["fanout"]
        fanout.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        log.info("pico service listening on %s%s", bind_url.geturl(), prefix)
        await stopping.wait()
        log.info("pico service stopping")
        app.settings["stopping"].set()
        ticker.stop()
        fanout.stop()
        server.stop()
        pool.shutdown(wait=False, cancel_futures=True)


def start_helpers(count: int, secret: bytes) -> list[subprocess.Popen[bytes]]:
    """More service processes on the same port (SO_REUSEPORT), for a lab one core cannot
    serve; each follows its own viewers' logs, and only the main one reconciles."""
    env = {**os.environ, SECRET_ENV: secret.hex(), PARENT_ENV: str(os.getpid())}
    command = [sys.executable, "-m", "pico_nb.hub.service"]
    return [subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL) for _ in range(count)]


def stop_helpers(helpers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the helper processes with the main one."""
    for helper in helpers:
        helper.terminate()
    for helper in helpers:
        try:
            helper.wait(HELPER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            helper.kill()


def main() -> None:
    """Entry point of the managed service (`python -m pico_nb.hub.service`)."""
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s pico] %(message)s"
    )
    secret = bytes.fromhex(os.environ.pop(SECRET_ENV, "")) or os.urandom(32)
    parent = int(os.environ.pop(PARENT_ENV, "0"))
    settings = load_settings()
    helpers = [] if parent else start_helpers(settings.service_processes - 1, secret)
    try:
        asyncio.run(serve(settings, secret, parent))
    finally:
        stop_helpers(helpers)


if __name__ == "__main__":
    main()
