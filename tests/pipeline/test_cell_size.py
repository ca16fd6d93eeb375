"""Cell size measured from the movie, and suggestions when minArea/avgArea assume bigger cells."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pico_nb.pipeline import cellsize, score, synthetic
from pico_nb.pipeline.flags import Flags

pytestmark = pytest.mark.slow

Runner = Callable[..., subprocess.CompletedProcess[str]]
CROP = ("--crop_parameter", "0", "0", "256", "256", "--save_movie", "false")
DIAMETERS = (7.0, 11.6, 16.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, pipeline: Runner) -> dict[float, tuple]:
    """Per cell diameter: (movie folder, out_path, stdout) of a default run."""
    made = {}
    for diameter in DIAMETERS:
        folder = tmp_path_factory.mktemp(f"cells_{diameter:g}")
        synthetic.generate(
            folder, size=(256, 256), frames=600, seed=21, fmt="tiff", diameter=diameter
        )
        out = folder / "out"
        done = pipeline(folder / "movie.tif", out, *CROP)
        assert done.returncode == 0, done.stderr
        made[diameter] = (folder, out, done.stdout)
    return made


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("diameter", DIAMETERS)
def test_cell_diameter_is_measured_from_the_movie(runs: dict, diameter: float) -> None:
    folder, out, stdout = runs[diameter]
    true = float(np.median(np.load(folder / "ground_truth.npz")["diameters"]))
    found = _summary(out)["cell_size"]["diameter_px"]
    assert abs(found - true) <= 0.2 * true, (found, true)
    assert f"typical cell diameter: {found:.1f} px" in stdout


def test_defaults_that_fit_the_cells_bring_no_suggestion(runs: dict) -> None:
    _, out, stdout = runs[11.6]
    assert _summary(out)["suggestions"] == {}
    assert "suggestion:" not in stdout


def test_small_cells_get_suggested_values_and_the_clone_finds_them(
    runs: dict, pipeline: Runner
) -> None:
    folder, out, stdout = runs[7.0]
    truth = folder / "ground_truth.npz"
    assert score.score(out, truth)["centre"]["recall"] < 0.8  # minArea 50 drops small cells
    suggestions = _summary(out)["suggestions"]
    values = suggestions["params"]
    assert values["minArea"] < 50 and values["avgArea"] < 100
    assert "minArea 50 rejected" in suggestions["why"]
    line = next(line for line in stdout.splitlines() if line.startswith("suggestion:"))
    assert f"--minArea {values['minArea']}" in line

    clone = folder / "clone"
    flags = [str(v) for k, value in values.items() for v in (f"--{k}", value)]
    done = pipeline(folder / "movie.tif", clone, *CROP, *flags)
    assert done.returncode == 0, done.stderr
    result = score.score(clone, truth)
    assert result["centre"]["f1"] >= 0.95, score.format_report(result)
    assert _summary(clone)["suggestions"] == {}


def test_only_cell_sized_rejections_count_towards_a_suggestion() -> None:
    values = {"minArea": 50, "avgArea": 100, "rmbg_gsize": 6, "pixel_size": 2}
    flags = Flags.from_values(values)
    size, suggestions = cellsize.advise([100] * 20, [20] * 10, flags)  # fragments, not cells
    assert suggestions == {} and size["rejected_by_min_area"] == 0
    size, suggestions = cellsize.advise([60] * 10, [45] * 10, flags)
    assert size["rejected_share"] == 0.5 and round(size["diameter_px"], 1) == 8.2
    assert suggestions["params"] == {"minArea": 26, "avgArea": 52, "rmbg_gsize": 4, "pixel_size": 1}
    already = Flags.from_values({**values, **suggestions["params"]})  # they already say so
    assert cellsize.advise([60] * 10, [45] * 10, already)[1] == {}
