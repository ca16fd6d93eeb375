"""ipywidgets views of the lab: the same widgets in a JupyterLab cell and in the Voila dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pico_nb.lab import Lab


def default_lab() -> Lab:
    """pico_nb.Lab picks the local database, or the hub's pico service inside a hub server."""
    import pico_nb

    return pico_nb.Lab()
