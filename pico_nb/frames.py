"""What an input folder holds: frame sequences or TIFF stacks, counted without reading pixels."""

from __future__ import annotations

import re
from pathlib import Path

from pico_nb.errors import ValidationError
from pico_nb.schemas import FrameInfo

JPEG_SUFFIXES = (".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
_NUMBER = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[object, ...]:
    """frame_2 sorts before frame_10, as the microscope numbered them."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _NUMBER.split(path.name))


def frame_files(folder: Path) -> tuple[str, list[Path]]:
    """The frame files in reading order and their kind ('jpg' or 'tiff'); JPEG wins if both."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    jpgs = sorted((p for p in files if p.suffix.lower() in JPEG_SUFFIXES), key=natural_key)
    if jpgs:
        return "jpg", jpgs
    tiffs = sorted((p for p in files if p.suffix.lower() in TIFF_SUFFIXES), key=natural_key)
    return "tiff", tiffs


def detect_frames(folder: Path, field: str = "input_path") -> FrameInfo:
    """Count frames and read the frame size from headers only, so big folders stay quick."""
    try:
        kind, files = frame_files(folder)
    except OSError as exc:
        raise ValidationError.one(field, f"cannot be read ({exc.strerror})") from None
    if not files:
        raise ValidationError.one(field, "holds no frames (*.jpg, *.tif or *.tiff files)")
    first = files[0]
    try:
        if kind == "jpg":
            from PIL import Image

            with Image.open(first) as image:
                width, height = image.size
            count, label = len(files), "jpg sequence"
        else:
            import tifffile

            with tifffile.TiffFile(first) as tif:
                shape = tif.series[0].shape
                pages = len(tif.pages)
            height, width = int(shape[-2]), int(shape[-1])
            if len(files) == 1:
                count, label = pages, "tiff stack"
            else:
                count, label = len(files), "tiff sequence"
    except Exception as exc:  # any decoder error means the same thing to the analyst
        raise ValidationError.one(
            field, f"first frame {first.name} is unreadable ({exc})"
        ) from None
    return FrameInfo(
        path=str(folder),
        kind=label,
        count=count,
        files=len(files),
        first=first.name,
        width=width,
        height=height,
    )
