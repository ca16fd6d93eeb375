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
        self.stack = DiskStack.open(movie) if info["saved_movie"] and movie.exists() else None
        self.corrected = None if self.stack else Corrected(layout)
        self.shifts = np.loadtxt(layout.mc / "shifts.csv", delimiter=",", skiprows=1)[:, 1:3]
        self.shifts = self.shifts.reshape(-1, 2)
        patch_file = layout.mc / "pw_shifts.npy"
        self.patch_shifts = np.load(patch_file) if info["pw_rigid"] else None
        self.border = info["border_nan"]
        self.opencv = info["shifts_opencv"]
        self.n_frames = info["frames"]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Registered frames [start, stop) in the stored dtype (callers convert only what
        they need); NaN borders read as 0, as they lie in the margin segmentation skips."""
        if self.stack is not None:
            frames = self.stack.read(start, stop)
        else:
            frames = self.corrected.read(start, stop)
            if self.patch_shifts is not None:
                frames = warp_frames(frames, self.patch_shifts[start:stop], self.border)
            else:
                frames = shift_frames(frames, self.shifts[start:stop], self.border, self.opencv)
        if frames.dtype.kind == "f" and self.border == "true":
            np.nan_to_num(frames, copy=False)
        return frames
