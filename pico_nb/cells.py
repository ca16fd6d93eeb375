"""A finished run's cells read from its folder: masks, per-cell numbers, lazy ΔF/F traces.

Works from the pipeline's summary.json contract; these keys are needed (paths relative to the
run folder): `files.masks` (label image, 0 = background, k = cell k), `files.dff` (cells × frames
float array, .npy), `params.fr` (frame rate in Hz). Used when present: `files.traces` (raw
fluorescence, for NWB), `files.shifts` (motion CSV: frame, shift_y, shift_x), `result_dir` with
`correlation_image.npy`, `mc/reference.npy` (mean image), `rmbg/max_projection.npy`.
Traces are memory-mapped, so a 1,000 × 20,000 run never sits whole in memory.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from pico_nb.contract.errors import NotFound, ValidationError

ROWS_PER_CHUNK = 64
NOISE_SAMPLES = 4000
"""Frame-to-frame steps per cell whose median estimates its noise (robust, and fast)."""
IMAGES = {
    "mean": "mc/reference.npy",
    "correlation": "{result_dir}/correlation_image.npy",
    "max": "rmbg/max_projection.npy",
}
MATCH_PIXELS = 5.0
"""Centroids closer than this (in pixels) are the same cell in two runs."""


@dataclass(frozen=True)
class CellStats:
    """Per-cell numbers, 0-based arrays (cell k is at index k - 1)."""

    area: np.ndarray
    centre: np.ndarray  # (cells, 2) row, col
    peak: np.ndarray
    snr: np.ndarray
    active: np.ndarray  # fraction of frames above 3 noise levels


@dataclass
class RunCells:
    """One run's segmentation and traces, opened lazily from its folder."""

    root: Path
    summary: dict[str, Any]
    labels: np.ndarray
    dff: np.ndarray  # memory-mapped, cells × frames
    rate: float

    @property
    def count(self) -> int:
        return int(self.dff.shape[0])

    @property
    def frames(self) -> int:
        return int(self.dff.shape[1]) if self.dff.ndim == 2 else 0

    def file(self, key: str) -> Path | None:
        """A path the summary lists under `files`, if it is inside the run folder and exists."""
        listed = self.summary.get("files", {})
        relative = listed.get(key) if isinstance(listed, dict) else None
        return _inside(self.root, relative) if isinstance(relative, str) else None

    def trace(self, cell: int) -> np.ndarray:
        """One cell's ΔF/F (1-based id), read from the memory map."""
        return np.asarray(self.dff[self.check_cell(cell) - 1], np.float32)

    def check_cell(self, cell: int) -> int:
        """Cell ids are 1..count."""
        if isinstance(cell, bool) or not isinstance(cell, int | np.integer):
            raise ValidationError.one("cells", "must be whole cell numbers")
        if not 1 <= int(cell) <= self.count:
            raise ValidationError.one("cells", f"cell {cell} is not in 1..{self.count}")
        return int(cell)

    def image(self, name: str) -> np.ndarray:
        """A background image the size of the masks: mean, correlation or max projection."""
        if not isinstance(name, str) or name not in IMAGES:
            raise ValidationError.one("image", f"must be one of {', '.join(IMAGES)}")
        relative = IMAGES[name].format(result_dir=self.summary.get("result_dir", ""))
        path = _inside(self.root, relative)
        if path is not None:
            data = np.load(path, mmap_mode="r")
            if data.shape == self.labels.shape:
                return np.asarray(data, np.float32)
        return (self.labels > 0).astype(np.float32)

    def motion_rms(self) -> float | None:
        """Root-mean-square motion shift in pixels, from the shifts CSV."""
        path = self.file("shifts")
        if path is None:
            return None
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        except (OSError, ValueError):
            return None
        if table.size == 0 or table.shape[1] < 3:
            return None
        return float(np.sqrt(np.mean(table[:, 1] ** 2 + table[:, 2] ** 2)))


_cache: dict[tuple[str, float], CellStats] = {}
_cache_lock = threading.Lock()


def _inside(root: Path, relative: str) -> Path | None:
    """A file under the run folder, never outside it (symlinks resolved)."""
    if not relative or "\x00" in relative:
        return None
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None
    return target


def open_run(root: Path) -> RunCells:
    """Open a finished run's cells; a clear error when its folder lacks what is needed."""
    summary_path = root / "summary.json"
    try:
        summary = json.loads(summary_path.read_text("utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{root} has no summary.json: the run has not finished") from None
    except (OSError, ValueError) as exc:
        raise NotFound(f"cannot read {summary_path}: {exc}") from None
    if not isinstance(summary, dict):
        raise NotFound(f"{summary_path} is not a JSON object")
    cells = RunCells(root, summary, np.zeros((1, 1), np.int32), np.zeros((0, 0), np.float32), 1.0)
    masks, dff = cells.file("masks"), cells.file("dff")
    if masks is None or dff is None:
        raise NotFound(f"{summary_path} lists no readable files.masks and files.dff")
    try:
        rate = float(summary["params"]["fr"])
    except (KeyError, TypeError, ValueError):
        raise NotFound(f"{summary_path} has no params.fr (frame rate)") from None
    cells.labels = np.asarray(np.load(masks), np.int32)
    cells.dff = np.load(dff, mmap_mode="r")
    if cells.dff.ndim != 2:
        cells.dff = cells.dff.reshape(0, 0)
    cells.rate = rate if rate > 0 else 1.0
    return cells


def stats(cells: RunCells) -> CellStats:
    """Area, centre, peak ΔF/F, SNR and activity per cell; computed once per dff file."""
    path = cells.file("dff")
    key = (str(path), path.stat().st_mtime if path else 0.0)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    n = cells.count
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(cells.labels), cells.labels, index) if n else np.zeros(0)
    centre = (
        np.array(ndimage.center_of_mass(np.ones_like(cells.labels), cells.labels, index))
        if n
        else np.zeros((0, 2))
    ).reshape(-1, 2)
    peak, snr, active = np.zeros(n), np.zeros(n), np.zeros(n)
    for start in range(0, n, ROWS_PER_CHUNK):
        block = np.nan_to_num(np.asarray(cells.dff[start : start + ROWS_PER_CHUNK], np.float32))
        steps = np.abs(np.diff(block, axis=1))
        sample = steps[:, :: max(1, steps.shape[1] // NOISE_SAMPLES)]  # a median needs no more
        noise = 1.4826 * np.median(sample, axis=1) + 1e-9
        peak[start : start + len(block)] = block.max(axis=1) if block.shape[1] else 0
        snr[start : start + len(block)] = peak[start : start + len(block)] / noise
        active[start : start + len(block)] = (block > 3 * noise[:, None]).mean(axis=1)
    result = CellStats(area.astype(int), centre, peak, snr, active)
    with _cache_lock:
        _cache[key] = result
    return result


def outline_png(
    background: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int]]], target: int
) -> tuple[bytes, int]:
    """The background in grey with each label image's outlines in its colour, as PNG.

    Upscaled by a whole factor (towards `target` pixels) so outlines stay one pixel thin.
    Returns the PNG and the scale.
    """
    data = np.nan_to_num(np.asarray(background, np.float32))
    lo, hi = np.percentile(data, [0.5, 99.8]) if data.size else (0.0, 1.0)
    grey = np.clip(255 * (data - lo) / max(hi - lo, 1e-9), 0, 255).astype(np.uint8)
    scale = max(1, round(target / max(grey.shape)))
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for labels, (r, g, b) in layers:
        big = cv2.resize(labels, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        edge = big != ndimage.grey_erosion(big, size=3)
        canvas[edge & (big > 0)] = (b, g, r)
    ok, png = cv2.imencode(".png", canvas)
    if not ok:
        raise ValidationError.one("image", "could not be drawn")
    return png.tobytes(), scale


@dataclass(frozen=True)
class Match:
    """Cells of run A paired with cells of run B by centroid distance."""

    pairs: list[tuple[int, int]]  # 1-based ids (a, b)
    only_a: int
    only_b: int
    correlation: float | None  # median Pearson r of matched traces (same frame count only)


def match(a: RunCells, b: RunCells, max_distance: float = MATCH_PIXELS) -> Match:
    """One-to-one centroid matching (Hungarian), then the traces' correlation per pair."""
    ca, cb = stats(a).centre, stats(b).centre
    pairs: list[tuple[int, int]] = []
    if len(ca) and len(cb):
        distance = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
        rows, cols = linear_sum_assignment(np.minimum(distance, max_distance * 10))
        pairs = [
            (int(r) + 1, int(c) + 1)
            for r, c in zip(rows, cols, strict=True)
            if distance[r, c] <= max_distance
        ]
    correlation = None
    if pairs and a.frames == b.frames and a.frames > 1:
        values = [float(np.corrcoef(a.trace(i), b.trace(j))[0, 1]) for i, j in pairs]
        finite = [v for v in values if np.isfinite(v)]
        correlation = float(np.median(finite)) if finite else None
    return Match(pairs, a.count - len(pairs), b.count - len(pairs), correlation)
