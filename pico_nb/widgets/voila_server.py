"""The Voila server behind `pico-nb dashboard`: Voila's heavy imports live here alone."""

from __future__ import annotations

import secrets
import webbrowser
from typing import Any

from tornado.ioloop import IOLoop
from traitlets import default
from voila.app import Voila
from voila.tornado.handler import TornadoVoilaHandler

from pico_nb.shared_files import shared_dir
from pico_nb.widgets import default_lab, server
from pico_nb.widgets.offline import NoCdnLinks

NOTEBOOK = shared_dir("notebooks") / "dashboard.ipynb"
CONFIG_DIR = shared_dir("jupyter_config")


class DashboardPage(TornadoVoilaHandler):
    """The dashboard page, also setting the _xsrf cookie that Voila's unload beacon must send.

    Without it the beacon that shuts a closed tab's kernel down is refused (403), and kernels
    would linger until culled.
    """

    async def get(self, path: str | None = None) -> None:
        _ = self.xsrf_token  # reading it sets the cookie
        await super().get(path)


class DashboardServer(Voila):
    """Voila with the project's config, the log download route and a token in the printed URL."""

    @default("config_file_paths")
    def _config_file_paths_default(self) -> list[str]:
        return [str(CONFIG_DIR)]

    def init_handlers(self) -> list[Any]:
        """The download route first, so Voila's catch-all routes never shadow it."""
        voila = [
            (route, DashboardPage, *rest)
            if handler is TornadoVoilaHandler
            else (route, handler, *rest)
            for route, handler, *rest in super().init_handlers()
        ]
        self.app.transforms.append(NoCdnLinks)
        return [*server.handlers(self.base_url, default_lab), *voila]

    def start(self) -> None:
        IOLoop.current().add_callback(self._announce)
        super().start()

    def _announce(self) -> None:
        """Print the URL once the port is bound (and open it unless asked not to)."""
        url = f"http://{self.ip}:{self.port}/?token={self.token}"
        print(f"pico-nb dashboard: {url}", flush=True)
        if self.pico_open_browser:
            webbrowser.open(url)

    pico_open_browser = False


def serve(port: int, open_browser: bool) -> int:
    """Run the dashboard until interrupted."""
    app = DashboardServer()
    app.pico_open_browser = open_browser
    app.initialize(
        [
            str(NOTEBOOK),
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",
            "--Voila.open_browser=False",
            "--Voila.log_level=WARN",  # the URL line below is the one to read; problems still show
            f"--Voila.token={secrets.token_urlsafe(24)}",
        ]
    )
    app.start()
    return 0
