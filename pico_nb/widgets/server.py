"""The one HTTP route widgets need: the whole log of a run as a download, whatever its size."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from pico_nb.errors import NotFound, PermissionDenied, PicoError
from pico_nb.widgets import default_lab
from pico_nb.widgets.offline import NoCdnLinks
from pico_nb.widgets.routes import LOG_ROUTE

if TYPE_CHECKING:
    from pico_nb.lab import Lab

CHUNK = 1 << 20


class LogDownloadHandler(JupyterHandler):
    """Stream a log through the Lab in 1 MB chunks, so a huge log never sits in memory."""

    def initialize(self, lab_factory: Callable[[], Lab]) -> None:
        self.lab_factory = lab_factory

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A plain sentence; the page templates are not there under Voila."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        exc = kwargs.get("exc_info", (None, None))[1]
        self.finish(getattr(exc, "log_message", None) or self._reason)

    @web.authenticated
    async def get(self, run_id: str) -> None:
        lab = self.lab_factory()
        try:
            run = lab.get_run(int(run_id))
        except (NotFound, PermissionDenied) as exc:
            raise web.HTTPError(404, str(exc)) from None
        name = f"experiment-{run.experiment_id}-run-{run.number}.log"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        offset = 0
        try:
            while True:
                chunk = lab.read_log(run.id, offset, CHUNK)
                if chunk.next_offset == offset:
                    break
                self.write(chunk.text.encode())
                await self.flush()
                offset = chunk.next_offset
        except PicoError as exc:
            raise web.HTTPError(500, str(exc)) from None
        self.finish()


def handlers(
    base_url: str, lab_factory: Callable[[], Lab]
) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado routes for the log download, for Voila and for a Jupyter server alike."""
    route = base_url.rstrip("/") + LOG_ROUTE
    return [(route, LogDownloadHandler, {"lab_factory": lab_factory})]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Let JupyterLab serve the download link too (enabled in jupyter_config/)."""
    return [{"module": "pico_nb.widgets.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the route on a running Jupyter server, with a Lab for the server's user."""
    base = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", handlers(base, default_lab))
    serverapp.web_app.transforms.append(NoCdnLinks)  # the dashboard works offline
