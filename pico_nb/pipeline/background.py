"""Classical background removal: a ring filter in place of the original's GPU network.

In 1-photon movies every pixel sees out-of-focus fluorescence and neuropil haze that
vary smoothly in space. The background at a pixel is estimated from a ring around it
(between 2 and 3 neuron radii, so a neuron never counts towards its own background, as
in CNMF-E's ring model) on a coarse grid, and subtracted.

Out-of-focus patches only two or three cells across survive a ring that wide, so the
result is then band-passed at the cell scale (a difference of Gaussians, the centre-
surround filter CNMF-E applies before its correlation image): a structure much larger
than a neuron keeps little of its amplitude, a neuron keeps most of its own.
"""

from __future__ import annotations

import cv2
import numpy as np


def grid_step(gsize: int, up_sample: int) -> int:
    """Spacing in pixels of the coarse grid the background is estimated on."""
    return max(1, round(gsize / up_sample))


def ring_kernel(gsize: int, step: int) -> np.ndarray:
    """Normalised ring between 2·gsize and 3·gsize pixels, in grid units."""
    inner, outer = 2 * gsize / step, 3 * gsize / step
    half = int(np.ceil(outer))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radius = np.hypot(yy, xx)
    ring = ((radius >= inner) & (radius <= outer)).astype(np.float32)
    return ring / ring.sum()


SURROUND = 2 / 3
"""Surround σ of the band-pass in units of rmbg_gsize (the neuron radius)."""
CENTRE = 1.0
"""Centre σ in pixels: averages shot noise, narrower than any neuron."""


def remove_background(frames: np.ndarray, gsize: int, up_sample: int) -> np.ndarray:
    """Frames minus their ring-filtered background, band-passed at the cell scale (float32)."""
    step = grid_step(gsize, up_sample)
    kernel = ring_kernel(gsize, step)
    h, w = frames.shape[1:]
    small_size = (max(1, w // step), max(1, h // step))
    out = np.empty(frames.shape, np.float32)
    for i, frame in enumerate(frames):
        image = np.asarray(frame, np.float32)
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        ring = cv2.filter2D(small, -1, kernel, borderType=cv2.BORDER_REFLECT)
        image -= cv2.resize(ring, (w, h), interpolation=cv2.INTER_LINEAR)
        out[i] = cv2.GaussianBlur(image, (0, 0), CENTRE)
        out[i] -= cv2.GaussianBlur(image, (0, 0), SURROUND * gsize)
    return out
