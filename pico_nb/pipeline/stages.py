"""The pipeline's stages: each reads the previous stage's outputs from disk and writes its own."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np

from pico_nb.errors import ValidationError
from pico_nb.pipeline import background, badframes, cellsize, outputs, segment, traces, vessels
from pico_nb.pipeline.frames import Corrected, Registered
from pico_nb.pipeline.layout import Run, read_info
from pico_nb.pipeline.load import FrameReader, check_crop
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
from pico_nb.pipeline.store import DiskStack, frames_per_chunk

TEMPLATE_SAMPLE = 200
TEMPLATE_ROUNDS = 2
TRACE_PAGE = 10


def peak_memory_mb() -> float:
    """The pipeline's peak resident memory so far (Linux reports kB), for compare and benchmarks."""
    peak = max(
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return round(peak / 1024, 1)


# ------------------------------------------------------------------ loading and repair


def _frame_sum(frames: np.ndarray) -> np.ndarray:
    """Sum over frames: exact integer sums for integer movies, NaN borders count as 0."""
    if frames.dtype.kind in "ui":
        return frames.sum(axis=0, dtype=np.uint64 if frames.itemsize > 1 else np.uint32)
    total = np.zeros(frames.shape[1:], np.float32)
    for frame in frames:
        total += np.nan_to_num(frame)
    return total


def load(run: Run) -> None:
    """Read, crop and store the movie once, keeping tiny per-frame statistics for repair."""
    source = run.input_movie()
    rows, cols = check_crop(source, run.params["crop_parameter"])
    wanted = run.params["set_frame_num"]
    n = min(wanted, source.n_frames) if wanted else source.n_frames
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    pre = run.layout.preprocess
    stack = DiskStack.create(pre / "movie.npy", (n, *shape), source.dtype)
    reader = FrameReader(source)
    thumbs = np.empty((n, badframes.THUMB, badframes.THUMB), np.float32)
    saturated = np.empty(n, np.float32)
    total = np.zeros(shape, np.float64)
    step = frames_per_chunk(source.frame_shape, run.params["mc_chunk_size"])
    with Progress("loading", n) as bar:
        for start, stop, frames in prefetch(reader.read, n, min(step, 200)):
            frames = frames[:, rows, cols]
            stack.write(start, frames)
            thumbs[start:stop] = badframes.thumbnails(frames)
            saturated[start:stop] = badframes.saturation(frames)
            total += _frame_sum(frames)
            bar.update(stop - start)
    np.save(pre / "frame_sum.npy", total)
    np.save(pre / "thumbnails.npy", thumbs)
    np.save(pre / "saturation.npy", saturated)
    info = {
        "frames": n,
        "frame_shape": list(shape),
        "dtype": str(source.dtype),
        "input": source.describe(),
        "crop": run.params["crop_parameter"],
        "bad_frames": [],
    }
    outputs.write_json(pre / "info.json", info)


def repair(run: Run) -> None:
    """Replace corrupted frames by the nearest good frame and record their indices."""
    pre = run.layout.preprocess
    info = read_info(pre)
    bad = np.zeros(0, int)
    if run.params["bad_frame_detect_flag"]:
        bad = badframes.detect(np.load(pre / "thumbnails.npy"), np.load(pre / "saturation.npy"))
    nearest = badframes.nearest_good(info["frames"], bad)
    if len(bad) and not nearest:
        raise ValidationError.one(
            "data_path", "every frame looks corrupted (black, torn or saturated)"
        )
    stack = DiskStack.open(pre / "movie.npy")
    total = np.load(pre / "frame_sum.npy")
    with Progress("bad frame detection", len(bad) or 1) as bar:
        for index, good in nearest.items():
            total -= stack.read(index, index + 1)[0]
            stack.write(index, stack.read(good, good + 1))
            bar.update()
    mean = (total / max(1, info["frames"] - len(nearest))).astype(np.float32)
    np.save(pre / "mean.npy", mean)
    outputs.save_png(pre / "mean.png", mean)
    outputs.write_csv(
        pre / "bad_frames.csv",
        ["frame", "replaced_by"],
        np.array(sorted(nearest.items()), int).reshape(-1, 2),
        "%d",
    )
    info["bad_frames"] = [int(b) for b in bad]
    outputs.write_json(pre / "info.json", info)
    print(
        f"bad frames: {len(bad)} found{': ' + ', '.join(map(str, bad[:20])) if len(bad) else ''}",
        flush=True,
    )


def flatten(run: Run) -> None:
    """Flat-field gain from a heavily smoothed mean image (when asked); crop was applied
    while loading."""
    pre = run.layout.preprocess
    mean = np.load(pre / "mean.npy")
    gain_file = pre / "flatfield_gain.npy"
    gain_file.unlink(missing_ok=True)
    if run.params["intensity_corr_flag"]:
        sigma = max(mean.shape) / 8
        flat = np.maximum(cv2.GaussianBlur(mean, (0, 0), sigma), 1e-3)
        gain = (flat.mean() / flat).astype(np.float32)
        np.save(gain_file, gain)
        outputs.save_png(pre / "flatfield.png", flat)


def _good_mask(info: dict[str, Any]) -> np.ndarray:
    """True for frames that were not corrupted."""
    good = np.ones(info["frames"], bool)
    good[np.array(info["bad_frames"], int)] = False
    return good


# ------------------------------------------------------------------ motion correction


def _template(run: Run, corrected: Corrected, rigid: Rigid, good: np.ndarray) -> np.ndarray:
    """Reference built iteratively: a central block's mean, then means of registered samples."""
    n = len(corrected)
    block = run.params["num_frames_split"]
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


def motion_correct(run: Run) -> None:
    """Register every frame to the template; keep shifts, reference and (optionally) the movie."""
    p, mc = run.params, run.layout.mc
    info = read_info(run.layout.preprocess)
    good = _good_mask(info)
    corrected = Corrected(run.layout)
    shape = tuple(info["frame_shape"])
    rigid = Rigid(shape, tuple(p["max_shifts"]))
    template = _template(run, corrected, rigid, good)
    piecewise = None
    if p["pw_rigid"]:
        grid = PatchGrid(shape, tuple(p["strides"]), tuple(p["overlaps"]))
        piecewise = Piecewise(rigid, grid, p["max_deviation_rigid"])
        piecewise.set_reference(template)
    n = len(corrected)
    movie = mc / "registered.tif"
    movie.unlink(missing_ok=True)
    saved = DiskStack.create(movie, (n, *shape), corrected.dtype) if p["save_movie"] else None
    shifts = np.zeros((n, 2), np.float32)
    patch_shifts = []
    total = np.zeros(shape, np.float64)

    def register_part(
        frames: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        small = shrink(frames, rigid.scale)
        found = rigid.estimate_small(small)
        if piecewise is None:
            moved = shift_frames(frames, found, p["border_nan"], p["shifts_opencv"])
            return found, None, moved, _frame_sum(moved[keep])
        field_ = piecewise.estimate_small(small, found)
        moved = warp_frames(frames, field_, p["border_nan"])
        return found, field_, moved, _frame_sum(moved[keep])

    with Progress("motion correction", n) as bar:
        for start, stop, frames in prefetch(corrected.read, n, run.chunk()):
            parts = split_map(register_part, frames, good[start:stop])
            shifts[start:stop] = np.concatenate([part[0] for part in parts])
            if piecewise is not None:
                patch_shifts += [part[1] for part in parts]
            moved = np.concatenate([part[2] for part in parts])
            if saved is not None:
                saved.write(start, moved)
            total += sum(part[3] for part in parts)
            bar.update(stop - start)
    reference = (total / max(1, good.sum())).astype(np.float32)
    np.save(mc / "reference.npy", reference)
    outputs.save_png(mc / "reference.png", reference)
    if patch_shifts:
        np.save(mc / "pw_shifts.npy", np.concatenate(patch_shifts))
    table = np.column_stack([np.arange(n), shifts])
    outputs.write_csv(mc / "shifts.csv", ["frame", "shift_y", "shift_x"], table, "%d,%.4f,%.4f")
    plot = outputs.plot_series(
        [shifts[:, 0], shifts[:, 1]],
        ["y (px)", "x (px)"],
        rate=p["fr"],
        title="rigid shifts (pixels)",
        stacked=False,
    )
    outputs.save_png(mc / "shifts.png", plot)
    margin = int(np.ceil(np.abs(shifts).max())) if n else 0
    outputs.write_json(
        mc / "info.json",
        {
            "frames": n,
            "saved_movie": bool(p["save_movie"]),
            "pw_rigid": bool(p["pw_rigid"]),
            "border_nan": p["border_nan"],
            "shifts_opencv": bool(p["shifts_opencv"]),
            "margin": margin,
            "estimation_scale": rigid.scale,
        },
    )


# ------------------------------------------------------------------ background removal


def bin_size(n_frames: int, fr: float) -> int:
    """Frames averaged per bin: about half a second, and at most 500 bins for any length."""
    return max(1, round(fr / 2), -(-n_frames // 500))


def _bin_means(frames: np.ndarray, size: int) -> np.ndarray:
    """Means of consecutive groups of size frames (the last group may be shorter)."""
    groups = range(0, len(frames), size)
    sums = [_frame_sum(frames[g : g + size]) / len(frames[g : g + size]) for g in groups]
    return np.stack(sums).astype(np.float32)


def remove_background(run: Run) -> None:
    """Bin the registered movie in time and subtract the ring-filtered background."""
    p, rmbg = run.params, run.layout.rmbg
    registered = Registered(run.layout)
    n = registered.n_frames
    info = read_info(run.layout.preprocess)
    shape = tuple(info["frame_shape"])
    size = bin_size(n, p["fr"])
    n_bins = -(-n // size)
    binned = DiskStack.create(rmbg / "binned.npy", (n_bins, *shape), np.float16)
    step = max(size, run.chunk("rmbg_chunk_size") // size * size)
    peak = np.full(shape, -np.inf, np.float32)
    gsize, up_sample = p["rmbg_gsize"], p["up_sample"]

    def clean_part(means: np.ndarray) -> np.ndarray:
        return background.remove_background(means, gsize, up_sample)

    with Progress("background removal", n) as bar:
        for start, stop, frames in prefetch(registered.read, n, step):
            clean = np.concatenate(split_map(clean_part, _bin_means(frames, size)))
            binned.write(start // size, clean)
            np.maximum(peak, clean.max(axis=0), out=peak)
            bar.update(stop - start)
    np.save(rmbg / "max_projection.npy", peak)
    outputs.save_png(rmbg / "max_projection.png", peak)
    outputs.write_json(
        rmbg / "info.json",
        {
            "bin_frames": size,
            "bins": n_bins,
            "grid_step": background.grid_step(p["rmbg_gsize"], p["up_sample"]),
        },
    )


# ------------------------------------------------------------------ vessels and segmentation


def find_vessels(run: Run) -> None:
    """Dark ridges of the mean registered image."""
    reference = np.load(run.layout.mc / "reference.npy")
    mask = vessels.vessel_mask(reference, run.params["rmbg_gsize"])
    np.save(run.layout.seg / "vessel_mask.npy", mask)
    outputs.save_png(run.layout.seg / "vessel_mask.png", (mask * 255).astype(np.uint8))
    print(f"vessel pixels: {100 * mask.mean():.1f}% of the field", flush=True)


def _seg_params(p: dict[str, Any]) -> segment.SegParams:
    """The segmentation flags in one object."""
    return segment.SegParams(
        gsize=p["rmbg_gsize"],
        min_area=p["minArea"],
        avg_area=p["avgArea"],
        thresh_pmap=p["thresh_pmap"],
        thresh_mask=p["thresh_mask"],
        thresh_com0=p["thresh_COM0"],
        thresh_com=p["thresh_COM"],
        pixel_size=p["pixel_size"],
        patch_size=p["patch_size"],
    )


def segment_neurons(run: Run) -> None:
    """Tile-wise seeds and region growing on the binned movie, then cross-tile merging."""
    seg = run.layout.seg
    sp = _seg_params(run.params)
    binned = DiskStack.open(run.layout.rmbg / "binned.npy")
    _, height, width = binned.shape
    shape = (height, width)
    vessel = np.load(seg / "vessel_mask.npy")
    margin = read_info(run.layout.mc)["margin"]
    border = np.ones(shape, bool)
    border[margin : shape[0] - margin, margin : shape[1] - margin] = False
    corr = np.zeros(shape, np.float32)
    pnr = np.zeros(shape, np.float32)
    pmap = np.zeros(shape, np.float32)
    spans = segment.tiles(shape, sp.patch_size, 3 * sp.gsize)
    window = segment.baseline_window(read_info(run.layout.rmbg)["bin_frames"], run.params["fr"])
    found: list[segment.Candidate] = []
    small: list[segment.Candidate] = []
    with Progress("segmentation", len(spans), unit="tiles") as bar:
        for index, (core, (y0, y1, x0, x1)) in enumerate(spans):
            z, tile_pnr = segment.normalise(binned.read_rows(y0, y1)[:, :, x0:x1], window)
            tile_corr = segment.local_correlation(z)
            exclude = (vessel | border)[y0:y1, x0:x1]
            tile_pmap = segment.probability_map(tile_corr, tile_pnr, ~exclude)
            cy0, cy1, cx0, cx1 = core
            inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
            corr[cy0:cy1, cx0:cx1] = tile_corr[inner]
            pnr[cy0:cy1, cx0:cx1] = tile_pnr[inner]
            pmap[cy0:cy1, cx0:cx1] = tile_pmap[inner]
            tile_found, tile_small = segment.segment_tile(
                z, tile_pmap, exclude, sp, (y0, x0), index
            )
            found += tile_found
            small += [c for c in tile_small if _inside(c.centre, core)]
            bar.update()
    merged = segment.merge_tiles(found, sp.thresh_com)
    kept = [
        c
        for c in merged
        if not vessel[tuple(np.round(c.centre).astype(int))] and vessel[c.rows, c.cols].mean() < 0.5
    ]
    labels = _relabel(segment.label_image(kept, shape))
    np.save(seg / "masks.npy", labels)
    np.save(seg / "correlation_image.npy", corr)
    np.save(seg / "pnr_image.npy", pnr)
    np.save(seg / "pmap.npy", pmap)
    print(
        f"neurons found: {labels.max()} ({len(found)} candidates, "
        f"{len(merged) - len(kept)} on vessels dropped)",
        flush=True,
    )
    rejected = [c.area for c in small if not vessel[tuple(np.round(c.centre).astype(int))]]
    size, suggestions = cellsize.advise([c.area for c in kept], rejected, run.params)
    outputs.write_json(seg / "cell_size.json", {"cell_size": size, "suggestions": suggestions})
    if size["diameter_px"] is not None:
        print(f"typical cell diameter: {size['diameter_px']:.1f} px", flush=True)
    if suggestions:
        print(cellsize.describe(suggestions), flush=True)


def _inside(centre: np.ndarray, core: tuple[int, int, int, int]) -> bool:
    """Whether a point lies in a tile's core (so regions in overlaps count once)."""
    y0, y1, x0, x1 = core
    return y0 <= centre[0] < y1 and x0 <= centre[1] < x1


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive labels 1..N after some neurons were removed."""
    present = np.unique(labels[labels > 0])
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[labels]


# ------------------------------------------------------------------ traces


def extract_traces(run: Run) -> None:
    """Raw and neuropil traces in one pass over the registered movie, then ΔF/F and cons."""
    p, seg = run.params, run.layout.seg
    labels = np.load(seg / "masks.npy")
    registered = Registered(run.layout)
    n = registered.n_frames
    cells = traces.mask_matrix(labels)
    ring = traces.neuropil_matrix(labels, p["rmbg_gsize"])
    used = np.union1d(cells.indices, ring.indices)
    cells, ring = cells[:, used], ring[:, used]
    raw = np.zeros((cells.shape[0], n), np.float32)
    neuropil = np.zeros_like(raw)
    with Progress("traces", n) as bar:
        for start, stop, frames in prefetch(registered.read, n, run.chunk()):
            pixels = np.take(frames.reshape(stop - start, -1), used, axis=1)
            pixels = pixels.T.astype(np.float32, order="C")
            raw[:, start:stop] = cells @ pixels
            neuropil[:, start:stop] = ring @ pixels
            bar.update(stop - start)
    corrected = raw - traces.NEUROPIL_FACTOR * neuropil
    dff = traces.delta_f_over_f(raw, corrected, p["fr"])
    good = _good_mask(read_info(run.layout.preprocess))
    active = traces.longest_active_run(dff, good) >= p["cons"] if len(dff) else np.zeros(0, bool)
    keep = np.flatnonzero(active)
    print(
        f"neurons kept: {len(keep)} of {len(dff)} active for at least {p['cons']} frames",
        flush=True,
    )
    lookup = np.zeros(len(dff) + 1, np.int32)
    lookup[keep + 1] = np.arange(1, len(keep) + 1)
    labels = lookup[labels]
    np.save(seg / "masks.npy", labels)
    np.save(seg / "traces.npy", raw[keep])
    np.save(seg / "neuropil.npy", neuropil[keep])
    np.save(seg / "dff.npy", dff[keep].astype(np.float32))
    np.save(seg / "traces_corrected.npy", corrected[keep])


# ------------------------------------------------------------------ outputs


def _example_neurons(dff: np.ndarray, count: int = 8) -> np.ndarray:
    """Neurons with the clearest transients, for the summary's example traces."""
    if not len(dff):
        return np.zeros(0, int)
    noise = 1.4826 * np.median(np.abs(np.diff(dff, axis=1)), axis=1) + 1e-9
    return np.sort(np.argsort(-(dff.max(axis=1) / noise))[:count])


def _dff_plot(dff: np.ndarray, ids: Collection[int], fr: float, title: str) -> np.ndarray:
    """Stacked ΔF/F rows numbered as in the outlines (1-based)."""
    return outputs.plot_series(
        [dff[k] for k in ids], [f"#{k + 1}" for k in ids], rate=fr, title=title, stacked=True
    )


def write_outputs(run: Run) -> None:
    """Figures, MATLAB and open-format results, and videos when save_movie is on."""
    p, layout = run.params, run.layout
    seg = layout.seg
    labels = np.load(seg / "masks.npy")
    dff = np.load(seg / "dff.npy")
    raw = np.load(seg / "traces.npy")
    neuropil = np.load(seg / "neuropil.npy")
    mean = np.load(layout.mc / "reference.npy")
    corr = np.load(seg / "correlation_image.npy")
    count = int(labels.max())
    width = labels.shape[1]
    pixels = outputs.label_pixels(labels)
    centres = np.array([[(p // width).mean(), (p % width).mean()] for p in pixels]).reshape(-1, 2)
    pages = -(-count // TRACE_PAGE)
    with Progress("outputs", pages + 4, unit="files") as bar:
        overlay = outputs.outlines(mean, labels)
        outputs.save_png(seg / "outlines.png", overlay)
        outputs.save_png(seg / "mean_image.png", mean)
        outputs.save_png(seg / "correlation_image.png", corr)
        summary_panel = outputs.side_by_side(
            [mean, corr, overlay], ["mean image", "correlation image", f"{count} neurons"]
        )
        outputs.save_png(seg / "SEG_SUM.png", summary_panel)
        bar.update()
        examples = _example_neurons(dff)
        example_plot = _dff_plot(dff, examples, p["fr"], "example neurons: dF/F")
        outputs.save_png(seg / "example_traces.png", example_plot)
        bar.update()
        folder = seg / "Neuron_trace"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for page in range(pages):
            ids = range(page * TRACE_PAGE, min(count, (page + 1) * TRACE_PAGE))
            plot = _dff_plot(dff, ids, p["fr"], "dF/F")
            outputs.save_png(folder / f"neurons_{ids[0] + 1:04d}-{ids[-1] + 1:04d}.png", plot)
            bar.update()
        one_based = centres + 1
        outputs.write_mat(
            seg / "seg_results.mat",
            {
                "masks": labels,
                "cm": one_based,
                "num_neurons": count,
                "note": "masks: label image, 0 = background, k = neuron k; cm: (row, col) 1-based",
            },
        )
        outputs.write_mat(
            seg / "infer_results.mat",
            {
                "C": dff,
                "F_raw": raw,
                "F_neuropil": neuropil,
                "fr": p["fr"],
                "note": "C: dF/F, neurons x frames (neuropil-corrected, sliding baseline)",
            },
        )
        outputs.write_mat(seg / "cm.mat", {"cm": one_based})
        outputs.write_json(seg / "rois.json", outputs.neurofinder_rois(labels), indent=None)
        np.save(seg / "centres.npy", centres)
        bar.update()
        if p["save_movie"]:
            _videos(run)
        bar.update()


def _videos(run: Run) -> None:
    """mc.avi and rmbg.avi previews with every 1/downsample_ratio-th frame."""
    p, layout = run.params, run.layout
    registered = Registered(layout)
    n = registered.n_frames
    step = max(1, round(1 / p["downsample_ratio"]))
    picks = range(0, n, step)
    mean = np.load(layout.mc / "reference.npy")
    lo, hi = np.percentile(mean, [0.5, 99.9])
    hi = lo + 1.5 * (hi - lo)

    def scaled(frames: np.ndarray, low: float, high: float) -> np.ndarray:
        scaled = 255 * (np.nan_to_num(frames) - low) / max(high - low, 1e-9)
        return np.clip(scaled, 0, 255).astype(np.uint8)

    fps = max(1.0, p["fr"] * p["downsample_ratio"] * 4)
    binned = DiskStack.open(layout.rmbg / "binned.npy")
    peak = np.load(layout.rmbg / "max_projection.npy")
    top = float(np.percentile(peak, 99.5))
    bin_step = max(1, round(len(binned) * step / max(n, 1)))
    movies = [
        (layout.mc / "mc.avi", (scaled(registered.read(i, i + 1)[0], lo, hi) for i in picks)),
        (
            layout.rmbg / "rmbg.avi",
            (
                scaled(binned.read(i, i + 1)[0].astype(np.float32), 0, top)
                for i in range(0, len(binned), bin_step)
            ),
        ),
    ]
    with ThreadPoolExecutor(len(movies)) as pool:
        jobs = [
            pool.submit(outputs.write_video, path, frames, fps, p["avi_quality"])
            for path, frames in movies
        ]
        for job in jobs:
            job.result()


def write_summary(run: Run, started: float) -> None:
    """summary.json, written last: its presence means the run finished."""
    layout = run.layout
    pre = read_info(layout.preprocess)
    labels = np.load(layout.seg / "masks.npy")
    seg_name = layout.seg.name
    size_file = layout.seg / "cell_size.json"
    size = json.loads(size_file.read_text("utf-8")) if size_file.exists() else {}
    previews = [
        ("mean image", f"{seg_name}/mean_image.png"),
        ("correlation image", f"{seg_name}/correlation_image.png"),
        ("neuron outlines over the mean image", f"{seg_name}/outlines.png"),
        ("example ΔF/F traces", f"{seg_name}/example_traces.png"),
        ("motion-correction shifts", "mc/shifts.png"),
    ]
    summary = {
        "pipeline": "pico_nb built-in CPU pipeline",
        "data_path": str(run.data_path),
        "out_path": str(layout.root),
        "input": pre["input"],
        "frames": pre["frames"],
        "size": pre["frame_shape"],
        "bad_frames": pre["bad_frames"],
        "neurons": int(labels.max()),
        "cell_size": size.get("cell_size"),
        "suggestions": size.get("suggestions", {}),
        "stage_seconds": run.seconds,
        "stage_cpu_seconds": run.cpu_seconds,
        "total_seconds": round(time.perf_counter() - started, 3),
        "peak_memory_mb": peak_memory_mb(),
        "result_dir": seg_name,
        "files": {
            "masks": f"{seg_name}/masks.npy",
            "traces": f"{seg_name}/traces.npy",
            "dff": f"{seg_name}/dff.npy",
            "rois": f"{seg_name}/rois.json",
            "shifts": "mc/shifts.csv",
            "bad_frames": "preprocess/bad_frames.csv",
        },
        "previews": {
            "images": [
                {"title": t, "path": path} for t, path in previews if (layout.root / path).exists()
            ]
        },
        "params": run.params,
    }
    outputs.write_json(layout.summary, summary)


STAGES: tuple[tuple[str, Callable[[Run], None]], ...] = (
    ("loading", load),
    ("bad frame detection", repair),
    ("crop and intensity correction", flatten),
    ("motion correction", motion_correct),
    ("background removal", remove_background),
    ("vessel mask", find_vessels),
    ("segmentation", segment_neurons),
    ("traces", extract_traces),
    ("outputs", write_outputs),
)
