"""Frame stacks on disk, read and written in chunks with plain file I/O.

Plain reads keep file pages in the page cache rather than in the process's resident
memory (a memmap would count them), so peak RSS follows the chunk size, not the movie.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile

_HALF, _SINGLE = np.dtype(np.float16), np.dtype(np.float32)
_OPENCV_DEPTH = {_HALF: cv2.CV_16F, _SINGLE: cv2.CV_32F}


def converted(frames: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Frames in dtype; float16 to or from float32 through OpenCV, which converts with the
    CPU's own instructions: NumPy takes 2.5-11 ms a megapixel, OpenCV 0.5-1 (identical values)."""
    dtype = np.dtype(dtype)
    if frames.dtype == dtype:
        return frames
    if {frames.dtype, dtype} != {_HALF, _SINGLE} or not frames.size:
        return frames.astype(dtype)
    rows = np.ascontiguousarray(frames).reshape(-1, frames.shape[-1])  # 2-D: no channel axis
    return cv2.multiply(rows, 1.0, dtype=_OPENCV_DEPTH[dtype]).reshape(frames.shape)


class DiskStack:
    """A (frames, height, width) array stored contiguously at an offset in a .npy or .tif file."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> DiskStack:
        """A new sparse file of the right size; .tif files are readable by any TIFF viewer."""
        path = Path(path)
        dtype = np.dtype(dtype)
        if path.suffix in (".tif", ".tiff"):
            big = int(np.prod(shape)) * dtype.itemsize > 2**31
            image = tifffile.memmap(
                path, shape=shape, dtype=dtype, photometric="minisblack", bigtiff=big
            )
            del image
            return cls.open(path)
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": tuple(shape),
        }
        with open(path, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            offset = f.tell()
            f.truncate(offset + int(np.prod(shape)) * dtype.itemsize)
        return cls(path, shape, dtype, offset)

    @classmethod
    def open(cls, path: Path) -> DiskStack:
        """An existing stack written by create() (or any uncompressed contiguous .npy/.tif)."""
        path = Path(path)
        if path.suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                if series.dataoffset is None:
                    raise ValueError(f"{path} is not a contiguous uncompressed TIFF")
                shape = series.shape if len(series.shape) == 3 else (1, *series.shape)
                return cls(path, shape, series.dtype, series.dataoffset)
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            return cls(path, shape, dtype, f.tell())

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as a fresh writable array."""
        stop = min(stop, self.shape[0])
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        if out.size:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                got = os.preadv(fd, [out.data.cast("B")], self.offset + start * self.frame_bytes)
            finally:
                os.close(fd)
            if got != out.nbytes:
                raise OSError(f"{self.path} is shorter than its header says")
        return out

    def read_tile(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Rows [top, bottom) and columns [left, right) of every frame: one tile of a stack
        too big for memory, read a frame's rows at a time so only the tile itself is held."""
        row_bytes = self.frame_bytes // self.shape[1]
        rows = np.empty((bottom - top, *self.shape[2:]), self.dtype)
        out = np.empty((self.shape[0], bottom - top, right - left, *self.shape[3:]), self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for t in range(self.shape[0]):
                where = self.offset + t * self.frame_bytes + top * row_bytes
                os.preadv(fd, [rows.data.cast("B")], where)
                out[t] = rows[:, left:right]
        finally:
            os.close(fd)
        return out

    def write(self, start: int, frames: np.ndarray) -> None:
        """Store frames at start, converting to the stack's dtype."""
        stored = np.ascontiguousarray(converted(frames, self.dtype))
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, stored.data.cast("B"), self.offset + start * self.frame_bytes)
        finally:
            os.close(fd)

    def chunks(self, size: int) -> Iterator[tuple[int, int]]:
        """Consecutive [start, stop) ranges of at most size frames."""
        return chunk_ranges(self.shape[0], size)


def chunk_ranges(total: int, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges of at most size items covering total."""
    size = max(1, int(size))
    for start in range(0, total, size):
        yield start, min(total, start + size)


def frames_per_chunk(frame_shape: tuple[int, ...], requested: int, budget_mb: int = 24) -> int:
    """The requested chunk, capped so one float32 chunk stays within the memory budget."""
    per_frame = int(np.prod(frame_shape)) * 4
    return max(1, min(int(requested), budget_mb * 2**20 // per_frame))
