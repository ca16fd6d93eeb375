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
from pathlib import Path

import numpy as np

from pico_nb.pipeline.synthetic_activity import (
    calcium_traces,
    corruption_plan,
    heartbeat,
    slow_activity,
    tissue_motion,
)
from pico_nb.pipeline.synthetic_anatomy import (
    PAD,
    draw_vessels,
    haze_patches,
    neuron_footprints,
    out_of_focus,
    place_neurons,
    smooth_field,
)
from pico_nb.pipeline.synthetic_scene import Scene, write_movie

MODES = ("two-photon", "one-photon")
DEFAULT_DIAMETER = 11.6


def default_neurons(size: tuple[int, int]) -> int:
    """About 150 neurons in a 512×512 field, the density of a typical 1-photon recording."""
    return max(1, round(size[0] * size[1] / 1750))


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
    vessels = draw_vessels(rng, canvas)
    cells = place_neurons(rng, canvas, neurons or default_neurons(size), vessels, diameter)
    footprints, canvas_masks = neuron_footprints(cells, canvas)
    calcium = calcium_traces(rng, len(cells), frames, fr)
    brightness = rng.uniform(14, 34, len(cells)).astype(np.float32)
    resting = rng.uniform(3, 8, len(cells)).astype(np.float32)

    tissue = 55 + 45 * smooth_field(rng, canvas, 60) + out_of_focus(rng, canvas)
    haze = 20 * smooth_field(rng, canvas, 25)
    neuropil = 10 * smooth_field(rng, canvas, 8)
    t = np.arange(frames) / fr
    span = max(t[-1], 1)
    drift = 1 + 0.08 * np.sin(2 * np.pi * t / span + rng.uniform(0, 6)) - 0.05 * t / span
    haze_drift = np.convolve(rng.normal(0, 1, frames + 200), np.ones(200) / 200, "same")
    activity = calcium.mean(axis=0)
    support = np.unique(footprints.indices)
    scene = Scene(
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
        shifts=tissue_motion(rng, frames),
        bad=corruption_plan(rng, frames),
        seed=seed,
    )
    if mode == "one-photon":
        _one_photon(scene, rng, vessels, 3 * float(resting.mean()), fr)
    write_movie(scene, out, fmt, frames)

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
    scene: Scene, rng: np.random.Generator, vessels: np.ndarray, level: float, fr: float
) -> None:
    """Turn a scene into a one-photon one: active haze patches at `level` (about 3× the
    cells' resting brightness), vessels that pulse at ~1 Hz, stronger vignetting."""
    frames = len(scene.temporal)
    scene.haze = haze_patches(rng, scene.canvas)
    count = scene.haze.shape[0]
    amplitude = level * rng.uniform(0.6, 1.4, count).astype(np.float32)
    scene.haze_signals = (slow_activity(rng, count, frames, fr) * amplitude[:, None]).T.copy()
    scene.pulse = 0.25 * heartbeat(rng, frames, fr)
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
