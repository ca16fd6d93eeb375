"""The anatomy of a demo movie: tissue texture, dark vessels, neurons and out-of-focus haze."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse

PAD = 8
"""Pixels of canvas around the field, so the tissue can move without showing an edge."""


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Random smooth field scaled to [0, 1]."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def draw_vessels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A few dark, wandering vessels as a soft [0, 1] map."""
    h, w = shape
    canvas = np.zeros(shape, np.float32)
    for _ in range(max(1, round(h * w / 110_000))):
        y, x = rng.uniform(0, h), 0.0
        angle = rng.uniform(-0.6, 0.6)
        if rng.random() < 0.5:
            y, x, angle = 0.0, rng.uniform(0, w), angle + np.pi / 2
        points: list[tuple[float, float]] = []
        while -20 <= y <= h + 20 and -20 <= x <= w + 20 and len(points) < 400:
            points.append((x, y))
            angle += rng.normal(0, 0.08)
            y, x = y + 4 * np.sin(angle), x + 4 * np.cos(angle)
        width = int(rng.integers(4, 9))
        pts = np.round(np.array(points)).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 1.0, thickness=width, lineType=cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(canvas, (0, 0), 1.5), 0, 1)


def out_of_focus(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Static texture of blurred cells above and below the focal plane (moves with the tissue)."""
    h, w = shape
    field = np.zeros(shape, np.float32)
    count = h * w // 150
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    np.add.at(field, (ys, xs), rng.uniform(0.5, 1.5, count).astype(np.float32))
    blurred = cv2.GaussianBlur(field, (0, 0), 4)
    return 12 * blurred / max(float(blurred.max()), 1e-6)


def place_neurons(
    rng: np.random.Generator,
    shape: tuple[int, int],
    count: int,
    vessels: np.ndarray,
    diameter: float,
) -> list[tuple[float, float, float, float, float]]:
    """Ellipses (cy, cx, a, b, angle) off the vessels, neighbours allowed to touch; radii
    spread ±17 % around diameter / 2."""
    h, w = shape
    placed: list[tuple[float, float, float, float, float]] = []
    spacing = max(4.0, 0.86 * diameter)
    edge = PAD + diameter / 2
    for _ in range(count * 200):
        if len(placed) == count:
            break
        radius = diameter / 2 * rng.uniform(0.83, 1.17)
        elong = rng.uniform(0.8, 1.25)
        a, b = radius * elong, radius / elong
        cy, cx = rng.uniform(edge, h - edge), rng.uniform(edge, w - edge)
        if vessels[int(cy), int(cx)] > 0.05:
            continue
        ok = all(
            np.hypot(cy - p[0], cx - p[1]) >= max(spacing, 0.9 * (radius + np.sqrt(p[2] * p[3])))
            for p in placed
        )
        if ok:
            placed.append((cy, cx, a, b, rng.uniform(0, np.pi)))
    return placed


def neuron_footprints(
    neurons: list[tuple[float, float, float, float, float]], shape: tuple[int, int]
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Soft spatial profiles (pixels × neurons) and the hard masks (normalised radius ≤ 1)."""
    h, w = shape
    rows, cols, vals = [], [], []
    masks = np.zeros((len(neurons), h, w), bool)
    for k, (cy, cx, a, b, angle) in enumerate(neurons):
        reach = int(np.ceil(1.4 * max(a, b))) + 1
        y0, y1 = int(max(0, cy - reach)), int(min(h, cy + reach + 1))
        x0, x1 = int(max(0, cx - reach)), int(min(w, cx + reach + 1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
        d2 = u**2 + v**2
        profile = np.exp(-d2 / 0.7) * (d2 < 1.7)
        keep = profile > 0
        rows.append((yy * w + xx)[keep])
        cols.append(np.full(int(keep.sum()), k))
        vals.append(profile[keep])
        masks[k, y0:y1, x0:x1] = d2 <= 1.0
    matrix = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(h * w, len(neurons)),
        dtype=np.float32,
    )
    return matrix, masks


def haze_patches(rng: np.random.Generator, shape: tuple[int, int]) -> sparse.csr_matrix:
    """Irregular out-of-focus blobs 15-40 px across (patches × pixels), each peaking at 1."""
    h, w = shape
    rows, cols, vals = [], [], []
    count = max(1, h * w // 900)
    for k in range(count):
        diameter = rng.uniform(15, 40)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        reach = int(diameter)
        y0, y1 = int(max(0, cy - reach)), int(min(h, cy + reach + 1))
        x0, x1 = int(max(0, cx - reach)), int(min(w, cx + reach + 1))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        profile = np.zeros(yy.shape)
        for _ in range(int(rng.integers(2, 5))):
            oy, ox = rng.normal(0, diameter / 6, 2)
            sigma = diameter / 2.355 * rng.uniform(0.75, 1.0)
            profile += np.exp(-((yy - cy - oy) ** 2 + (xx - cx - ox) ** 2) / (2 * sigma**2))
        profile /= max(profile.max(), 1e-9)
        keep = profile > 0.02
        rows.append(np.full(int(keep.sum()), k))
        cols.append((yy * w + xx)[keep])
        vals.append(profile[keep])
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, h * w),
        dtype=np.float32,
    )
