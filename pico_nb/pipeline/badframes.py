"""Finding corrupted frames (black, torn, saturated) from small thumbnails and replacing them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

THUMB = 16
_WINDOW = 21
_Z_LIMIT = 8.0


def _blocks(side: int) -> tuple[np.ndarray, np.ndarray]:
    """THUMB block [start, stop) edges along a side, each at least one pixel wide."""
    start = np.arange(THUMB) * side // THUMB
    return start, np.maximum(start + 1, (np.arange(THUMB) + 1) * side // THUMB)


def thumbnails(frames: np.ndarray) -> np.ndarray:
    """16×16 block means per frame: enough to see a tear or a dropout, tiny to keep for all.

    Column sums of each band of rows, then differences of their running sums: six times
    cheaper than an area resize to a size that does not divide the frame, and without the
    frame-sized temporaries of an integral image, whose fresh pages cost as much again.
    NaN pixels count as 0, as in frame_sum: in a running sum one would blank its whole band."""
    (top, bottom), (left, right) = _blocks(frames.shape[1]), _blocks(frames.shape[2])
    area = np.outer(bottom - top, right - left)
    exact = np.uint32 if frames.dtype in (np.uint8, np.uint16) else np.float64
    add = np.nansum if frames.dtype.kind == "f" else np.sum
    out = np.empty((len(frames), THUMB, THUMB), np.float32)
    running = np.zeros((THUMB, frames.shape[2] + 1))
    for i, frame in enumerate(frames):
        bands = [add(frame[t:b], axis=0, dtype=exact) for t, b in zip(top, bottom, strict=True)]
        np.cumsum(bands, axis=1, out=running[:, 1:])
        out[i] = (running[:, right] - running[:, left]) / area
    return out


def saturation(frames: np.ndarray) -> np.ndarray:
    """Fraction of pixels at the top of the integer range (or at the float maximum) per frame."""
    top = np.iinfo(frames.dtype).max if frames.dtype.kind in "ui" else frames.max()
    flat = frames.reshape(len(frames), -1)
    out = np.zeros(len(frames))
    for i in np.flatnonzero(flat.max(axis=1) >= top):
        out[i] = np.count_nonzero(flat[i] >= top) / flat.shape[1]
    return out


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Distance from the median in units of the median absolute deviation."""
    centre = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - centre))
    return (values - centre) / max(spread, 1e-6 * max(abs(centre), 1.0))


def detect(thumbs: np.ndarray, saturated: np.ndarray) -> np.ndarray:
    """Indices of corrupted frames.

    Each thumbnail is compared with the running median of its neighbours, so slow drift and
    motion pass while a frame that suddenly differs in any band of rows (a tear) or as a
    whole (black, saturated) stands out.
    """
    n = len(thumbs)
    if n < 3:
        return np.zeros(0, int)
    window = min(_WINDOW, n if n % 2 else n - 1)
    reference = ndimage.median_filter(thumbs, size=(window, 1, 1), mode="nearest")
    band_error = np.abs(thumbs - reference).mean(axis=2).max(axis=1)
    level = np.median(thumbs.mean(axis=(1, 2)))
    strong = band_error > 0.05 * max(level, 1e-6)
    bad = (_robust_z(band_error) > _Z_LIMIT) & strong
    bad |= saturated > 0.5
    bad |= thumbs.mean(axis=(1, 2)) < 0.1 * level
    return np.flatnonzero(bad)


def nearest_good(n_frames: int, bad: np.ndarray) -> dict[int, int]:
    """For each bad frame, the closest good frame (the earlier one on a tie)."""
    good = np.setdiff1d(np.arange(n_frames), bad)
    if not len(good):
        return {}
    out = {}
    for index in bad:
        pos = int(np.searchsorted(good, index))
        candidates = [good[p] for p in (pos - 1, pos) if 0 <= p < len(good)]
        out[int(index)] = int(min(candidates, key=lambda g: (abs(g - index), g)))
    return out
