"""Readers that rebuild corrected and registered frames from the stage outputs on disk."""

from __future__ import annotations

import numpy as np

from pico_nb.pipeline.layout import Layout, read_info
from pico_nb.pipeline.register import shift_frames, warp_frames
from pico_nb.pipeline.store import DiskStack


class Corrected:
    """Preprocessed frames (cropped, bad frames replaced) with the flat-field applied."""

    def __init__(self, layout: Layout) -> None:
        self.stack = DiskStack.open(layout.preprocess / "movie.npy")
        flat = layout.preprocess / "flatfield_gain.npy"
        self.gain = np.load(flat) if flat.exists() else None
        self.dtype = self.stack.dtype if self.gain is None else np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.stack)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) in the stored dtype, or float32 when flat-fielded."""
        frames = self.stack.read(start, stop)
        if self.gain is None:
            return frames
        return frames.astype(np.float32) * self.gain


class Registered:
    """Motion-corrected frames: from mc/registered.tif when kept, else re-derived from shifts."""

    def __init__(self, layout: Layout) -> None:
        info = read_info(layout.mc)
        movie = layout.mc / "registered.tif"
        kept = info["saved_movie"] and movie.exists()
        self.reader: DiskStack | Corrected = DiskStack.open(movie) if kept else Corrected(layout)
        self.shifts = np.loadtxt(layout.mc / "shifts.csv", delimiter=",", skiprows=1)[:, 1:3]
        self.shifts = self.shifts.reshape(-1, 2)
        patch_file = layout.mc / "pw_shifts.npy"
        self.patch_shifts = np.load(patch_file) if info["pw_rigid"] else None
        self.border = info["border_nan"]
        self.opencv = info["shifts_opencv"]
        self.n_frames = info["frames"]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Registered frames [start, stop) in the stored dtype (callers convert only what
        they need), borders filled by edge copies for analysis."""
        frames = self.reader.read(start, stop)
        if isinstance(self.reader, Corrected):  # not kept: re-derived from the shifts
            if self.patch_shifts is not None:
                frames = warp_frames(frames, self.patch_shifts[start:stop], self.border)
            else:
                frames = shift_frames(frames, self.shifts[start:stop], self.border, self.opencv)
        if self.border != "copy":
            self._refill_borders(frames, start)
        return frames

    def _refill_borders(self, frames: np.ndarray, start: int) -> None:
        """Replace the constant (min/zero/NaN) fill by the nearest valid row or column, so it
        does not flicker into background estimates and correlations downstream."""
        h, w = frames.shape[1:]
        if self.patch_shifts is not None:
            patches = self.patch_shifts[start : start + len(frames)]
            lows, highs = patches.min(axis=(1, 2)), patches.max(axis=(1, 2))
        else:
            lows = highs = self.shifts[start : start + len(frames)]
        for frame, low, high in zip(frames, lows, highs, strict=True):
            top, left = (int(np.ceil(max(v, 0))) + 2 for v in high)
            bottom, right = (int(np.ceil(max(-v, 0))) + 2 for v in low)
            if frame.dtype.kind == "f":
                holes = np.isnan(frame)
                middle_rows, middle_cols = slice(h // 4, h - h // 4), slice(w // 4, w - w // 4)
                top, bottom = _nan_extent(holes[:, middle_cols].any(axis=1), top, bottom)
                left, right = _nan_extent(holes[middle_rows].any(axis=0), left, right)
            top, bottom = min(top, h // 2), min(bottom, h // 2)
            left, right = min(left, w // 2), min(right, w // 2)
            frame[:top] = frame[top]
            frame[h - bottom :] = frame[h - bottom - 1]
            frame[:, :left] = frame[:, left : left + 1]
            frame[:, w - right :] = frame[:, w - right - 1 : w - right]


def _nan_extent(bad: np.ndarray, first: int, last: int) -> tuple[int, int]:
    """Widen the bands at both ends of an axis to cover every NaN line next to them."""
    good = np.flatnonzero(~bad)
    if not len(good):
        return first, last
    return max(first, int(good[0])), max(last, len(bad) - 1 - int(good[-1]))
