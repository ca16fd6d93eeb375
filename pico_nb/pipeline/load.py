"""Reading the input movie that pico_nb.contract.sources found: frame_N.jpg sequences, TIFFs, and
HDF5/NWB datasets (read a chunk at a time, never whole).

Everything that can be checked cheaply (names, numbering, frame sizes, crop) is checked
before any frame is decoded, so a bad input stops the run in seconds with a message
naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import tifffile

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.sources import Source, bad_input


def check_crop(source: Source, crop: Sequence[int]) -> tuple[slice, slice]:
    """The crop as slices (0 height/width = to the frame's edge), or an error naming it."""
    y, x, height, width = (int(v) for v in crop)
    frame_h, frame_w = source.frame_shape
    height, width = height or frame_h - y, width or frame_w - x
    if height < 1 or width < 1 or y + height > frame_h or x + width > frame_w:
        raise ValidationError.one(
            "crop_parameter",
            f"rows {y}-{y + height} × columns {x}-{x + width} fall outside the "
            f"{frame_h}×{frame_w} frame (height×width); use 0 0 {frame_h} {frame_w} to keep "
            "the whole frame",
        )
    return slice(y, y + height), slice(x, x + width)


def _gray(image: np.ndarray) -> np.ndarray:
    """Colour frames become grayscale by luminance, as the original reads them."""
    return image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


class FrameReader:
    """Reads frame ranges of a Source, decoding JPEGs on a thread pool."""

    def __init__(self, source: Source, threads: int = 2) -> None:
        self.source = source
        self.threads = threads
        self._starts = np.cumsum((0, *source.frames_per_file))

    def _jpeg(self, path: Path) -> np.ndarray:
        """One decoded JPEG frame, or an error naming the file."""
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise bad_input(path, "cannot be decoded (damaged or not an image)")
        if image.shape != self.source.frame_shape:
            raise bad_input(path, f"decodes to {image.shape} instead of {self.source.frame_shape}")
        return image

    def _hdf5(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of the HDF5/NWB dataset, or an error naming the file."""
        import h5py

        path = self.source.files[0]
        try:
            with h5py.File(path, "r") as h5:
                data = h5[self.source.dataset][start:stop]
        except Exception as exc:  # damaged chunks raise OSError, ValueError, ...
            raise bad_input(path, f"frames {start}-{stop} cannot be read ({exc})") from None
        return np.asarray(data, self.source.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) in the source dtype."""
        src = self.source
        if src.kind == "jpeg sequence":
            with ThreadPoolExecutor(self.threads) as pool:
                return np.stack(list(pool.map(self._jpeg, src.files[start:stop])))
        if src.dataset is not None:
            return self._hdf5(start, stop)
        out = np.empty((stop - start, *src.frame_shape), src.dtype)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        filled = 0
        for index in range(first, len(src.files)):
            if start + filled >= stop:
                break
            lo = start + filled - int(self._starts[index])
            hi = min(src.frames_per_file[index], stop - int(self._starts[index]))
            path = src.files[index]
            try:
                with tifffile.TiffFile(path, is_scanimage=False) as tif:
                    data = tif.asarray(key=range(lo, hi)) if hi - lo > 1 else tif.asarray(key=lo)
            except Exception as exc:  # a damaged page can raise many types
                raise bad_input(path, f"frames {lo}-{hi} cannot be read ({exc})") from None
            if data.shape[-1] in (3, 4) and data.shape[-3:-1] == src.frame_shape:
                data = _gray(data)
            out[filled : filled + hi - lo] = data.reshape(hi - lo, *src.frame_shape)
            filled += hi - lo
        return out
