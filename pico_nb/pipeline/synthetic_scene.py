"""Rendering a demo movie's frames from its scene, chunk by chunk in parallel, to JPEG or TIFF."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import sparse

from pico_nb.pipeline.register import cubic_shift
from pico_nb.pipeline.store import DiskStack
from pico_nb.pipeline.synthetic_activity import corrupt
from pico_nb.pipeline.synthetic_anatomy import PAD

_CHUNK = 50
_GAIN = 0.4
_READ_NOISE = 2.0
_UNIFORM_TO_UNIT = np.float32(
    np.sqrt(12)
)  # uniform noise with unit variance, 5× faster than normal


@dataclass
class Scene:
    """Everything needed to render any frame range independently (so chunks run in parallel)."""

    canvas: tuple[int, int]
    size: tuple[int, int]
    spatial: np.ndarray
    temporal: np.ndarray
    support: np.ndarray
    cells: np.ndarray
    signals: np.ndarray
    darkening: np.ndarray
    shifts: np.ndarray
    bad: dict[int, str]
    seed: int
    vignetting: float = 1.4
    haze: sparse.csr_matrix | None = None
    haze_signals: np.ndarray | None = None
    pulse: np.ndarray | None = None
    vessel_map: np.ndarray | None = None

    def render(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as the camera would deliver them (uint8)."""
        rng = np.random.default_rng([self.seed, start])
        h, w = self.size
        weights = self.temporal[start:stop]
        light = weights[:, :1] * self.spatial[0]
        for k in range(1, len(self.spatial)):
            light += weights[:, k : k + 1] * self.spatial[k]
        light[:, self.support] += self.signals[start:stop] @ self.cells
        if self.haze is not None and self.haze_signals is not None:
            light += (self.haze.T @ self.haze_signals[start:stop].T).T
        light *= self.darkening
        if self.pulse is not None:
            light -= self.pulse[start:stop, None] * self.vessel_map * light
        light = light.reshape(stop - start, *self.canvas)
        yy, xx = np.mgrid[0:h, 0:w]
        vignette = 1 - self.vignetting * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
        vignette = vignette.astype(np.float32)
        chunk = np.empty((stop - start, h, w), np.uint8)
        spread = np.empty((h, w), np.float32)
        for i, image in enumerate(light):
            dy, dx = self.shifts[start + i]
            moved = cubic_shift(image, dy, dx, "copy")[PAD : PAD + h, PAD : PAD + w]
            moved *= vignette
            np.maximum(moved, 0, out=spread)
            spread *= _GAIN
            spread += _READ_NOISE**2
            np.sqrt(spread, out=spread)
            spread *= rng.random((h, w), dtype=np.float32) - 0.5
            spread *= _UNIFORM_TO_UNIT
            moved += spread
            chunk[i] = cv2.convertScaleAbs(cv2.max(moved, 0.0))
            if start + i in self.bad:
                chunk[i] = corrupt(chunk[i], self.bad[start + i], rng)
        return chunk


def write_movie(scene: Scene, out: Path, fmt: str, frames: int) -> None:
    """Render in parallel chunks and write frame_N.jpg files and/or one TIFF stack."""
    h, w = scene.size
    stack = None
    if fmt in ("tiff", "both"):
        stack = DiskStack.create(out / "movie.tif", (frames, h, w), np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95]

    def job(span: tuple[int, int]) -> None:
        chunk = scene.render(*span)
        if stack is not None:
            stack.write(span[0], chunk)
        if fmt in ("jpg", "both"):
            for i, frame in enumerate(chunk):
                cv2.imwrite(str(out / f"frame_{span[0] + i}.jpg"), frame, params)

    spans = [(a, min(frames, a + _CHUNK)) for a in range(0, frames, _CHUNK)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(job, spans))
