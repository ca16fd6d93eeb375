"""Input formats labs have: multi-page/BigTIFF/ScanImage stacks, HDF5 datasets, NWB imaging
series; each described from its header, read chunk by chunk, and refused clearly when bad."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.sources import discover
from pico_nb.frames import detect_frames
from pico_nb.pipeline import score, synthetic
from pico_nb.pipeline.load import FrameReader

Runner = Callable[..., subprocess.CompletedProcess[str]]
MOVIE = np.random.default_rng(5).integers(0, 4000, (12, 24, 32), dtype=np.uint16)


def _error(path: Path | str) -> str:
    with pytest.raises(ValidationError) as caught:
        discover(path)
    return caught.value.errors["data_path"]


def test_bigtiff_written_page_by_page(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for frame in MOVIE:
            tif.write(frame, contiguous=False)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and len(tif.pages) == 12
    source = discover(path)
    assert (source.n_frames, source.frame_shape, source.dtype) == (12, (24, 32), np.uint16)
    assert np.array_equal(FrameReader(source).read(3, 11), MOVIE[3:11])


def test_scanimage_stack(tmp_path: Path) -> None:
    path = tmp_path / "scan_00001.tif"
    with tifffile.TiffWriter(path) as tif:
        for i, frame in enumerate(MOVIE):
            tif.write(frame, software="SI.", description=f"frameNumbers = {i + 1}", metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_scanimage
    source = discover(path)
    assert source.n_frames == 12
    assert np.array_equal(FrameReader(source).read(0, 12), MOVIE)


def test_hdf5_dataset_found_when_unique_or_named(tmp_path: Path) -> None:
    folder = tmp_path / "session"
    folder.mkdir()
    with h5py.File(folder / "rec.h5", "w") as h5:
        h5["meta/timestamps"] = np.arange(12.0)
        h5.create_dataset("imaging/frames", data=MOVIE, chunks=(4, 24, 32), compression="gzip")
    source = discover(folder)
    assert source.dataset == "/imaging/frames" and source.n_frames == 12
    assert "rec.h5:/imaging/frames" in source.describe()
    assert np.array_equal(FrameReader(source).read(5, 12), MOVIE[5:])
    info = detect_frames(folder)
    assert (info.count, info.height, info.width) == (12, 24, 32)

    with h5py.File(folder / "rec.h5", "a") as h5:
        h5["imaging/red"] = MOVIE[:, ::-1]
    message = _error(folder / "rec.h5")
    assert "/imaging/frames" in message and "/imaging/red" in message and "rec.h5:/" in message
    named = discover(f"{folder / 'rec.h5'}:/imaging/red")
    assert np.array_equal(FrameReader(named).read(0, 2), MOVIE[:2, ::-1])
    assert "has no dataset /imaging/blue" in _error(f"{folder / 'rec.h5'}:/imaging/blue")


@pytest.mark.parametrize("kind", ["TwoPhotonSeries", "OnePhotonSeries"])
def test_nwb_imaging_series(tmp_path: Path, kind: str) -> None:
    from pynwb import NWBHDF5IO, NWBFile, ophys

    nwb = NWBFile("test", "id-1", datetime(2026, 1, 1, tzinfo=UTC))
    device = nwb.create_device(name="scope")
    channel = ophys.OpticalChannel(name="green", description="GCaMP", emission_lambda=520.0)
    plane = nwb.create_imaging_plane(
        name="plane",
        optical_channel=channel,
        description="V1",
        device=device,
        excitation_lambda=920.0,
        indicator="GCaMP6f",
        location="V1",
        imaging_rate=10.0,
    )
    series = getattr(ophys, kind)(
        name=kind, data=MOVIE, imaging_plane=plane, rate=10.0, unit="n.a."
    )
    nwb.add_acquisition(series)
    path = tmp_path / "session.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    source = discover(path)
    assert source.kind == f"nwb {kind}" and source.dataset == f"/acquisition/{kind}/data"
    assert np.array_equal(FrameReader(source).read(0, 12), MOVIE)
    assert discover(f"{path}:/acquisition/{kind}").dataset == f"/acquisition/{kind}/data"


def test_corrupt_and_unsupported_files_are_refused_clearly(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "good.h5", "w") as h5:
        h5["frames"] = MOVIE
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    assert "cut.h5: is not a readable HDF5/NWB file" in _error(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as h5:
        h5["image"] = MOVIE[0]
    assert "holds 0 frame × height × width datasets" in _error(tmp_path / "flat.h5")
    (tmp_path / "movie.avi").write_bytes(b"RIFF")
    assert "is none of" in _error(tmp_path / "movie.avi")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    assert "is not a readable TIFF" in _error(tmp_path / "bad.tif")


def test_without_h5py_the_message_says_what_to_install(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "rec.h5", "w") as h5:
        h5["frames"] = MOVIE
    code = (
        "import sys; sys.modules['h5py'] = None\n"
        "from pico_nb.frames import detect_frames\n"
        f"detect_frames({str(tmp_path)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "needs h5py: pip install 'pico-nb[formats]'" in done.stderr


@pytest.mark.slow
def test_pipeline_runs_on_an_hdf5_movie(tmp_path: Path, pipeline: Runner) -> None:
    demo = synthetic.generate(tmp_path / "demo", size=(128, 128), frames=200, seed=2, fmt="tiff")
    with h5py.File(demo / "movie.h5", "w") as h5:
        h5.create_dataset("movie", data=tifffile.imread(demo / "movie.tif"), chunks=(50, 128, 128))
    (demo / "movie.tif").unlink()
    out = tmp_path / "out"
    done = pipeline(demo, out, "--crop_parameter", "0", "0", "128", "128")
    assert done.returncode == 0, done.stderr
    result = score.score(out, demo / "ground_truth.npz")
    assert result["centre"]["f1"] >= 0.8, score.format_report(result)
    assert result["bad_frames"]["missed"] == []
