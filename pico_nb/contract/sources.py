"""What an input folder holds: frame_N.jpg sequences, TIFF stacks or sequences (multi-page,
BigTIFF, ScanImage), HDF5 datasets and NWB TwoPhotonSeries/OnePhotonSeries.

Checked from names and headers alone, without decoding a frame, so forms can confirm a folder
at once and the pipeline can refuse a bad input before any heavy work; both read it here, so
they agree on what the movie is. An HDF5 or NWB file's movie is the one 3-D dataset (or
imaging series) it holds; when it holds several, the data path names one after a colon:
`session.h5:/imaging/frames`, `rec.nwb:/acquisition/TwoPhotonSeries`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from pico_nb.contract.errors import ValidationError

JPEG_SUFFIXES = (".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nwb")
IMAGING_SERIES = ("TwoPhotonSeries", "OnePhotonSeries")
FORMATS_EXTRA = "pip install 'pico-nb[formats]'"
_NUMBER = re.compile(r"(\d+)(?!.*\d)")
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Source:
    """A checked input movie: its files, how many frames each holds, and the frame format."""

    kind: str
    files: tuple[Path, ...]
    frames_per_file: tuple[int, ...]
    frame_shape: tuple[int, int]
    dtype: np.dtype
    dataset: str | None = None

    @property
    def n_frames(self) -> int:
        return sum(self.frames_per_file)

    def describe(self) -> str:
        """One line for logs and summary.json."""
        first = self.files[0]
        where: Path | str = first.parent if len(self.files) > 1 else first
        if self.dataset:
            where = f"{first}:{self.dataset}"
        return f"{self.kind}: {self.n_frames} frames of {self.frame_shape} {self.dtype} in {where}"


def bad_input(path: Path | str, rule: str) -> ValidationError:
    """Input errors name the pipeline's data_path and the file at fault."""
    return ValidationError.one("data_path", f"{path}: {rule}")


def _size(shape: tuple[int, int]) -> str:
    """Frame sizes as people write them: height×width."""
    return f"{shape[0]}×{shape[1]}"


def _digits(path: Path) -> str | None:
    """The frame number in a name such as frame_17.jpg (the last digits in the stem), as written."""
    match = _NUMBER.search(path.stem)
    return match.group(1) if match else None


def _ordered(files: list[Path]) -> list[Path]:
    """Files in numeric order; a gap in the numbering means a frame is missing."""
    numbered: list[tuple[int, str, Path]] = []
    for f in files:
        digits = _digits(f)
        if digits is None:
            return sorted(files)
        numbered.append((int(digits), digits, f))
    numbered.sort(key=lambda item: item[0])
    for (n0, digits, f0), (n1, _, f1) in pairwise(numbered):
        if n1 == n0:
            raise bad_input(f1, f"has the same frame number as {f0.name}")
        if n1 != n0 + 1:
            missing = _NUMBER.sub(str(n0 + 1).zfill(len(digits)), f0.stem) + f0.suffix
            raise bad_input(f0.parent / missing, f"frame {n0 + 1} is missing from the sequence")
    return [f for _, _, f in numbered]


def jpeg_size(path: Path) -> tuple[int, int]:
    """(height, width) from the JPEG header alone, without decoding the image."""
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\xff\xd8":
                raise bad_input(path, "is not a JPEG image")
            while True:
                byte = f.read(1)
                while byte == b"\xff":
                    byte = f.read(1)
                if not byte:
                    raise bad_input(path, "is truncated before its image header")
                marker = byte[0]
                length_bytes = f.read(2)
                if len(length_bytes) < 2:
                    raise bad_input(path, "is truncated before its image header")
                (length,) = struct.unpack(">H", length_bytes)
                if marker in _SOF_MARKERS:
                    header = f.read(5)
                    if len(header) < 5:
                        raise bad_input(path, "is truncated in its image header")
                    _, height, width = struct.unpack(">BHH", header)
                    f.seek(-2, 2)
                    if f.read(2) != b"\xff\xd9":
                        raise bad_input(path, "is truncated (no end-of-image marker)")
                    return height, width
                f.seek(length - 2, 1)
                if f.read(1) != b"\xff":
                    raise bad_input(path, "has a corrupt JPEG header")
    except OSError as exc:
        raise bad_input(path, f"cannot be read ({exc.strerror or exc})") from None


def _tiff_layout(path: Path) -> tuple[int, tuple[int, int], np.dtype]:
    """(frames, (height, width), dtype) of one TIFF file, from its header."""
    try:
        with tifffile.TiffFile(path, is_scanimage=False) as tif:  # count pages, not guess
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            if len(tif.series) > 1 and len(series.pages) == 1:
                shape = (len(tif.pages), *shape)  # pages written one by one, a series each
            channels = _scanimage_channels(tif) if tif.pages.first.is_scanimage else 1
    except Exception as exc:  # tifffile raises many types for damaged files
        raise bad_input(path, f"is not a readable TIFF ({exc})") from None
    if channels > 1:
        raise bad_input(
            path, f"is a ScanImage file with {channels} interleaved channels; save one channel"
        )
    if len(shape) >= 3 and shape[-1] in (3, 4):
        shape = shape[:-1]
    if len(shape) < 2:
        raise bad_input(path, f"has shape {shape}; expected frames × height × width")
    return int(np.prod(shape[:-2])), (shape[-2], shape[-1]), dtype


def _scanimage_channels(tif: tifffile.TiffFile) -> int:
    """How many channels a ScanImage file interleaves page by page (from its header)."""
    try:
        frame_data, _, _ = tifffile.read_scanimage_metadata(tif.filehandle)
    except (TypeError, ValueError):  # ScanImage before 2016 keeps no such header
        return 1
    saved = frame_data.get("SI.hChannels.channelSave", 1)
    return len(saved) if isinstance(saved, list) else 1


def _split_dataset(path: Path) -> tuple[Path, str | None]:
    """`file.h5:/group/data` → (file.h5, /group/data); other paths are returned whole."""
    text = str(path)
    for suffix in HDF5_SUFFIXES:
        marker = f"{suffix}:"
        at = text.lower().find(marker)
        if at > 0:
            return Path(text[: at + len(suffix)]), text[at + len(marker) :] or None
    return path, None


def discover(data_path: str | Path) -> Source:
    """Check the input and describe it; raises ValidationError naming data_path and the file."""
    path, dataset = _split_dataset(Path(data_path))
    if not path.exists():
        raise bad_input(path, "does not exist")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in HDF5_SUFFIXES:
            return _hdf5_source(path, dataset)
        if suffix in TIFF_SUFFIXES or suffix in JPEG_SUFFIXES:
            files = [path]
        else:
            raise bad_input(
                path, "is none of: a TIFF, HDF5 or NWB file, a folder of frame_N.jpg images"
            )
    else:
        entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        files = [p for p in entries if p.suffix.lower() in JPEG_SUFFIXES]
        if not files:
            files = [p for p in entries if p.suffix.lower() in TIFF_SUFFIXES]
        if not files:
            containers = sorted(p for p in entries if p.suffix.lower() in HDF5_SUFFIXES)
            if len(containers) == 1:
                return _hdf5_source(containers[0], None)
            if containers:
                names = ", ".join(p.name for p in containers)
                raise bad_input(path, f"holds several HDF5/NWB files ({names}); name one")
            raise bad_input(path, "contains no frame_N.jpg images or TIFF files (nor HDF5/NWB)")
        files = _ordered(files)
    if files[0].suffix.lower() in JPEG_SUFFIXES:
        return _jpeg_source(files)
    return _tiff_source(files)


def _jpeg_source(files: Sequence[Path]) -> Source:
    """A JPEG sequence whose headers all agree on the frame size."""
    shape = jpeg_size(files[0])
    for f in files[1:]:
        other = jpeg_size(f)
        if other != shape:
            raise bad_input(
                f, f"is {other[0]}×{other[1]} but {files[0].name} is {shape[0]}×{shape[1]}"
            )
    return Source("jpeg sequence", tuple(files), (1,) * len(files), shape, np.dtype(np.uint8))


def _tiff_source(files: Sequence[Path]) -> Source:
    """One TIFF stack, or several stacks/single frames concatenated in numeric order."""
    counts = []
    frames, shape, dtype = _tiff_layout(files[0])
    counts.append(frames)
    for f in files[1:]:
        n, other, other_dtype = _tiff_layout(f)
        if other != shape:
            raise bad_input(
                f, f"is {other[0]}×{other[1]} but {files[0].name} is {shape[0]}×{shape[1]}"
            )
        if other_dtype != dtype:
            raise bad_input(f, f"holds {other_dtype} pixels but {files[0].name} holds {dtype}")
        counts.append(n)
    if dtype not in (np.uint8, np.uint16):
        dtype = np.dtype(np.float32)
    kind = "tiff stack" if len(files) == 1 else "tiff sequence"
    return Source(kind, tuple(files), tuple(counts), shape, dtype)


def _movies(h5: Any) -> dict[str, str]:
    """3-D datasets in an HDF5 file, {path: kind}; in NWB files only imaging series' data."""
    found: dict[str, str] = {}

    def visit(name: str, item: Any) -> None:
        kind = item.attrs.get("neurodata_type", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind in IMAGING_SERIES and "data" in item:
            found[f"/{name}/data"] = f"nwb {kind}"
        elif hasattr(item, "shape") and len(item.shape) == 3 and item.shape[0] > 1:
            found.setdefault(f"/{name}", "hdf5 dataset")

    h5.visititems(visit)
    if any(kind.startswith("nwb") for kind in found.values()):
        found = {k: v for k, v in found.items() if v.startswith("nwb")}
    return found


def _hdf5_source(path: Path, dataset: str | None) -> Source:
    """The movie in an HDF5/NWB file: the named dataset, or the only one there is."""
    try:
        import h5py
    except ImportError:
        raise bad_input(path, f"reading HDF5/NWB files needs h5py: {FORMATS_EXTRA}") from None
    try:
        with h5py.File(path, "r") as h5:
            movies = _movies(h5)
            if dataset is None:
                if len(movies) != 1:
                    listed = ", ".join(movies) or "none"
                    raise bad_input(
                        path,
                        f"holds {len(movies)} frame × height × width datasets ({listed}); "
                        f"name one as {path.name}:/path/to/data",
                    )
                dataset = next(iter(movies))
            item = h5.get(dataset)
            if item is not None and item.attrs.get("neurodata_type") is not None and "data" in item:
                dataset, item = f"{dataset.rstrip('/')}/data", item["data"]
            kind = movies.get(dataset, "hdf5 dataset")
            if item is None or not hasattr(item, "shape"):
                raise bad_input(path, f"has no dataset {dataset}")
            shape, dtype = tuple(item.shape), np.dtype(item.dtype)
            external = item.parent.get("external_file") if kind.startswith("nwb") else None
    except ValidationError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError for damaged files
        raise bad_input(path, f"is not a readable HDF5/NWB file ({exc})") from None
    if external is not None and shape[0] == 0:
        raise bad_input(path, f"{dataset} keeps its frames in external files; open those")
    if len(shape) != 3:
        raise bad_input(path, f"{dataset} has shape {shape}; expected frames × height × width")
    if dtype.kind not in "uif":
        raise bad_input(path, f"{dataset} holds {dtype} values, not image pixels")
    if dtype not in (np.uint8, np.uint16):
        dtype = np.dtype(np.float32)
    return Source(kind, (path,), (shape[0],), (shape[1], shape[2]), dtype, dataset)
