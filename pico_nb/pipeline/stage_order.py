"""The pipeline's stages in the order they run: the one list the progress numbering, the jump
flags and the stage table all read.

Light on purpose (no numpy), so the command line can check a jump before any heavy import.
"""

from __future__ import annotations

from enum import Enum


class Stage(Enum):
    """One stage; its value is the name its banner, its progress bar and summary.json show."""

    LOADING = "loading"
    BAD_FRAMES = "bad frame detection"
    CORRECTION = "crop and intensity correction"
    MOTION = "motion correction"
    BACKGROUND = "background removal"
    VESSELS = "vessel mask"
    SEGMENTATION = "segmentation"
    TRACES = "traces"
    OUTPUTS = "outputs"

    def and_after(self) -> list[Stage]:
        """This stage and every later one: what a run that starts here does."""
        order = list(Stage)
        return order[order.index(self) :]
