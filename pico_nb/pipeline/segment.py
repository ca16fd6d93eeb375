"""Finding neurons from their activity in the background-removed, temporally binned movie.

Per tile: pixel traces lose everything slower than a calcium transient (a running
minimum-then-maximum, i.e. a morphological top-hat over a few seconds, so slowly active
out-of-focus haze drops out while transients stay), are detrended and normalised; the
local-correlation image (how much each pixel's trace agrees with its neighbours') times
the peak-to-noise image gives
a neuron probability map; its local maxima are seeds; each seed grows into the connected
region of pixels whose traces correlate with the seed's. Regions are filtered by area and
shape and merged when their centres are closer than thresh_COM0 (same tile) or
thresh_COM (neighbouring tiles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import cv2
import numpy as np
from scipy import ndimage

from pico_nb.pipeline.store import converted

_DETREND_BINS = 40
_FLOOR_MADS = 6
_MIN_SOLIDITY = 0.6
BASELINE_SECONDS = 3.5
MIN_BLOB = 9
"""Smallest region (a 3×3 block) counted as a possible cell when minArea rejects it."""


@dataclass
class Candidate:
    """One neuron: its pixels (rows, cols in the frame), centre, and seed strength."""

    rows: np.ndarray
    cols: np.ndarray
    score: float
    tile: int
    centre: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.centre = np.array([self.rows.mean(), self.cols.mean()])

    def absorb(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Merge another region into this neuron."""
        self.rows = np.concatenate([self.rows, rows])
        self.cols = np.concatenate([self.cols, cols])
        self.__post_init__()

    @property
    def area(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class SegParams:
    """The flags segmentation reads, with the derived neuron radius."""

    gsize: int
    min_area: int
    avg_area: int
    thresh_pmap: int
    thresh_mask: float
    thresh_com0: float
    thresh_com: float
    pixel_size: int
    patch_size: int


def tiles(
    shape: tuple[int, int], patch: int, margin: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(core, span) per tile as (y0, y1, x0, x1): equal cores of at most patch pixels a side,
    spans grown by margin so neurons on a core's edge are seen whole."""
    h, w = shape
    ny, nx = -(-h // patch), -(-w // patch)
    ys = np.linspace(0, h, ny + 1).round().astype(int)
    xs = np.linspace(0, w, nx + 1).round().astype(int)
    out = []
    for y0, y1 in pairwise(ys.tolist()):
        for x0, x1 in pairwise(xs.tolist()):
            core = (y0, y1, x0, x1)
            span = (
                max(0, y0 - margin),
                min(h, y1 + margin),
                max(0, x0 - margin),
                min(w, x1 + margin),
            )
            out.append((core, span))
    return out


def baseline_window(bin_frames: int, fr: float) -> int:
    """Bins in the top-hat's window: about 3.5 s, longer than a transient, shorter than haze."""
    return max(3, round(BASELINE_SECONDS * fr / bin_frames))


def normalise(movie: np.ndarray, window: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm traces above their running baseline, and the peak-to-noise image.

    A slight spatial smoothing (σ 0.7 px) averages shot noise without merging neighbours;
    noise is the mean absolute bin-to-bin difference (√π/2 of it is σ for Gaussian noise),
    which a neuron's slow transients barely inflate; the peak is taken over pairs of bins.
    """
    data = converted(movie, np.float32)
    data = data.copy() if data is movie else data  # normalised in place
    if window < len(data):
        flat = data.reshape(len(data), -1)  # rows are bins: a vertical kernel runs in time
        kernel = np.ones((window, 1), np.uint8)
        base = cv2.erode(flat, kernel)
        flat -= cv2.dilate(base, kernel, dst=base)
    _remove_slow_trend(data, _DETREND_BINS // 2)
    for i in range(len(data)):
        data[i] = cv2.GaussianBlur(data[i], (0, 0), 0.7)
    steps = np.zeros(data.shape[1:], np.float32)
    peak = np.full(data.shape[1:], -np.inf, np.float32)
    for i in range(1, len(data)):
        steps += np.abs(data[i] - data[i - 1])
        np.maximum(peak, 0.5 * (data[i] + data[i - 1]), out=peak)
    noise = steps / max(1, len(data) - 1) * np.sqrt(np.pi) / 2
    pnr = peak / (noise + 1e-6)
    data -= data.mean(axis=0)
    data /= np.sqrt(np.einsum("tij,tij->ij", data, data)) + 1e-9
    return data, pnr


def _remove_slow_trend(data: np.ndarray, block: int) -> None:
    """Subtract each pixel's slow drift in place: block means, linearly interpolated."""
    n = len(data)
    block = max(1, min(block, n))
    starts = np.arange(0, n, block)
    means = np.stack([data[s : s + block].mean(axis=0) for s in starts])
    centres = starts + (np.minimum(starts + block, n) - starts - 1) / 2
    for t in range(n):
        if len(centres) == 1:
            data[t] -= means[0]
            continue
        k = int(np.clip(np.searchsorted(centres, t) - 1, 0, len(centres) - 2))
        a = float(np.clip((t - centres[k]) / (centres[k + 1] - centres[k]), 0, 1))
        data[t] -= (1 - a) * means[k] + a * means[k + 1]


def local_correlation(z: np.ndarray) -> np.ndarray:
    """Mean correlation of each pixel with its eight neighbours (z has unit-norm traces)."""
    h, w = z.shape[1:]
    total = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
        prod = np.einsum("tij,tij->ij", z[:, a[0], a[1]], z[:, b[0], b[1]])
        total[a] += prod
        total[b] += prod
        count[a] += 1
        count[b] += 1
    return total / count


def probability_map(corr: np.ndarray, pnr: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """corr × pnr rescaled to 0-255 with the field's noise floor at 0; the scale is set by
    the usable pixels only, so flickering borders or vessels cannot compress it."""
    score = np.clip(corr, 0, None) * pnr
    values = score[usable] if usable.any() else score.ravel()
    centre = np.median(values)
    floor = centre + _FLOOR_MADS * 1.4826 * np.median(np.abs(values - centre))
    top = np.percentile(values, 99.9)
    return np.clip(255 * (score - floor) / max(top - floor, 1e-9), 0, 255)


def _grow(
    z: np.ndarray,
    seed: tuple[int, int],
    radius: int,
    level: float,
    taken: np.ndarray,
    max_area: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Connected pixels around the seed whose traces correlate with the seed's."""
    h, w = z.shape[1:]
    sy, sx = seed
    y0, y1 = max(0, sy - radius), min(h, sy + radius + 1)
    x0, x1 = max(0, sx - radius), min(w, sx + radius + 1)
    window = z[:, y0:y1, x0:x1]
    centre = z[:, max(0, sy - 1) : sy + 2, max(0, sx - 1) : sx + 2].mean(axis=(1, 2))
    centre /= np.linalg.norm(centre) + 1e-9
    corr = np.einsum("tij,t->ij", window, centre)
    ly, lx = sy - y0, sx - x0
    peak = corr[max(0, ly - 1) : ly + 2, max(0, lx - 1) : lx + 2].max()
    free = ~taken[y0:y1, x0:x1]
    for threshold in np.arange(level, 0.96, 0.05):
        labels, _ = ndimage.label((corr >= threshold * peak) & free)
        if labels[ly, lx] == 0:
            return None
        region = ndimage.binary_fill_holes(labels == labels[ly, lx]) & free
        if region.sum() <= max_area:
            rows, cols = np.nonzero(region)
            return rows + y0, cols + x0
    return None


def _solidity(rows: np.ndarray, cols: np.ndarray) -> float:
    """Area over convex-hull area: low for ragged or branching regions."""
    points = np.stack([cols, rows], axis=1).astype(np.int32)
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points)
    hull_area = cv2.contourArea(hull) + 0.5 * cv2.arcLength(hull, True) + 1
    return len(points) / hull_area


def segment_tile(
    z: np.ndarray,
    pmap: np.ndarray,
    exclude: np.ndarray,
    p: SegParams,
    offset: tuple[int, int],
    tile: int,
) -> tuple[list[Candidate], list[Candidate]]:
    """Candidates in one tile, strongest seed first, merged within thresh_COM0; and the
    cell-shaped regions minArea turned away (to tell the user when it is set too high)."""
    size = 2 * max(1, round(p.gsize * 0.75 / p.pixel_size)) + 1
    binned = (
        cv2.resize(
            pmap, None, fx=1 / p.pixel_size, fy=1 / p.pixel_size, interpolation=cv2.INTER_AREA
        )
        if p.pixel_size > 1
        else pmap
    )
    peaks = (binned == ndimage.maximum_filter(binned, size=size)) & (binned > p.thresh_pmap)
    seeds = []
    for by, bx in zip(*np.nonzero(peaks), strict=True):
        y0, x0 = by * p.pixel_size, bx * p.pixel_size
        block = pmap[y0 : y0 + p.pixel_size, x0 : x0 + p.pixel_size]
        dy, dx = np.unravel_index(block.argmax(), block.shape)
        if not exclude[y0 + dy, x0 + dx]:
            seeds.append((float(block.max()), y0 + dy, x0 + dx))
    seeds.sort(reverse=True)
    taken = np.zeros(pmap.shape, bool)
    found: list[Candidate] = []
    small: list[Candidate] = []
    radius = 3 * p.gsize
    for score, sy, sx in seeds:
        if taken[sy, sx]:
            continue
        grown = _grow(z, (sy, sx), radius, p.thresh_mask, taken, 2.5 * p.avg_area)
        if grown is None:
            continue
        rows, cols = grown
        centre = np.array([rows.mean(), cols.mean()])
        near = [c for c in found if np.hypot(*(c.centre - centre - offset)) < p.thresh_com0]
        if not near and not _acceptable(rows, cols, p):
            if MIN_BLOB <= len(rows) < p.min_area and _solidity(rows, cols) >= _MIN_SOLIDITY:
                small.append(Candidate(rows + offset[0], cols + offset[1], score, tile))
            continue  # rejected regions must not block the pixels of real neurons
        taken[rows, cols] = True
        rows, cols = rows + offset[0], cols + offset[1]
        if near:
            near[0].absorb(rows, cols)
        else:
            found.append(Candidate(rows, cols, score, tile))
    return [c for c in found if _acceptable(c.rows, c.cols, p)], small


def _acceptable(rows: np.ndarray, cols: np.ndarray, p: SegParams) -> bool:
    """Large enough (minArea) and compact enough to be a cell body."""
    return len(rows) >= p.min_area and _solidity(rows, cols) >= _MIN_SOLIDITY


def merge_tiles(candidates: list[Candidate], thresh_com: float) -> list[Candidate]:
    """One neuron per cell across tiles: from different tiles, closer than thresh_COM merge."""
    kept: list[Candidate] = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        twin = next(
            (
                k
                for k in kept
                if k.tile != cand.tile and np.hypot(*(k.centre - cand.centre)) < thresh_com
            ),
            None,
        )
        if twin is None:
            kept.append(cand)
    return kept


def label_image(candidates: list[Candidate], shape: tuple[int, int]) -> np.ndarray:
    """Label image 1..N; where masks overlap the stronger neuron keeps the pixel."""
    labels = np.zeros(shape, np.int32)
    for k, cand in sorted(enumerate(candidates, 1), key=lambda item: item[1].score):
        labels[cand.rows, cand.cols] = k
    return labels
