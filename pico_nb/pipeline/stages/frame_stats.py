"""Per-frame sums and the good-frame mask that several stages share."""

from __future__ import annotations

from typing import Any

import numpy as np


def frame_sum(frames: np.ndarray) -> np.ndarray:
    """Sum over frames: exact integer sums for integer movies, NaN borders count as 0."""
    if frames.dtype.kind in "ui":
        return frames.sum(axis=0, dtype=np.uint64 if frames.itemsize > 1 else np.uint32)
    total = np.zeros(frames.shape[1:], np.float32)
    for frame in frames:
        total += np.nan_to_num(frame)
    return total


def good_frames(info: dict[str, Any]) -> np.ndarray:
    """True for frames that were not corrupted."""
    good = np.ones(info["frames"], bool)
    good[np.array(info["bad_frames"], int)] = False
    return good
