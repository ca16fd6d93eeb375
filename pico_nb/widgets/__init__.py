"""ipywidgets views of the lab: the same widgets in a JupyterLab cell and in the Voila dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI


def default_lab() -> LabAPI:
    """pico_nb.Lab picks the local database, or the hub's pico service inside a hub server."""
    import pico_nb

    lab_class: type[LabAPI] = pico_nb.Lab  # Lab, or RemoteLab in a hub server (pico_nb.__getattr__)
    return lab_class()
