"""Motion correction: a template from the corrected frames, then every frame registered to it."""

from __future__ import annotations

import numpy as np

from pico_nb.pipeline import writers
from pico_nb.pipeline.corrected_frames import Corrected
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info
from pico_nb.pipeline.parallel import prefetch, split_map
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.register import (
    PatchGrid,
    Piecewise,
    Rigid,
    shift_frames,
    shrink,
    warp_frames,
)
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.stages.frame_stats import frame_sum, good_frames
from pico_nb.pipeline.store import DiskStack

TEMPLATE_SAMPLE = 200
TEMPLATE_ROUNDS = 2


def _template(run: Invocation, corrected: Corrected, rigid: Rigid, good: np.ndarray) -> np.ndarray:
    """Reference built iteratively: a central block's mean, then means of registered samples."""
    n = len(corrected)
    block = run.flags.num_frames_split
    mid = n // 2
    first = corrected.read(max(0, mid - block // 2), min(n, mid + (block + 1) // 2))
    template = shrink(first, rigid.scale).mean(axis=0)
    candidates = np.flatnonzero(good)
    picks = candidates[
        np.linspace(0, len(candidates) - 1, min(TEMPLATE_SAMPLE, len(candidates))).astype(int)
    ]
    sample = np.concatenate([shrink(corrected.read(i, i + 1), rigid.scale) for i in picks])
    for _ in range(TEMPLATE_ROUNDS):
        rigid.set_reference(template)
        shifts = np.concatenate(split_map(rigid.estimate_small, sample)) / rigid.scale
        template = shift_frames(sample, shifts, "copy", True).mean(axis=0)
    rigid.set_reference(template)
    return template


def motion_correct(run: Invocation) -> None:
    """Register every frame to the template; keep shifts, reference and (optionally) the movie."""
    flags, mc = run.flags, run.layout.mc
    info = read_info(run.layout.preprocess)
    good = good_frames(info)
    corrected = Corrected(run.layout)
    shape = tuple(info["frame_shape"])
    rigid = Rigid(shape, flags.max_shifts)
    template = _template(run, corrected, rigid, good)
    piecewise = None
    if flags.pw_rigid:
        grid = PatchGrid(shape, flags.strides, flags.overlaps)
        piecewise = Piecewise(rigid, grid, flags.max_deviation_rigid)
        piecewise.set_reference(template)
    n = len(corrected)
    movie = mc / "registered.tif"
    movie.unlink(missing_ok=True)
    saved = DiskStack.create(movie, (n, *shape), corrected.dtype) if flags.save_movie else None
    shifts = np.zeros((n, 2), np.float32)
    patch_shifts = []
    total = np.zeros(shape, np.float64)

    def register_part(
        frames: np.ndarray, keep: np.ndarray, index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One thread's share, stored by that thread: the main thread never waits on a copy."""
        small = shrink(frames, rigid.scale)
        found = rigid.estimate_small(small)
        field_ = None
        if piecewise is None:
            moved = shift_frames(frames, found, flags.border_nan, flags.shifts_opencv)
        else:
            field_ = piecewise.estimate_small(small, found)
            moved = warp_frames(frames, field_, flags.border_nan)
        if saved is not None:
            saved.write(int(index[0]), moved)
        return found, field_, frame_sum(moved[keep])

    with Progress(Stage.MOTION.value, n) as bar:
        for start, stop, frames in prefetch(corrected.read, n, run.chunk(flags.mc_chunk_size)):
            parts = split_map(register_part, frames, good[start:stop], np.arange(start, stop))
            shifts[start:stop] = np.concatenate([part[0] for part in parts])
            if piecewise is not None:
                patch_shifts += [part[1] for part in parts]
            for part in parts:
                total += part[2]
            bar.update(stop - start)
    reference = (total / max(1, good.sum())).astype(np.float32)
    np.save(mc / "reference.npy", reference)
    writers.save_png(mc / "reference.png", reference)
    if patch_shifts:
        np.save(mc / "pw_shifts.npy", np.concatenate(patch_shifts))
    table = np.column_stack([np.arange(n), shifts])
    writers.write_csv(mc / "shifts.csv", ["frame", "shift_y", "shift_x"], table, "%d,%.4f,%.4f")
    plot = writers.plot_series(
        [shifts[:, 0], shifts[:, 1]],
        ["y (px)", "x (px)"],
        rate=flags.fr,
        title="rigid shifts (pixels)",
        stacked=False,
    )
    writers.save_png(mc / "shifts.png", plot)
    margin = int(np.ceil(np.abs(shifts).max())) if n else 0
    writers.write_json(
        mc / "info.json",
        {
            "frames": n,
            "saved_movie": bool(flags.save_movie),
            "pw_rigid": bool(flags.pw_rigid),
            "border_nan": flags.border_nan,
            "shifts_opencv": bool(flags.shifts_opencv),
            "margin": margin,
            "estimation_scale": rigid.scale,
        },
    )
