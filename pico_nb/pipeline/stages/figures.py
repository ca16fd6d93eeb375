"""The outputs stage: figures, MATLAB and open-format results, and preview videos."""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from pico_nb.pipeline import writers
from pico_nb.pipeline.corrected_frames import Registered
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.store import DiskStack, converted

TRACE_PAGE = 10


def _example_neurons(dff: np.ndarray, count: int = 8) -> np.ndarray:
    """Neurons with the clearest transients, for the summary's example traces."""
    if not len(dff):
        return np.zeros(0, int)
    noise = 1.4826 * np.median(np.abs(np.diff(dff, axis=1)), axis=1) + 1e-9
    return np.sort(np.argsort(-(dff.max(axis=1) / noise))[:count])


def _dff_plot(dff: np.ndarray, ids: Collection[int], fr: float, title: str) -> np.ndarray:
    """Stacked ΔF/F rows numbered as in the outlines (1-based)."""
    return writers.plot_series(
        [dff[k] for k in ids], [f"#{k + 1}" for k in ids], rate=fr, title=title, stacked=True
    )


def write_outputs(run: Invocation) -> None:
    """Figures, MATLAB and open-format results, and videos when save_movie is on."""
    flags, layout = run.flags, run.layout
    seg = layout.seg
    labels = np.load(seg / "masks.npy")
    dff = np.load(seg / "dff.npy")
    raw = np.load(seg / "traces.npy")
    neuropil = np.load(seg / "neuropil.npy")
    mean = np.load(layout.mc / "reference.npy")
    corr = np.load(seg / "correlation_image.npy")
    count = int(labels.max())
    width = labels.shape[1]
    pixels = writers.label_pixels(labels)
    centres = np.array([[(p // width).mean(), (p % width).mean()] for p in pixels]).reshape(-1, 2)
    pages = -(-count // TRACE_PAGE)
    with Progress(Stage.OUTPUTS.value, pages + 4, unit="files") as bar:
        overlay = writers.outlines(mean, labels)
        writers.save_png(seg / "outlines.png", overlay)
        writers.save_png(seg / "mean_image.png", mean)
        writers.save_png(seg / "correlation_image.png", corr)
        summary_panel = writers.side_by_side(
            [mean, corr, overlay], ["mean image", "correlation image", f"{count} neurons"]
        )
        writers.save_png(seg / "SEG_SUM.png", summary_panel)
        bar.update()
        examples = _example_neurons(dff)
        example_plot = _dff_plot(dff, examples, flags.fr, "example neurons: dF/F")
        writers.save_png(seg / "example_traces.png", example_plot)
        bar.update()
        folder = seg / "Neuron_trace"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for page in range(pages):
            ids = range(page * TRACE_PAGE, min(count, (page + 1) * TRACE_PAGE))
            plot = _dff_plot(dff, ids, flags.fr, "dF/F")
            writers.save_png(folder / f"neurons_{ids[0] + 1:04d}-{ids[-1] + 1:04d}.png", plot)
            bar.update()
        one_based = centres + 1
        writers.write_mat(
            seg / "seg_results.mat",
            {
                "masks": labels,
                "cm": one_based,
                "num_neurons": count,
                "note": "masks: label image, 0 = background, k = neuron k; cm: (row, col) 1-based",
            },
        )
        writers.write_mat(
            seg / "infer_results.mat",
            {
                "C": dff,
                "F_raw": raw,
                "F_neuropil": neuropil,
                "fr": flags.fr,
                "note": "C: dF/F, neurons x frames (neuropil-corrected, sliding baseline)",
            },
        )
        writers.write_mat(seg / "cm.mat", {"cm": one_based})
        writers.write_json(seg / "rois.json", writers.neurofinder_rois(labels), indent=None)
        np.save(seg / "centres.npy", centres)
        bar.update()
        if flags.save_movie:
            _videos(run)
        bar.update()


def scaled(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    """A frame stretched to 8 bits between low and high: a lookup table for 8-bit frames and
    one OpenCV pass for the rest, where NumPy's temporaries cost more than the encoding."""
    gain = 255 / max(high - low, 1e-9)
    if frame.dtype == np.uint8:
        return cv2.LUT(
            frame, np.clip(np.rint((np.arange(256) - low) * gain), 0, 255).astype(np.uint8)
        )
    values = np.nan_to_num(converted(frame, np.float32))
    return cv2.addWeighted(values, gain, values, 0, -low * gain, dtype=cv2.CV_8U)


def _videos(run: Invocation) -> None:
    """mc.avi and rmbg.avi previews with every 1/downsample_ratio-th frame."""
    flags, layout = run.flags, run.layout
    registered = Registered(layout)
    n = registered.n_frames
    step = max(1, round(1 / flags.downsample_ratio))
    picks = range(0, n, step)
    mean = np.load(layout.mc / "reference.npy")
    lo, hi = np.percentile(mean, [0.5, 99.9])
    hi = lo + 1.5 * (hi - lo)

    fps = max(1.0, flags.fr * flags.downsample_ratio * 4)
    binned = DiskStack.open(layout.rmbg / "binned.npy")
    peak = np.load(layout.rmbg / "max_projection.npy")
    top = float(np.percentile(peak, 99.5))
    bin_step = max(1, round(len(binned) * step / max(n, 1)))
    movies = [
        (layout.mc / "mc.avi", (scaled(registered.read(i, i + 1)[0], lo, hi) for i in picks)),
        (
            layout.rmbg / "rmbg.avi",
            (scaled(binned.read(i, i + 1)[0], 0, top) for i in range(0, len(binned), bin_step)),
        ),
    ]
    with ThreadPoolExecutor(len(movies)) as pool:
        jobs = [
            pool.submit(writers.write_video, path, frames, fps, flags.avi_quality)
            for path, frames in movies
        ]
        for job in jobs:
            job.result()
