"""Writing results: PNG previews drawn with OpenCV, MATLAB files, open formats, videos."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import io as sio
from scipy import ndimage

_COLOURS = [
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def to_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Contrast-stretched 8-bit copy (percentiles, so a few hot pixels do not wash it out)."""
    data = np.nan_to_num(np.asarray(image, np.float32))
    lo, hi = np.percentile(data, [low, high])
    return np.clip(255 * (data - lo) / max(hi - lo, 1e-9), 0, 255).astype(np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """PNG of any 2-D array (stretched) or 8-bit colour image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def label_pixels(labels: np.ndarray) -> list[np.ndarray]:
    """Flat pixel indices of each neuron 1..N in a label image, in one sort."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, int(labels.max()) + 2))
    return [order[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def outlines(background: np.ndarray, labels: np.ndarray, numbers: bool = True) -> np.ndarray:
    """Neuron contours in colour over a grey image, numbered like the trace plots."""
    canvas = cv2.cvtColor(to_uint8(background), cv2.COLOR_GRAY2BGR)
    scale = max(1, round(512 / max(labels.shape)))
    if scale > 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for k, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        mask = np.pad((labels[box] == k).astype(np.uint8), 1)
        if scale > 1:
            mask = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        offset = ((box[1].start - 1) * scale, (box[0].start - 1) * scale)
        contours, _ = cv2.findContours(
            mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=offset
        )
        colour = _COLOURS[(k - 1) % len(_COLOURS)]
        cv2.drawContours(canvas, contours, -1, colour, 1)
        if numbers and contours:
            x, y, _, _ = cv2.boundingRect(contours[0])
            cv2.putText(canvas, str(k), (x, max(8, y - 1)), _FONT, 0.3, colour, 1, cv2.LINE_AA)
    return canvas


def side_by_side(images: Sequence[np.ndarray], titles: Sequence[str]) -> np.ndarray:
    """Panels of equal height with a title strip, e.g. SEG_SUM.png."""
    height = max(i.shape[0] for i in images)
    panels = []
    for image, title in zip(images, titles, strict=True):
        panel = image if image.ndim == 3 else cv2.cvtColor(to_uint8(image), cv2.COLOR_GRAY2BGR)
        panel = cv2.resize(
            panel,
            (round(panel.shape[1] * height / panel.shape[0]), height),
            interpolation=cv2.INTER_NEAREST,
        )
        strip = np.zeros((24, panel.shape[1], 3), np.uint8)
        cv2.putText(strip, title, (6, 17), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(np.vstack([strip, panel]))
    return np.hstack(panels)


def plot_series(
    series: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    rate: float,
    title: str,
    stacked: bool,
    width: int = 1000,
    row: int = 70,
) -> np.ndarray:
    """Line plot of traces against time in seconds: one row each (stacked) or overlaid."""
    rows = len(series) if stacked else 1
    top, left, bottom = 28, 70, 26
    height = top + bottom + rows * row
    canvas = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(canvas, title, (left, 19), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    plot_w = width - left - 10
    length = max(len(s) for s in series) if series else 1
    everything = np.concatenate([np.asarray(s, float) for s in series]) if series else np.zeros(1)
    shared = np.nanmin(everything), np.nanmax(everything)
    for i, (values, name) in enumerate(zip(series, names, strict=True)):
        values = np.nan_to_num(np.asarray(values, float))
        lo, hi = (values.min(), values.max()) if stacked else shared
        band = i if stacked else 0
        y_base = top + (band + 1) * row - 6
        ys = y_base - (values - lo) / max(hi - lo, 1e-9) * (row - 12)
        xs = left + np.arange(len(values)) * plot_w / max(length - 1, 1)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        colour = (0, 0, 0) if stacked else tuple(int(c * 0.7) for c in _COLOURS[i % len(_COLOURS)])
        cv2.polylines(canvas, [points], False, colour, 1, cv2.LINE_AA)
        label_y = y_base - row // 2 if stacked else top + 14 * (i + 1)
        cv2.putText(canvas, name, (4, label_y), _FONT, 0.4, colour, 1, cv2.LINE_AA)
    seconds = length / rate
    for tick in np.linspace(0, seconds, 6):
        x = int(left + tick / max(seconds, 1e-9) * plot_w)
        cv2.line(canvas, (x, height - bottom), (x, height - bottom + 4), (0, 0, 0), 1)
        cv2.putText(canvas, f"{tick:.0f}s", (x - 10, height - 6), _FONT, 0.35, (0, 0, 0), 1)
    return canvas


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, quality: int) -> None:
    """Motion-JPEG AVI of 8-bit frames at the given JPEG quality (0-100)."""
    writer = None
    for frame in frames:
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h), False)
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, max(1, quality))
        writer.write(frame)
    if writer is not None:
        writer.release()


def write_mat(path: Path, data: dict[str, Any]) -> None:
    """A MATLAB .mat file as the original pipeline writes."""
    sio.savemat(str(path), data)


def neurofinder_rois(labels: np.ndarray) -> list[dict[str, Any]]:
    """Regions in the Neurofinder JSON format: [{"id", "coordinates": [[row, col], ...]}]."""
    width = labels.shape[1]
    return [
        {"id": k, "coordinates": np.stack(np.divmod(pixels, width), axis=1).tolist()}
        for k, pixels in enumerate(label_pixels(labels), 1)
    ]


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent), "utf-8")
    os.replace(tmp, path)


def write_csv(path: Path, header: Sequence[str], rows: np.ndarray, fmt: str) -> None:
    """A small CSV with a header line."""
    np.savetxt(path, rows, delimiter=",", header=",".join(header), comments="", fmt=fmt)
