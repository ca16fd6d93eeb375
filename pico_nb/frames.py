"""The input folder as a form shows it: the contract's discovery, reported on the form's field."""

from __future__ import annotations

from pathlib import Path

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.sources import discover
from pico_nb.schemas import FrameInfo


def detect_frames(folder: Path, field: str = "input_path") -> FrameInfo:
    """The input as a form shows it; errors name the form's field instead of data_path."""
    try:
        source = discover(folder)
    except ValidationError as exc:
        raise ValidationError({field: "; ".join(exc.errors.values())}) from None
    height, width = source.frame_shape
    return FrameInfo(
        path=str(folder),
        kind=source.kind,
        count=source.n_frames,
        files=len(source.files),
        first=source.files[0].name,
        width=width,
        height=height,
    )
