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
import os
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
from pico_nb.lab import Lab
from pico_nb.schemas import Record
from pico_nb.settings import Settings, load_settings

log = logging.getLogger("pico_nb.hub.service")

Endpoint = Callable[[Lab], Callable[..., Any]]
KEEPALIVE_SECONDS = 5.0
RECONCILE_SECONDS = 5.0
DOWNLOAD_CHUNK = 1 << 20
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
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        if not text or not value.lstrip("-").isdigit():
            raise ValidationError.one(param.name, "must be a whole number")
        return int(value)
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
    """Offsets and line counts from a query string: whole numbers, zero or more."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError.one(field, "must be a whole number") from None
    if number < 0:
        raise ValidationError.one(field, "must be at least 0")
    return number


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


class ApiHandler(HubOAuthenticated, web.RequestHandler):
    """Identify the hub user, hand the call to their Lab in a thread, answer JSON."""

    lab: Lab

    def initialize(self, endpoints: Mapping[str, Endpoint] | None = None) -> None:
        self.endpoints = endpoints or {}

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

    @property
    def _in_query(self) -> bool:
        return self.request.method in ("GET", "DELETE")

    def _request_values(self) -> dict[str, Any]:
        """Query arguments for GET/DELETE, a JSON object body for the rest."""
        if self._in_query:
            return {k: self.get_query_argument(k) for k in self.request.query_arguments}
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise ValidationError.one("body", "must be JSON") from None
        if not isinstance(body, dict):
            raise ValidationError.one("body", "must be a JSON object")
        return body

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

    def check_xsrf_cookie(self) -> None:
        """Token requests need no XSRF check; cookie sessions get the hub's check."""
        return self.hub_auth.check_xsrf_cookie(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JSON errors with a fitting status; never a stack trace over the wire."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"error": "internal", "message": "internal error"}
        if isinstance(exc, PicoError):
            self.set_status(exc.status)
            body = {"error": type(exc).__name__, "message": str(exc)}
            if isinstance(exc, ValidationError):
                body["errors"] = exc.errors
        elif status_code < 500:
            body = {"error": "http", "message": self._reason}
        elif self.settings["stopping"].is_set():  # calls cut short by a restart: try again
            self.set_status(503)
            body = {"error": "http", "message": "the pico service is restarting"}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A refusal is the API working, not a server fault; only faults get a traceback."""
        if isinstance(value, PicoError | web.HTTPError):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)


class FollowHandler(ApiHandler):
    """Server-sent events of Lab.follow_log: lines and progress, live, until the run ends."""

    async def get(self, run_id: str) -> None:
        offset = count(self.get_query_argument("offset", "0"), "offset")
        tail = self.get_query_argument("from_tail", None)
        from_tail = None if tail is None else count(tail, "from_tail")
        await self.run(self.lab.get_run, run_id)  # refuse before the stream starts
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        events = self.lab.follow_log(run_id, offset, from_tail, stop=stop.is_set)
        pump = threading.Thread(
            target=_pump,
            args=(events, queue, asyncio.get_running_loop(), stop),
            daemon=True,
            name=f"follow-{run_id}",
        )
        pump.start()
        try:
            await self._stream(queue)
        except StreamClosedError:
            pass
        finally:
            stop.set()

    async def _stream(self, queue: asyncio.Queue[Any]) -> None:
        """Write whatever is waiting in one flush, so a burst of lines costs one packet."""
        while True:
            try:
                items = [await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)]
            except TimeoutError:
                items = []
                self.write(": keepalive\n\n")
            while not queue.empty():
                items.append(queue.get_nowait())
            for item in items:
                if item is _END:
                    self.write("event: end\ndata: {}\n\n")
                elif isinstance(item, BaseException):
                    self.write(f"event: error\ndata: {json.dumps(error_body(item))}\n\n")
                else:
                    self.write(f"data: {json.dumps(item.model_dump(mode='json'))}\n\n")
            await self.flush()
            if any(item is _END or isinstance(item, BaseException) for item in items):
                return


_END = object()


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error a client turns back into the same exception; faults say nothing more."""
    if not isinstance(exc, PicoError):
        return {"error": "internal", "message": "internal error"}
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        body["errors"] = exc.errors
    return body


def _pump(events: Any, queue: asyncio.Queue[Any], loop: Any, stop: threading.Event) -> None:
    """Drive the blocking follower in a thread; it ends with the run, or at the first event
    after the viewer left."""
    try:
        for event in events:
            if stop.is_set():
                return
            loop.call_soon_threadsafe(queue.put_nowait, event)
        loop.call_soon_threadsafe(queue.put_nowait, _END)
    except RuntimeError:
        return  # the service is shutting down and its loop is closed
    except Exception as exc:
        log.exception("following a log failed")
        loop.call_soon_threadsafe(queue.put_nowait, exc)
    finally:
        events.close()


class DownloadHandler(ApiHandler):
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


def make_app(settings: Settings, prefix: str, pool: ThreadPoolExecutor) -> web.Application:
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
    return web.Application(
        handlers,
        labs=Labs(settings),
        pool=pool,
        stopping=threading.Event(),  # set before the pool shuts: cut-short calls get 503
        cookie_secret=os.urandom(32),
        hub_auth=HubOAuth.instance(),
    )


def _keep_token_from_runs(auth: HubOAuth) -> None:
    """Read the service's hub token once, then keep it out of the runs this process launches."""
    if auth.api_token:
        os.environ.pop("JUPYTERHUB_API_TOKEN", None)


async def serve(settings: Settings) -> None:
    """Listen where the hub says, reconcile periodically, and stop promptly on a signal."""
    bind_url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/pico/")
    auth = HubOAuth.instance()
    _keep_token_from_runs(auth)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="lab") as pool:
        app = make_app(settings, prefix, pool)
        labs: Labs = app.settings["labs"]
        server = app.listen(bind_url.port or 80, bind_url.hostname or "127.0.0.1", xheaders=True)
        loop = asyncio.get_running_loop()

        def reconcile() -> None:
            loop.run_in_executor(pool, labs.operator.reconcile)

        ticker = PeriodicCallback(reconcile, RECONCILE_SECONDS * 1000)
        ticker.start()
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        log.info("pico service listening on %s%s", bind_url.geturl(), prefix)
        await stopping.wait()
        log.info("pico service stopping")
        app.settings["stopping"].set()
        ticker.stop()
        server.stop()
        pool.shutdown(wait=False, cancel_futures=True)


def main() -> None:
    """Entry point of the managed service (`python -m pico_nb.hub.service`)."""
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s pico] %(message)s"
    )
    asyncio.run(serve(load_settings()))


if __name__ == "__main__":
    main()
