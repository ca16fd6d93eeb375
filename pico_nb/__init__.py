"""pico_nb: run the PICO calcium-imaging pipeline from Jupyter, Voila, Python or the CLI."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Lab", "RunPanel", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the heavy parts only when asked, so the pipeline and CLI start fast."""
    if name == "Lab":
        from pico_nb.hub import in_user_server

        if in_user_server():  # a hub user server: the pico service holds the database
            from pico_nb.hub.client import RemoteLab

            return RemoteLab
        from pico_nb.lab import Lab

        return Lab
    if name == "RunPanel":
        from pico_nb.widgets.run_panel import RunPanel

        return RunPanel
    raise AttributeError(name)
