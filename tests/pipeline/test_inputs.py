"""Inputs: JPEG/TIFF discovery, and every bad input stops the real program with a clear message."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from pico_nb.contract.sources import discover
from pico_nb.pipeline.load import FrameReader

Runner = Callable[..., subprocess.CompletedProcess[str]]


def frames_folder(folder: Path, count: int = 12, size: tuple[int, int] = (40, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), rng.integers(0, 255, size, dtype=np.uint8))
    return folder


def test_jpeg_sequence_in_numeric_order(tmp_path: Path) -> None:
    folder = frames_folder(tmp_path / "jpg")
    source = discover(folder)
    assert source.n_frames == 12 and source.frame_shape == (40, 48)
    assert [f.name for f in source.files[:3]] == ["frame_0.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert source.files[10].name == "frame_10.jpg"
    frames = FrameReader(source).read(9, 12)
    assert np.array_equal(frames[1], cv2.imread(str(folder / "frame_10.jpg"), 0))


def test_tiff_stack_and_tiff_sequence_read_the_same_frames(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (10, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, frame in enumerate(data):
        tifffile.imwrite(seq / f"img_{i:03d}.tif", frame)
    for path in (tmp_path / "stack.tif", seq):
        source = discover(path)
        assert source.n_frames == 10 and source.dtype == np.uint16
        assert np.array_equal(FrameReader(source).read(2, 9), data[2:9])


def _expect_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_frame(tmp_path: Path, pipeline: Runner) -> None:
    folder = frames_folder(tmp_path / "in")
    (folder / "frame_5.jpg").unlink()
    _expect_error(pipeline(folder, tmp_path / "out"), "data_path", "frame_5.jpg", "missing")


def test_mixed_sizes(tmp_path: Path, pipeline: Runner) -> None:
    folder = frames_folder(tmp_path / "in")
    cv2.imwrite(str(folder / "frame_7.jpg"), np.zeros((30, 48), np.uint8))
    _expect_error(pipeline(folder, tmp_path / "out"), "frame_7.jpg", "30×48")


def test_unreadable_header(tmp_path: Path, pipeline: Runner) -> None:
    folder = frames_folder(tmp_path / "in")
    (folder / "frame_3.jpg").write_bytes(b"not a jpeg at all")
    _expect_error(pipeline(folder, tmp_path / "out"), "frame_3.jpg", "not a JPEG")


def test_damaged_image_data(tmp_path: Path, pipeline: Runner) -> None:
    folder = frames_folder(tmp_path / "in")
    good = (folder / "frame_4.jpg").read_bytes()
    (folder / "frame_4.jpg").write_bytes(good[:200])
    done = pipeline(folder, tmp_path / "out", "--crop_parameter", "0", "0", "40", "48")
    _expect_error(done, "frame_4.jpg", "truncated")


def test_empty_folder(tmp_path: Path, pipeline: Runner) -> None:
    (tmp_path / "in").mkdir()
    _expect_error(pipeline(tmp_path / "in", tmp_path / "out"), "data_path", "no frame_N.jpg")


def test_missing_input(tmp_path: Path, pipeline: Runner) -> None:
    _expect_error(pipeline(tmp_path / "nowhere", tmp_path / "out"), "data_path", "does not exist")


def test_crop_outside_the_frame(tmp_path: Path, pipeline: Runner) -> None:
    folder = frames_folder(tmp_path / "in")
    original_default = ("--crop_parameter", "153", "303", "1000", "1000")
    done = pipeline(folder, tmp_path / "out", *original_default)
    _expect_error(done, "crop_parameter", "40×48")
    assert not (tmp_path / "out" / "preprocess" / "movie.npy").exists()


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--max_shifts", "a,b"], "max_shifts"),
        (["--jump_to_seg", "true"], "jump_to_seg"),
        (["--no_such_flag", "1"], "no_such_flag"),
    ],
)
def test_bad_flags(tmp_path: Path, pipeline: Runner, flags: list[str], field: str) -> None:
    _expect_error(pipeline(tmp_path, tmp_path / "out", *flags), field)


def test_a_blank_movie_finds_nothing_and_says_so(tmp_path: Path, pipeline: Runner) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), np.zeros((40, 48), np.uint8))
    shutil.copy(folder / "frame_0.jpg", folder / "frame_12.jpg")
    done = pipeline(folder, tmp_path / "out", "--crop_parameter", "0", "0", "40", "48")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "neurons found: 0" in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 13 and summary["neurons"] == 0 and summary["bad_frames"] == []
