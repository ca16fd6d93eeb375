"""Loading, bad-frame repair and flat-field correction: the stages that write preprocess/."""

from __future__ import annotations

import cv2
import numpy as np

from pico_nb.contract.errors import ValidationError
from pico_nb.pipeline import badframes, writers
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info
from pico_nb.pipeline.load import FrameReader, check_crop
from pico_nb.pipeline.parallel import prefetch
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.stages.frame_stats import frame_sum
from pico_nb.pipeline.store import DiskStack, frames_per_chunk


def load(run: Invocation) -> None:
    """Read, crop and store the movie once, keeping tiny per-frame statistics for repair."""
    source = run.input_movie()
    rows, cols = check_crop(source, run.flags.crop_parameter)
    wanted = run.flags.set_frame_num
    n = min(wanted, source.n_frames) if wanted else source.n_frames
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    pre = run.layout.preprocess
    stack = DiskStack.create(pre / "movie.npy", (n, *shape), source.dtype)
    reader = FrameReader(source)
    thumbs = np.empty((n, badframes.THUMB, badframes.THUMB), np.float32)
    saturated = np.empty(n, np.float32)
    total = np.zeros(shape, np.float64)
    step = frames_per_chunk(source.frame_shape, run.flags.mc_chunk_size)
    with Progress(Stage.LOADING.value, n) as bar:
        for start, stop, frames in prefetch(reader.read, n, min(step, 200)):
            frames = frames[:, rows, cols]
            stack.write(start, frames)
            thumbs[start:stop] = badframes.thumbnails(frames)
            saturated[start:stop] = badframes.saturation(frames)
            total += frame_sum(frames)
            bar.update(stop - start)
    np.save(pre / "frame_sum.npy", total)
    np.save(pre / "thumbnails.npy", thumbs)
    np.save(pre / "saturation.npy", saturated)
    info = {
        "frames": n,
        "frame_shape": list(shape),
        "dtype": str(source.dtype),
        "input": source.describe(),
        "crop": run.flags.crop_parameter,
        "bad_frames": [],
    }
    writers.write_json(pre / "info.json", info)


def repair(run: Invocation) -> None:
    """Replace corrupted frames by the nearest good frame and record their indices."""
    pre = run.layout.preprocess
    info = read_info(pre)
    bad = np.zeros(0, int)
    if run.flags.bad_frame_detect_flag:
        bad = badframes.detect(np.load(pre / "thumbnails.npy"), np.load(pre / "saturation.npy"))
    nearest = badframes.nearest_good(info["frames"], bad)
    if len(bad) and not nearest:
        raise ValidationError.one(
            "data_path", "every frame looks corrupted (black, torn or saturated)"
        )
    stack = DiskStack.open(pre / "movie.npy")
    total = np.load(pre / "frame_sum.npy")
    with Progress(Stage.BAD_FRAMES.value, len(bad) or 1) as bar:
        for index, good in nearest.items():
            total -= stack.read(index, index + 1)[0]
            stack.write(index, stack.read(good, good + 1))
            bar.update()
    mean = (total / max(1, info["frames"] - len(nearest))).astype(np.float32)
    np.save(pre / "mean.npy", mean)
    writers.save_png(pre / "mean.png", mean)
    writers.write_csv(
        pre / "bad_frames.csv",
        ["frame", "replaced_by"],
        np.array(sorted(nearest.items()), int).reshape(-1, 2),
        "%d",
    )
    info["bad_frames"] = [int(b) for b in bad]
    writers.write_json(pre / "info.json", info)
    print(
        f"bad frames: {len(bad)} found{': ' + ', '.join(map(str, bad[:20])) if len(bad) else ''}",
        flush=True,
    )


def flatten(run: Invocation) -> None:
    """Flat-field gain from a heavily smoothed mean image (when asked); crop was applied
    while loading."""
    pre = run.layout.preprocess
    mean = np.load(pre / "mean.npy")
    gain_file = pre / "flatfield_gain.npy"
    gain_file.unlink(missing_ok=True)
    if run.flags.intensity_corr_flag:
        sigma = max(mean.shape) / 8
        flat = np.maximum(cv2.GaussianBlur(mean, (0, 0), sigma), 1e-3)
        gain = (flat.mean() / flat).astype(np.float32)
        np.save(gain_file, gain)
        writers.save_png(pre / "flatfield.png", flat)
