"""Fluorescence traces per neuron: raw, neuropil-corrected, and ΔF/F with a sliding baseline."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage, sparse

NEUROPIL_FACTOR = 0.7


def mask_matrix(labels: np.ndarray) -> sparse.csr_matrix:
    """(neurons × pixels) averaging weights, so one sparse product gives every mean trace."""
    flat = labels.ravel()
    pixels = np.flatnonzero(flat)
    ids = flat[pixels] - 1
    count = int(labels.max())
    area = np.bincount(ids, minlength=count).astype(np.float32)
    return sparse.csr_matrix((1 / area[ids], (ids, pixels)), shape=(count, flat.size))


def neuropil_matrix(labels: np.ndarray, gsize: int) -> sparse.csr_matrix:
    """(neurons × pixels) averaging weights over a ring around each neuron, clear of all cells."""
    count = int(labels.max())
    h, w = labels.shape
    cells = cv2.dilate((labels > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    outer = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * gsize + 1, 4 * gsize + 1))
    inner = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    rows, cols = [], []
    for k, found in enumerate(ndimage.find_objects(labels), 1):
        if found is None:
            continue
        pad = 2 * gsize + 2
        y0, y1 = max(0, found[0].start - pad), min(h, found[0].stop + pad)
        x0, x1 = max(0, found[1].start - pad), min(w, found[1].stop + pad)
        own = (labels[y0:y1, x0:x1] == k).astype(np.uint8)
        ring = (cv2.dilate(own, outer) > 0) & ~(cv2.dilate(own, inner) > 0) & ~cells[y0:y1, x0:x1]
        ys, xs = np.nonzero(ring)
        rows.append(np.full(len(ys), k - 1))
        cols.append((ys + y0) * w + xs + x0)
    rows_all = np.concatenate(rows) if rows else np.zeros(0, int)
    cols_all = np.concatenate(cols) if cols else np.zeros(0, int)
    area = np.maximum(np.bincount(rows_all, minlength=count), 1).astype(np.float32)
    return sparse.csr_matrix((1 / area[rows_all], (rows_all, cols_all)), shape=(count, h * w))


def sliding_baseline(traces: np.ndarray, fr: float) -> np.ndarray:
    """Baseline that follows slow drift but not transients: smooth, running min, running max."""
    smooth = ndimage.gaussian_filter1d(traces, sigma=max(1.0, fr), axis=1, mode="nearest")
    window = int(min(traces.shape[1], max(3, 60 * fr)))
    low = ndimage.minimum_filter1d(smooth, window, axis=1, mode="nearest")
    return ndimage.maximum_filter1d(low, window, axis=1, mode="nearest")


def delta_f_over_f(raw: np.ndarray, corrected: np.ndarray, fr: float) -> np.ndarray:
    """(F − F0) / F0 with the corrected trace's baseline on top and the raw one below.

    After neuropil subtraction the baseline of a 1-photon trace can be near zero, so the
    denominator is the baseline of the raw trace, which stays positive.
    """
    f0 = sliding_baseline(corrected, fr)
    f0_raw = np.maximum(sliding_baseline(raw, fr), 1e-3)
    return (corrected - f0) / f0_raw


def longest_active_run(dff: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Per neuron, the longest run of frames more than 2.5 noise levels above baseline."""
    good_dff = dff[:, good]
    noise = 1.4826 * np.median(np.abs(np.diff(good_dff, axis=1)), axis=1) / np.sqrt(2)
    smooth = ndimage.uniform_filter1d(dff, 3, axis=1)
    active = smooth > 2.5 * noise[:, None]
    longest = np.zeros(len(dff), int)
    for k, row in enumerate(active):
        padded = np.concatenate(([0], row.astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(padded))
        if len(edges):
            longest[k] = int((edges[1::2] - edges[::2]).max())
    return longest
