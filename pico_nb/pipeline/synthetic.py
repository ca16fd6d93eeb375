"""Demo movies with ground truth: recordings whose answer is known.

Neurons of varied shape, size and brightness (some touching) fire calcium transients on
top of a strong, uneven, slowly drifting background with neuropil and dark vessels; the
tissue moves by a sub-pixel random walk; shot and read noise are added; a few frames
are corrupted. `ground_truth.npz` holds what a pipeline should recover.

Two modes: "two-photon" (the default: a mild, slowly drifting haze) and "one-photon",
where out-of-focus fluorescence about 3× the cells' resting brightness sits in broad
patches (15-40 px) with their own slow activity, vessels pulse at about 1 Hz, and the
vignetting is stronger, as in a miniscope recording.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import signal, sparse

from pico_nb.pipeline.register import _cubic_shift
from pico_nb.pipeline.store import DiskStack

PAD = 8
MAX_SHIFT = 5.0
_CHUNK = 50
_GAIN = 0.4
_READ_NOISE = 2.0
_UNIFORM_TO_UNIT = np.float32(
    np.sqrt(12)
)  # uniform noise with unit variance, 5× faster than normal


MODES = ("two-photon", "one-photon")
DEFAULT_DIAMETER = 11.6


def default_neurons(size: tuple[int, int]) -> int:
    """About 150 neurons in a 512×512 field, the density of a typical 1-photon recording."""
    return max(1, round(size[0] * size[1] / 1750))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Random smooth field scaled to [0, 1]."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _vessels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
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


def _out_of_focus(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Static texture of blurred cells above and below the focal plane (moves with the tissue)."""
    h, w = shape
    field = np.zeros(shape, np.float32)
    count = h * w // 150
    ys, xs = rng.integers(0, h, count), rng.integers(0, w, count)
    np.add.at(field, (ys, xs), rng.uniform(0.5, 1.5, count).astype(np.float32))
    blurred = cv2.GaussianBlur(field, (0, 0), 4)
    return 12 * blurred / max(float(blurred.max()), 1e-6)


def _place_neurons(
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


def _footprints(
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


def _calcium(rng: np.random.Generator, count: int, frames: int, fr: float) -> np.ndarray:
    """Spike trains filtered by a fast rise and an exponential decay, one row per neuron."""
    rates = rng.uniform(0.15, 0.6, count) / fr
    spikes = (rng.random((count, frames)) < rates[:, None]).astype(np.float32)
    for k in range(count):
        if spikes[k].sum() < 3:
            spikes[k, rng.choice(frames, 3, replace=False)] = 1
    spikes *= rng.lognormal(0, 0.35, spikes.shape).astype(np.float32)
    out = np.empty_like(spikes)
    lags = np.arange(int(10 * fr) + 2)
    rise = np.exp(-1 / (0.08 * fr))
    for k in range(count):
        decay = np.exp(-1 / (rng.uniform(0.5, 1.0) * fr))
        unit_peak = (decay**lags - rise**lags).max()
        slow = signal.lfilter([1], [1, -decay], spikes[k])
        fast = signal.lfilter([1], [1, -rise], spikes[k])
        out[k] = (slow - fast) / unit_peak
    return out


def _haze_patches(rng: np.random.Generator, shape: tuple[int, int]) -> sparse.csr_matrix:
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


def _slow_activity(rng: np.random.Generator, count: int, frames: int, fr: float) -> np.ndarray:
    """Slow fluctuations (events rising over ~1 s, decaying over 3-6 s), mean 1, std ~0.5."""
    events = (rng.random((count, frames)) < rng.uniform(0.05, 0.15, (count, 1)) / fr).astype(
        np.float32
    )
    out = np.empty_like(events)
    rise = np.exp(-1 / fr)
    for k in range(count):
        decay = np.exp(-1 / (rng.uniform(3, 6) * fr))
        slow = signal.lfilter([1], [1, -decay], events[k])
        out[k] = slow - signal.lfilter([1], [1, -rise], events[k])
    out -= out.mean(axis=1, keepdims=True)
    out /= out.std(axis=1, keepdims=True) + 1e-6
    return np.clip(1 + 0.5 * out, 0.2, None).astype(np.float32)


def _heartbeat(rng: np.random.Generator, frames: int, fr: float) -> np.ndarray:
    """Vessel pulsation: a ~1 Hz oscillation whose rate wanders by ±20 %."""
    rate = rng.uniform(0.85, 1.15) * (1 + 0.2 * _smooth_walk(rng, frames))
    phase = 2 * np.pi * np.cumsum(rate) / fr
    return np.sin(phase + rng.uniform(0, 2 * np.pi)).astype(np.float32)


def _smooth_walk(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A slow random wander in [-1, 1]."""
    walk = np.convolve(rng.normal(0, 1, frames + 200), np.ones(200) / 200, "same")[100:-100]
    return walk / max(float(np.abs(walk).max()), 1e-9)


def _motion(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A mean-free, bounded sub-pixel random walk of the tissue (y, x) per frame."""
    steps = rng.normal(0, 0.22, (frames, 2))
    walk = np.zeros((frames, 2))
    for t in range(1, frames):
        walk[t] = 0.97 * walk[t - 1] + steps[t]
    walk -= walk.mean(axis=0)
    return np.clip(walk, -MAX_SHIFT, MAX_SHIFT)


def _corruption_plan(rng: np.random.Generator, frames: int) -> dict[int, str]:
    """A few black, saturated and torn frames, never at the ends and never adjacent."""
    count = max(1, frames // 500)
    kinds = ("black", "torn", "saturated")
    picks: list[int] = []
    while len(picks) < count and frames > 10:
        t = int(rng.integers(3, frames - 3))
        if all(abs(t - p) > 2 for p in picks):
            picks.append(t)
    return {t: kinds[i % 3] for i, t in enumerate(sorted(picks))}


def _corrupt(frame: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Damage one uint8 frame the way a failing camera link does."""
    h, w = frame.shape
    if kind == "black":
        return rng.integers(0, 3, frame.shape).astype(np.uint8)
    if kind == "saturated":
        return np.full_like(frame, 255)
    out = frame.copy()
    line = int(rng.integers(h // 4, 3 * h // 4))
    out[line:] = np.roll(frame[line:], int(rng.integers(w // 6, w // 3)), axis=1) // 2 + 60
    return out


@dataclass
class _Scene:
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
            moved = _cubic_shift(image, dy, dx, "copy")[PAD : PAD + h, PAD : PAD + w]
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
                chunk[i] = _corrupt(chunk[i], self.bad[start + i], rng)
        return chunk


def _write_movie(scene: _Scene, out: Path, fmt: str, frames: int) -> None:
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


def generate(
    out: Path,
    *,
    size: tuple[int, int] = (512, 512),
    frames: int = 2000,
    neurons: int | None = None,
    fr: float = 10,
    seed: int = 0,
    fmt: str = "jpg",
    mode: str = "two-photon",
    diameter: float = DEFAULT_DIAMETER,
) -> Path:
    """Write a demo movie (frame_N.jpg and/or movie.tif) with ground_truth.npz into out."""
    if fmt not in ("jpg", "tiff", "both"):
        raise ValueError("fmt must be jpg, tiff or both")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    canvas = (h + 2 * PAD, w + 2 * PAD)
    vessels = _vessels(rng, canvas)
    cells = _place_neurons(rng, canvas, neurons or default_neurons(size), vessels, diameter)
    footprints, canvas_masks = _footprints(cells, canvas)
    calcium = _calcium(rng, len(cells), frames, fr)
    brightness = rng.uniform(14, 34, len(cells)).astype(np.float32)
    resting = rng.uniform(3, 8, len(cells)).astype(np.float32)

    tissue = 55 + 45 * _smooth_field(rng, canvas, 60) + _out_of_focus(rng, canvas)
    haze = 20 * _smooth_field(rng, canvas, 25)
    neuropil = 10 * _smooth_field(rng, canvas, 8)
    t = np.arange(frames) / fr
    span = max(t[-1], 1)
    drift = 1 + 0.08 * np.sin(2 * np.pi * t / span + rng.uniform(0, 6)) - 0.05 * t / span
    haze_drift = np.convolve(rng.normal(0, 1, frames + 200), np.ones(200) / 200, "same")
    activity = calcium.mean(axis=0)
    support = np.unique(footprints.indices)
    scene = _Scene(
        canvas=canvas,
        size=size,
        spatial=np.stack([tissue, haze, neuropil]).reshape(3, -1),
        temporal=np.stack(
            [drift, 1 + 4 * haze_drift[100:-100], 1 + 3 * (activity - activity.mean())]
        ).T.astype(np.float32),
        support=support,
        cells=footprints[support].T.toarray(),
        signals=(resting[:, None] + brightness[:, None] * calcium).T.copy(),
        darkening=(1 - 0.6 * vessels).ravel(),
        shifts=_motion(rng, frames),
        bad=_corruption_plan(rng, frames),
        seed=seed,
    )
    if mode == "one-photon":
        _one_photon(scene, rng, vessels, 3 * float(resting.mean()), fr)
    _write_movie(scene, out, fmt, frames)

    masks = canvas_masks[:, PAD : PAD + h, PAD : PAD + w]
    centres = np.array([(c[0] - PAD, c[1] - PAD) for c in cells], float).reshape(-1, 2)
    np.savez_compressed(
        out / "ground_truth.npz",
        masks=np.packbits(masks.reshape(len(cells), -1), axis=1),
        mask_shape=np.array([len(cells), h, w]),
        centres=centres,
        traces=calcium,
        shifts=scene.shifts,
        bad_frames=np.array(sorted(scene.bad), int),
        vessels=vessels[PAD : PAD + h, PAD : PAD + w] > 0.3,
        fr=np.array(fr),
        mode=np.array(mode),
        diameters=np.array([2 * np.sqrt(c[2] * c[3]) for c in cells], float),
    )
    return out


def _one_photon(
    scene: _Scene, rng: np.random.Generator, vessels: np.ndarray, level: float, fr: float
) -> None:
    """Turn a scene into a one-photon one: active haze patches at `level` (about 3× the
    cells' resting brightness), vessels that pulse at ~1 Hz, stronger vignetting."""
    frames = len(scene.temporal)
    scene.haze = _haze_patches(rng, scene.canvas)
    count = scene.haze.shape[0]
    amplitude = level * rng.uniform(0.6, 1.4, count).astype(np.float32)
    scene.haze_signals = (_slow_activity(rng, count, frames, fr) * amplitude[:, None]).T.copy()
    scene.pulse = 0.25 * _heartbeat(rng, frames, fr)
    scene.vessel_map = (0.6 * vessels).ravel().astype(np.float32)
    scene.vignetting = 1.6


def unpack_masks(npz: np.lib.npyio.NpzFile) -> np.ndarray:
    """The (neurons, height, width) boolean masks stored bit-packed in ground_truth.npz."""
    n, h, w = (int(v) for v in npz["mask_shape"])
    return np.unpackbits(npz["masks"], axis=1, count=h * w).reshape(n, h, w).astype(bool)


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m pico_nb.pipeline.synthetic"
) -> int:
    """CLI: python -m pico_nb.pipeline.synthetic OUT [--size H W] [--frames N] ..."""
    parser = argparse.ArgumentParser(prog=prog, description=generate.__doc__)
    parser.add_argument("out", type=Path, help="folder to write the demo movie into")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--neurons", type=int, default=None, help="default: by field size")
    parser.add_argument("--fr", type=float, default=10, help="frame rate in Hz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", dest="fmt", choices=("jpg", "tiff", "both"), default="jpg")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="two-photon",
        help="one-photon adds active out-of-focus haze, pulsing vessels and strong vignetting",
    )
    parser.add_argument(
        "--cell-diameter",
        dest="diameter",
        type=float,
        default=DEFAULT_DIAMETER,
        help="typical neuron diameter in pixels (each cell within ±17 %%)",
    )
    args = parser.parse_args(argv)
    if min(args.size) < 32 or args.frames < 10:
        parser.error("the movie needs at least 32×32 pixels and 10 frames")
    if not 3 <= args.diameter <= 40:
        parser.error("--cell-diameter must be between 3 and 40 pixels")
    folder = generate(
        args.out,
        size=tuple(args.size),
        frames=args.frames,
        neurons=args.neurons,
        fr=args.fr,
        seed=args.seed,
        fmt=args.fmt,
        mode=args.mode,
        diameter=args.diameter,
    )
    print(f"wrote demo movie and ground_truth.npz to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
