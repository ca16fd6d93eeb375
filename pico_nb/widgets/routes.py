"""The URLs widgets link to, kept apart from the server code so kernels need not import it."""

from __future__ import annotations

import os

LOG_ROUTE = r"/pico-nb/runs/(\d+)/log"


def download_url(run_id: int) -> str:
    """Where the browser fetches a run's log, under the server's prefix (hub or local)."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return f"{prefix.rstrip('/')}/pico-nb/runs/{int(run_id)}/log"


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
