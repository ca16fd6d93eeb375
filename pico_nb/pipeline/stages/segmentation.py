"""The vessel mask and neuron segmentation: the stages that find the cells."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pico_nb.pipeline import cellsize, segment, vessels, writers
from pico_nb.pipeline.flags import Flags
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info
from pico_nb.pipeline.parallel import THREADS
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.store import DiskStack

TILE_BYTES = 400 * 2**20
"""Memory for one tile's binned movie and its normalised copy (about 10 bytes a pixel and
bin), THREADS tiles at a time: tiles shrink as recordings grow, so segmentation's memory
does not."""
TileResult = tuple[tuple[np.ndarray, ...], list[segment.Candidate], list[segment.Candidate]]
"""A tile's core of the correlation, PNR and probability images, its regions, its small ones."""


def tile_side(patch_size: int, bins: int, margin: int) -> int:
    """The largest tile core, at most patch_size, whose span with its margins fits TILE_BYTES."""
    span = int(np.sqrt(TILE_BYTES / (10 * max(bins, 1))))
    return max(4 * margin, min(patch_size, span - 2 * margin))


def find_vessels(run: Invocation) -> None:
    """Dark ridges of the mean registered image."""
    reference = np.load(run.layout.mc / "reference.npy")
    mask = vessels.vessel_mask(reference, run.flags.rmbg_gsize)
    np.save(run.layout.seg / "vessel_mask.npy", mask)
    writers.save_png(run.layout.seg / "vessel_mask.png", (mask * 255).astype(np.uint8))
    print(f"vessel pixels: {100 * mask.mean():.1f}% of the field", flush=True)


def _seg_params(flags: Flags) -> segment.SegParams:
    """The segmentation flags in one object."""
    return segment.SegParams(
        gsize=flags.rmbg_gsize,
        min_area=flags.minArea,
        avg_area=flags.avgArea,
        thresh_pmap=flags.thresh_pmap,
        thresh_mask=flags.thresh_mask,
        thresh_com0=flags.thresh_COM0,
        thresh_com=flags.thresh_COM,
        pixel_size=flags.pixel_size,
        patch_size=flags.patch_size,
    )


def segment_neurons(run: Invocation) -> None:
    """Tile-wise seeds and region growing on the binned movie, then cross-tile merging."""
    seg = run.layout.seg
    sp = _seg_params(run.flags)
    binned = DiskStack.open(run.layout.rmbg / "binned.npy")
    bins, height, width = binned.shape
    shape = (height, width)
    vessel = np.load(seg / "vessel_mask.npy")
    margin = read_info(run.layout.mc)["margin"]
    border = np.ones(shape, bool)
    border[margin : shape[0] - margin, margin : shape[1] - margin] = False
    corr = np.zeros(shape, np.float32)
    pnr = np.zeros(shape, np.float32)
    pmap = np.zeros(shape, np.float32)
    margin_px = 3 * sp.gsize
    spans = segment.tiles(shape, tile_side(sp.patch_size, bins, margin_px), margin_px)
    window = segment.baseline_window(read_info(run.layout.rmbg)["bin_frames"], run.flags.fr)
    exclude = vessel | border
    found: list[segment.Candidate] = []
    small: list[segment.Candidate] = []

    def one_tile(index: int) -> TileResult:
        core, (y0, y1, x0, x1) = spans[index]
        z, tile_pnr = segment.normalise(binned.read_tile(y0, y1, x0, x1), window)
        tile_corr = segment.local_correlation(z)
        tile_exclude = exclude[y0:y1, x0:x1]
        tile_pmap = segment.probability_map(tile_corr, tile_pnr, ~tile_exclude)
        tile_found, tile_small = segment.segment_tile(
            z, tile_pmap, tile_exclude, sp, (y0, x0), index
        )
        cy0, cy1, cx0, cx1 = core
        inner = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        images = (tile_corr[inner], tile_pnr[inner], tile_pmap[inner])
        return images, tile_found, [c for c in tile_small if _inside(c.centre, core)]

    with (
        Progress(Stage.SEGMENTATION.value, len(spans), unit="tiles") as bar,
        ThreadPoolExecutor(THREADS) as pool,
    ):
        for (core, _), (images, tile_found, tile_small) in zip(
            spans, pool.map(one_tile, range(len(spans))), strict=True
        ):
            cy0, cy1, cx0, cx1 = core
            for whole, part in zip((corr, pnr, pmap), images, strict=True):
                whole[cy0:cy1, cx0:cx1] = part
            found += tile_found
            small += tile_small
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
    size, suggestions = cellsize.advise([c.area for c in kept], rejected, run.flags)
    writers.write_json(seg / "cell_size.json", {"cell_size": size, "suggestions": suggestions})
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
