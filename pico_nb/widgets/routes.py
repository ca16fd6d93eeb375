"""The URLs widgets link to, kept apart from the server code so kernels need not import it."""

from __future__ import annotations

import os
from urllib.parse import quote

LOG_ROUTE = r"/pico-nb/runs/(\d+)/log"
FILE_ROUTE = r"/pico-nb/runs/(\d+)/files/(.+)"


def _prefix() -> str:
    """The server's prefix: the user's server under a hub, or the root."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")


def download_url(run_id: int) -> str:
    """Where the browser fetches a run's log, under the server's prefix (hub or local)."""
    return f"{_prefix()}/pico-nb/runs/{int(run_id)}/log"


def file_url(run_id: int, path: str) -> str:
    """Where the browser downloads one of a run's output files."""
    return f"{_prefix()}/pico-nb/runs/{int(run_id)}/files/{quote(path)}"


def hub_links() -> list[tuple[str, str]]:
    """JupyterLab and Log out, when this kernel runs in a member's hub server; else none."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not prefix:
        return []
    base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    return [
        ("JupyterLab", f"{prefix.rstrip('/')}/lab"),
        ("Log out", f"{base.rstrip('/')}/hub/logout"),
    ]
