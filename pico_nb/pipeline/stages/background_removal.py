"""Background removal: the registered movie binned in time, its ring-filtered background removed."""

from __future__ import annotations

import numpy as np

from pico_nb.pipeline import background, writers
from pico_nb.pipeline.corrected_frames import Registered
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info
from pico_nb.pipeline.parallel import THREADS, prefetch, split_map
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.store import DiskStack, converted

MAX_BINS = 3000
"""Bins of any recording: a 30-minute session at 10 Hz keeps 1 s bins (the larger of two
half-second means), not 500 bins of 6 s that average its transients away (F1 0.013 → 0.99 on
the benchmark's 30,000 frames), and segmentation sizes its tiles to them (TILE_BYTES)."""


def bin_plan(n_frames: int, fr: float) -> tuple[int, int]:
    """(frames per step, steps per bin): half-second means, and for a recording longer than
    MAX_BINS of them, the brightest of consecutive means, which keeps a short transient's peak
    where a longer mean would dilute it."""
    step = max(1, round(fr / 2))
    return step, max(1, -(-n_frames // (step * MAX_BINS)))


def _bins(frames: np.ndarray, step: int, pool: int) -> np.ndarray:
    """Each bin of step × pool frames: the largest of its step-frame means (the last bin and
    its last mean may be shorter)."""
    size = step * pool
    out = np.empty((-(-len(frames) // size), *frames.shape[1:]), np.float32)
    whole = len(frames) // size * size
    if whole:
        groups = frames[:whole].reshape(-1, pool, step, *frames.shape[1:])
        out[: whole // size] = _mean(groups, 2).max(axis=1)
    if whole < len(frames):
        tail = frames[whole:]
        out[-1] = np.max([_mean(tail[k : k + step], 0) for k in range(0, len(tail), step)], 0)
    return out


def _mean(frames: np.ndarray, axis: int) -> np.ndarray:
    """The float32 mean along axis; NaN borders count as 0, as in the frame sums."""
    if frames.dtype.kind == "f":
        frames = np.nan_to_num(frames)
    return frames.mean(axis=axis, dtype=np.float32)


def remove_background(run: Invocation) -> None:
    """Bin the registered movie in time and subtract the ring-filtered background."""
    flags, rmbg = run.flags, run.layout.rmbg
    registered = Registered(run.layout)
    n = registered.n_frames
    info = read_info(run.layout.preprocess)
    shape = tuple(info["frame_shape"])
    means, pool = bin_plan(n, flags.fr)
    size = means * pool
    n_bins = -(-n // size)
    binned = DiskStack.create(rmbg / "binned.npy", (n_bins, *shape), np.float16)
    # whole bins per chunk, their float32 means within the chunk budget, one per thread at least
    step = size * max(THREADS, run.chunk(flags.rmbg_chunk_size // size))
    peak = np.full(shape, -np.inf, np.float32)
    gsize, up_sample = flags.rmbg_gsize, flags.up_sample

    def clean_part(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clean = background.remove_background(_bins(part, means, pool), gsize, up_sample)
        return converted(clean, np.float16), clean.max(axis=0)

    with Progress(Stage.BACKGROUND.value, n) as bar:
        for start, stop, frames in prefetch(registered.read, n, step):
            parts = split_map(clean_part, frames, unit=size)
            binned.write(start // size, np.concatenate([clean for clean, _ in parts]))
            for _, part_peak in parts:
                np.maximum(peak, part_peak, out=peak)
            bar.update(stop - start)
    np.save(rmbg / "max_projection.npy", peak)
    writers.save_png(rmbg / "max_projection.png", peak)
    writers.write_json(
        rmbg / "info.json",
        {
            "bin_frames": size,
            "bin_pool": pool,
            "bins": n_bins,
            "grid_step": background.grid_step(flags.rmbg_gsize, flags.up_sample),
        },
    )
