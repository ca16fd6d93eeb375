"""The HTTP routes widgets need: a run's whole log, whatever its size, and its output files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from pico_nb.contract.errors import NotFound, PermissionDenied, PicoError, ValidationError
from pico_nb.inputs import as_id
from pico_nb.widgets import default_lab
from pico_nb.widgets.offline import NoCdnLinks
from pico_nb.widgets.routes import FILE_ROUTE, LOG_ROUTE

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

CHUNK = 1 << 20


class LogDownloadHandler(JupyterHandler):
    """Stream a log through the Lab in 1 MB chunks, so a huge log never sits in memory."""

    def initialize(self, lab_factory: Callable[[], LabAPI]) -> None:
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
            run = lab.get_run(as_id(run_id, "run_id"))
        except (NotFound, PermissionDenied) as exc:
            raise web.HTTPError(404, str(exc)) from None
        except ValidationError as exc:  # an id beyond 2^63-1, refused by as_id as Lab does
            raise web.HTTPError(400, str(exc)) from None
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
            raise web.HTTPError(exc.status, str(exc)) from None
        self.finish()


class FileDownloadHandler(LogDownloadHandler):
    """One output file of a run, read through the Lab (inside the run folder, size-capped)."""

    @web.authenticated
    async def get(self, run_id: str, path: str) -> None:
        lab = self.lab_factory()
        try:
            data = lab.result_file(int(run_id), path)
        except (NotFound, PermissionDenied) as exc:
            raise web.HTTPError(404, str(exc)) from None
        except PicoError as exc:
            raise web.HTTPError(400, str(exc)) from None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(path).name) or "file"
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(data)


def handlers(
    base_url: str, lab_factory: Callable[[], LabAPI]
) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado routes for the downloads, for Voila and for a Jupyter server alike."""
    base = base_url.rstrip("/")
    factory = {"lab_factory": lab_factory}
    return [
        (base + LOG_ROUTE, LogDownloadHandler, factory),
        (base + FILE_ROUTE, FileDownloadHandler, factory),
    ]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Let JupyterLab serve the download link too (enabled in jupyter_config/)."""
    return [{"module": "pico_nb.widgets.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the route on a running Jupyter server, with a Lab for the server's user."""
    base = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", handlers(base, default_lab))
    serverapp.web_app.transforms.append(NoCdnLinks)  # the dashboard works offline
