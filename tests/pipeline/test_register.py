"""Registration recovers known sub-pixel shifts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pico_nb.pipeline import register


def textured(shape: tuple[int, int], dy: float = 0.0, dx: float = 0.0, seed: int = 0) -> np.ndarray:
    """A 1-photon-like field of blurred cells on a gradient, rendered exactly at an offset."""
    rng = np.random.default_rng(seed)
    h, w = shape
    count = h * w // 60
    cy, cx = rng.uniform(-10, h + 10, count) + dy, rng.uniform(-10, w + 10, count) + dx
    amp, sigma = rng.uniform(10, 60, count), rng.uniform(1.5, 4, count)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = 80 + 20 * np.sin((yy - dy) / h * 3)
    for a, y, x, s in zip(amp, cy, cx, sigma, strict=True):
        y0, y1 = int(max(0, y - 4 * s)), int(min(h, y + 4 * s + 1))
        x0, x1 = int(max(0, x - 4 * s)), int(min(w, x + 4 * s + 1))
        if y1 > y0 and x1 > x0:
            patch = (yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2
            image[y0:y1, x0:x1] += a * np.exp(-patch / (2 * s * s))
    return image.astype(np.float32)


@pytest.mark.parametrize("size", [128, 512])
def test_rigid_recovers_a_subpixel_shift(size: int) -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(-5, 5, (8, 2))
    frames = np.stack([textured((size, size), *t) for t in truth])
    frames += rng.normal(0, 2, frames.shape).astype(np.float32)
    rigid = register.Rigid((size, size), (20, 20))
    rigid.set_reference(register.shrink(textured((size, size))[None], rigid.scale)[0])
    found = rigid.estimate_small(register.shrink(frames, rigid.scale))
    assert np.abs(found + truth).max() < 0.1


def test_max_shifts_limits_the_search() -> None:
    base = textured((168, 168))
    frame = register.shift_frames(base[None], np.array([[0.0, 7.0]]), "copy", True)[
        :, 20:-20, 20:-20
    ]
    rigid = register.Rigid((128, 128), (2, 2))
    rigid.set_reference(base[20:-20, 20:-20])
    shift = rigid.estimate_small(frame)[0]
    assert np.abs(shift).max() <= 2.0


def test_cubic_shift_matches_opencv_warp() -> None:
    image = textured((64, 64))[None]
    moved = register.shift_frames(image, np.array([[2.3, -1.6]]), "copy", True)[0]
    matrix = np.float32([[1, 0, -1.6], [0, 1, 2.3]])
    expected = cv2.warpAffine(
        image[0], matrix, (64, 64), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    assert np.abs(moved - expected)[3:-3, 3:-3].max() < 1e-3


def test_fourier_shift_round_trip_and_borders() -> None:
    image = textured((64, 64))[None]
    there = register.shift_frames(image, np.array([[1.5, -2.25]]), "min", False)
    back = register.shift_frames(there, np.array([[-1.5, 2.25]]), "min", False)
    assert np.abs(back[0, 8:-8, 8:-8] - image[0, 8:-8, 8:-8]).max() < 1.0
    assert np.abs(there[0, 0] - image.min()).mean() < 3


def test_piecewise_follows_a_field_that_differs_between_halves() -> None:
    left, right = textured((256, 256), 0.0, 1.0), textured((256, 256), 0.0, 3.0)
    frame = np.concatenate([left[:, :128], right[:, 128:]], axis=1)[None]
    reference = textured((256, 256))
    rigid = register.Rigid((256, 256), (10, 10), scale=1)
    rigid.set_reference(reference)
    grid = register.PatchGrid((256, 256), (64, 64), (32, 32))
    piecewise = register.Piecewise(rigid, grid, 3)
    piecewise.set_reference(reference)
    patches = piecewise.estimate_small(frame, rigid.estimate_small(frame))[0]
    assert patches.shape == (*grid.grid, 2)
    assert np.median(patches[:, 0, 1]) == pytest.approx(-1.0, abs=0.2)
    assert np.median(patches[:, -1, 1]) == pytest.approx(-3.0, abs=0.2)
    moved = register.warp_frames(frame, patches[None], "copy")[0]
    assert (
        np.abs(moved - reference)[8:-8, 8:40].mean()
        < np.abs(frame[0] - reference)[8:-8, 8:40].mean() / 3
    )
