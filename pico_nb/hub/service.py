"""The pico service: a hub-managed Tornado app that owns the database and the runs.

Every request is identified by JupyterHub (a user's API token, or the hub OAuth cookie of a
browser session) and served by ``Lab(user=<hub user>)`` (:mod:`pico_nb.hub.handlers`) on the
routes of :mod:`pico_nb.hub.routes`. This module builds the app, runs it with its periodic
reconcile, and starts the helper processes that share its port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.ioloop import PeriodicCallback

from pico_nb.hub.fanout import Fanout
from pico_nb.hub.handlers import (
    ApiHandler,
    DownloadHandler,
    FollowHandler,
    HealthHandler,
    JobHandler,
    Labs,
)
from pico_nb.hub.routes import ROUTES, RUN_PATH
from pico_nb.settings import Settings, load_settings

log = logging.getLogger("pico_nb.hub.service")

RECONCILE_SECONDS = 5.0
HELPER_STOP_SECONDS = 5.0
SECRET_ENV = "PICO_NB_SERVICE_COOKIE_SECRET"  # handed from the main process to its helpers
PARENT_ENV = "PICO_NB_SERVICE_PARENT"
IDENTITY_CACHE_SECONDS = 5
"""How long the hub's answer "this token is alice, with these scopes" is reused. HubAuth's
default is 300 s, so a revoked token or a logged-out session kept working for five minutes;
5 s still spares the hub a round trip per request (one per token per 5 s) while a revocation
takes effect within 5 s. The answer is cached per token, never shared between tokens."""


def make_app(
    settings: Settings, prefix: str, pool: ThreadPoolExecutor, secret: bytes
) -> web.Application:
    """Routes under the service prefix; the OAuth callback completes browser sign-in."""

    def url(path: str) -> str:
        return url_path_join(prefix, path) + "/?"

    handlers: list[Any] = [
        (url("health"), HealthHandler),
        (url("oauth_callback"), HubOAuthCallbackHandler),
        (url(f"api/{RUN_PATH}/log/follow"), FollowHandler),
        (url(f"api/{RUN_PATH}/log/download"), DownloadHandler),
        (url(r"api/jobs/(?P<run_id>\d+)/(?P<action>claim|report|log)"), JobHandler),
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
    auth = HubOAuth.instance(cache_max_age=IDENTITY_CACHE_SECONDS)
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
