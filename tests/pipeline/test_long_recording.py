"""Long recordings: bins that keep transients however long the movie, tiles that fit memory."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import numpy as np
import pytest

from pico_nb.pipeline import score, synthetic
from pico_nb.pipeline.stages import background_removal, segmentation

Runner = Callable[..., subprocess.CompletedProcess[str]]


def test_a_long_recording_keeps_as_many_bins_as_memory_allows() -> None:
    assert background_removal.bin_plan(2000, 10) == (5, 1)  # half-second means, unpooled
    means, pool = background_removal.bin_plan(30_000, 10)
    assert (means, pool) == (5, 2)
    assert -(-30_000 // (means * pool)) == background_removal.MAX_BINS


def test_a_pooled_bin_keeps_a_short_transient_s_peak() -> None:
    frames = np.zeros((15, 4, 4), np.float32)
    frames[5:10, 1, 2] = 9.0  # one half-second step of a 1.5 s bin
    binned = background_removal._bins(frames, 5, 3)
    assert binned.shape == (1, 4, 4)
    assert binned[0, 1, 2] == pytest.approx(9.0)  # the mean of 15 frames would say 3
    assert binned[0, 0, 0] == 0.0


@pytest.mark.parametrize("bins", [100, 400, 2000, 20_000])
def test_tiles_shrink_as_bins_grow_so_a_tile_fits_its_memory(bins: int) -> None:
    margin = 18
    side = segmentation.tile_side(500, bins, margin)
    assert 4 * margin <= side <= 500
    if side > 4 * margin:  # not at the floor: the span with its margins fits the budget
        assert (side + 2 * margin) ** 2 * bins * 10 <= segmentation.TILE_BYTES
    assert segmentation.tile_side(500, 2 * bins, margin) <= side


@pytest.mark.slow
def test_cells_are_found_in_a_recording_longer_than_its_bins(tmp_path, pipeline: Runner) -> None:
    """At 2 Hz, 6,000 frames are 2 frames to a bin: the old 500-bin cap averaged 12 frames
    and lost most cells."""
    folder = synthetic.generate(
        tmp_path / "movie", size=(128, 128), frames=6000, fr=2, seed=31, fmt="tiff"
    )
    out = tmp_path / "out"
    flags = ("--fr", "2", "--crop_parameter", "0", "0", "128", "128", "--save_movie", "false")
    done = pipeline(folder / "movie.tif", out, *flags, "--minArea", "20", "--avgArea", "50")
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "rmbg" / "info.json").read_text())
    assert info["bin_pool"] == 2 and info["bins"] == background_removal.MAX_BINS
    found = score.score(out, folder / "ground_truth.npz")
    assert found["iou"]["f1"] >= 0.9, found
