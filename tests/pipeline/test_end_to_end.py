"""End-to-end runs of `python -m pico_nb.pipeline` on generated data, and the jump flags."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import tifffile

from pico_nb.pipeline import score

pytestmark = pytest.mark.slow

CROP_128 = ("--crop_parameter", "0", "0", "128", "128")
Runner = Callable[..., subprocess.CompletedProcess[str]]
STAGES = [
    "loading",
    "bad frame detection",
    "crop and intensity correction",
    "motion correction",
    "background removal",
    "vessel mask",
    "segmentation",
    "traces",
    "outputs",
]


def banners(stdout: str) -> list[str]:
    """Stage names in order; each banner also says which stage of how many it is."""
    found = re.findall(r"^=======> (.+) \(stage (\d+) of (\d+)\) <=======$", stdout, flags=re.M)
    assert [(int(k), int(n)) for _, k, n in found] == [
        (k, len(found)) for k in range(1, len(found) + 1)
    ]
    return [name for name, _, _ in found]


def test_default_run_finds_the_neurons_and_the_motion(
    demo_run: tuple[Path, str], demo: Path
) -> None:
    out, _ = demo_run
    result = score.score(out, demo / "ground_truth.npz")
    assert result["centre"]["f1"] >= 0.9, score.format_report(result)
    assert result["registration_error_px"]["rms"] <= 0.2, score.format_report(result)
    assert result["bad_frames"]["missed"] == []
    assert result["bad_frames"]["false_alarms"] == []
    assert result["trace_correlation_median"] > 0.8


def test_stdout_has_banners_and_tqdm_style_progress(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    assert banners(stdout) == STAGES
    bar = re.compile(
        r"motion correction: +(\d+)%\|.{10}\| (\d+)/300 \[\d\d:\d\d<\d\d:\d\d, [\d.]+frames/s\]"
    )
    updates = [bar.fullmatch(part) for part in re.split(r"[\r\n]", stdout) if bar.fullmatch(part)]
    assert updates and updates[-1].group(1) == "100"
    assert "motion correction: 100%|██████████| 300/300" in stdout


def test_outputs_in_the_original_layout_and_open_formats(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    seg = out / summary["result_dir"]
    assert summary["result_dir"] == "seg_results_thresh_pmap_1"
    assert summary["frames"] == 300 and summary["size"] == [256, 256]
    assert set(summary["stage_seconds"]) == set(STAGES)
    assert 20 < summary["peak_memory_mb"] < 4000  # the pipeline's own peak, for compare
    for image in summary["previews"]["images"]:
        assert (out / image["path"]).stat().st_size > 0, image
    assert len(summary["previews"]["images"]) >= 4
    for name in ("SEG_SUM.png", "rois.json", "masks.npy", "traces.npy", "dff.npy", "cm.mat"):
        assert (seg / name).exists(), name
    count = summary["neurons"]
    assert sio.loadmat(seg / "infer_results.mat")["C"].shape == (count, 300)
    assert sio.loadmat(seg / "cm.mat")["cm"].shape == (count, 2)
    assert np.load(seg / "masks.npy").max() == count
    assert len(json.loads((seg / "rois.json").read_text())) == count
    assert list((seg / "Neuron_trace").glob("*.png"))
    assert tifffile.imread(out / "mc" / "registered.tif").shape == (300, 256, 256)
    assert (out / "mc" / "mc.avi").stat().st_size > 0
    shifts = np.loadtxt(out / "mc" / "shifts.csv", delimiter=",", skiprows=1)
    assert shifts.shape == (300, 3)


def _copy(out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(out, target)
    return target


def test_jump_flags_reuse_earlier_outputs(
    demo_run: tuple[Path, str], demo: Path, tmp_path: Path, pipeline: Runner
) -> None:
    out = _copy(demo_run[0], tmp_path)
    shifts = (out / "mc" / "shifts.csv").read_bytes()
    crop = ["--crop_parameter", "0", "0", "256", "256"]
    cases = [
        (["--jump_to_rmbg", "true"], STAGES[4:]),
        (["--jump_to_rmbg", "true", "--jump_to_seg", "true"], STAGES[5:]),
        (["--jump_to_rmbg", "true", "--jump_to_seg", "true", "--jump_to_vis", "true"], STAGES[8:]),
    ]
    for flags, expected in cases:
        done = pipeline(demo, out, *crop, *flags)
        assert done.returncode == 0, done.stderr
        assert banners(done.stdout) == expected
        assert (out / "mc" / "shifts.csv").read_bytes() == shifts
        assert score.score(out, demo / "ground_truth.npz")["centre"]["f1"] >= 0.9


def test_jump_without_earlier_outputs_is_a_clear_error(
    small: Path, tmp_path: Path, pipeline: Runner
) -> None:
    done = pipeline(small, tmp_path / "empty", "--jump_to_rmbg", "true")
    assert done.returncode == 2
    assert "jump_to_rmbg" in done.stderr and "preprocess" in done.stderr
    assert "Traceback" not in done.stderr


def test_flag_variants_on_a_tiff_stack(small: Path, tmp_path: Path, pipeline: Runner) -> None:
    """Piecewise-rigid, Fourier shifts, no saved movie (frames re-derived), flat-field."""
    out = tmp_path / "out"
    flags = "--pw_rigid true --save_movie false --shifts_opencv false --intensity_corr_flag true"
    flags += " --strides 48,48 --overlaps 24,24 --border_nan min"
    done = pipeline(small / "movie.tif", out, *CROP_128, *flags.split())
    assert done.returncode == 0, done.stderr
    assert not (out / "mc" / "registered.tif").exists()
    assert np.load(out / "mc" / "pw_shifts.npy").shape[:2] == (200, 3)
    result = score.score(out, small / "ground_truth.npz")
    assert result["centre"]["f1"] >= 0.8, score.format_report(result)


def test_nan_borders_stay_out_of_the_results(small: Path, tmp_path: Path, pipeline: Runner) -> None:
    out = tmp_path / "out"
    flags = "--border_nan true --intensity_corr_flag true".split()
    done = pipeline(small / "movie.tif", out, *CROP_128, *flags)
    assert done.returncode == 0, done.stderr
    assert np.isnan(tifffile.imread(out / "mc" / "registered.tif")).any()
    seg = out / "seg_results_thresh_pmap_1"
    assert np.isfinite(np.load(seg / "dff.npy")).all()
    assert score.score(out, small / "ground_truth.npz")["centre"]["f1"] >= 0.8


def test_set_frame_num_and_crop(small: Path, tmp_path: Path, pipeline: Runner) -> None:
    out = tmp_path / "out"
    done = pipeline(
        small, out, "--crop_parameter", "10", "20", "100", "90", "--set_frame_num", "120"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 120 and summary["size"] == [100, 90]
    result = score.score(out, small / "ground_truth.npz")
    assert result["centre"]["matched"] >= 2 and result["centre"]["precision"] >= 0.8
