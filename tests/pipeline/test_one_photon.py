"""One-photon demo movies: active out-of-focus haze, pulsing vessels, vignetting, and a
pipeline that still finds the cells and never reports a vessel as one."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pico_nb.pipeline import score, synthetic

pytestmark = pytest.mark.slow

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def one_photon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256×256×800 one-photon movie whose vessel crosses the field (seed 14)."""
    return synthetic.generate(
        tmp_path_factory.mktemp("one_photon"),
        size=(256, 256),
        frames=800,
        seed=14,
        fmt="tiff",
        mode="one-photon",
    )


@pytest.fixture(scope="module")
def one_photon_run(one_photon: Path, pipeline: Runner, tmp_path_factory: pytest.TempPathFactory):
    """The pipeline with its defaults on the one-photon movie."""
    out = tmp_path_factory.mktemp("one_photon_run") / "out"
    done = pipeline(one_photon / "movie.tif", out, "--crop_parameter", "0", "0", "256", "256")
    assert done.returncode == 0, done.stderr
    return out


def _spectrum(trace: np.ndarray, fr: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and power of a mean-free trace."""
    trace = trace - trace.mean()
    return np.fft.rfftfreq(len(trace), 1 / fr), np.abs(np.fft.rfft(trace)) ** 2


def test_the_one_photon_movie_has_haze_pulsing_vessels_and_vignetting(
    one_photon: Path, tmp_path: Path
) -> None:
    movie = tifffile.imread(one_photon / "movie.tif").astype(np.float32)
    truth = np.load(one_photon / "ground_truth.npz")
    assert str(truth["mode"]) == "one-photon"
    vessel = truth["vessels"]
    near = np.zeros_like(vessel)
    ys, xs = np.nonzero(vessel)
    near[np.clip(ys + 12, 0, 255), xs] = True
    near &= ~vessel
    ratio = movie[:, vessel].mean(axis=1) / movie[:, near].mean(axis=1)
    freq, power = _spectrum(ratio, 10)
    band = (freq > 0.3) & (freq < 5)
    assert 0.7 < freq[band][power[band].argmax()] < 1.4  # the vessels pulse at about 1 Hz

    mean = movie.mean(axis=0)
    assert mean[:24, :24].mean() < 0.6 * mean[104:152, 104:152].mean()  # vignetting

    two_photon = synthetic.generate(tmp_path, size=(256, 256), frames=800, seed=14, fmt="tiff")
    other = tifffile.imread(two_photon / "movie.tif").astype(np.float32)

    def haze(m: np.ndarray) -> float:
        """Temporal spread of 16×16 block means around the frame's mean: cells average out,
        field-wide drift cancels, local active haze stays."""
        blocks = m.reshape(len(m), 16, 16, 16, 16).mean(axis=(2, 4))
        blocks -= blocks.mean(axis=(1, 2), keepdims=True)
        return float(np.median(blocks.std(axis=0)))

    assert haze(movie) > 2 * haze(other)


def test_one_photon_cells_are_found_and_vessels_are_not(
    one_photon: Path, one_photon_run: Path
) -> None:
    result = score.score(one_photon_run, one_photon / "ground_truth.npz")
    assert result["centre"]["f1"] >= 0.95, score.format_report(result)
    assert result["bad_frames"]["missed"] == [] and result["bad_frames"]["false_alarms"] == []
    vessel = np.load(one_photon / "ground_truth.npz")["vessels"]
    labels = np.load(one_photon_run / "seg_results_thresh_pmap_1" / "masks.npy")
    on_vessels = [k for k in range(1, labels.max() + 1) if vessel[labels == k].mean() > 0.3]
    assert on_vessels == []
    found = np.load(one_photon_run / "seg_results_thresh_pmap_1" / "vessel_mask.npy")
    assert (found & vessel).sum() > 0.5 * vessel.sum()


def test_demo_data_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path / "m"), "--size", "96", "96", "--frames", "20", "--format", "tiff"]
    assert synthetic.main([*argv, "--mode", "one-photon", "--cell-diameter", "8"]) == 0
    truth = np.load(tmp_path / "m" / "ground_truth.npz")
    assert str(truth["mode"]) == "one-photon"
    assert abs(np.median(truth["diameters"]) - 8) < 0.8
    with pytest.raises(SystemExit) as stopped:
        synthetic.main([*argv, "--cell-diameter", "50"])
    assert stopped.value.code == 2
    assert "--cell-diameter must be between 3 and 40 pixels" in capsys.readouterr().err
