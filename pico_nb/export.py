"""A run's curated cells and traces in open formats: NWB (pynwb) or CSV with NumPy arrays.

Only accepted cells are exported; rejected ones are left out. Everything comes from the run's
summary.json contract (see pico_nb.cells). NWB needs the optional extra `pico-nb[nwb]`.
pico_nb records nothing about the animal, so the file has no Subject: add one (species, age,
sex) before sharing it, e.g. on DANDI.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from pico_nb.cells import RunCells, stats
from pico_nb.contract.errors import ValidationError
from pico_nb.schemas import Curation, ExperimentRecord, RunRecord

FORMATS = {"nwb": ".nwb", "csv": ""}
"""Export formats and the suffix of what they write (CSV writes a folder)."""
CELL_COLUMNS = ("id", "area", "centre_y", "centre_x", "peak_dff", "snr", "active")


def accepted_ids(data: RunCells, curation: Curation) -> list[int]:
    """Cells that survive curation, 1-based."""
    rejected = set(curation.rejected)
    return [k for k in range(1, data.count + 1) if k not in rejected]


def write(
    format: str,
    target: Path,
    data: RunCells,
    run: RunRecord,
    experiment: ExperimentRecord,
    curation: Curation,
) -> None:
    """Write the export in full beside `target`, then move it into place in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{os.getpid()}-{target.name}")
    try:
        if format == "nwb":
            write_nwb(partial, data, run, experiment, curation)
        else:
            write_csv(partial, data, curation)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink(missing_ok=True)


def write_csv(folder: Path, data: RunCells, curation: Curation) -> None:
    """cells.csv (numbers of accepted cells), dff.csv (time in s, one column per cell), dff.npy."""
    folder.mkdir()
    ids = accepted_ids(data, curation)
    found = stats(data)
    index = np.array(ids, int) - 1
    table = np.column_stack(
        [
            np.array(ids, float),
            found.area[index],
            found.centre[index, 0],
            found.centre[index, 1],
            found.peak[index],
            found.snr[index],
            found.active[index],
        ]
    ).reshape(-1, len(CELL_COLUMNS))
    np.savetxt(
        folder / "cells.csv",
        table,
        delimiter=",",
        header=",".join(CELL_COLUMNS),
        comments="",
        fmt=["%d", "%d", "%.2f", "%.2f", "%.5g", "%.5g", "%.5g"],
    )
    dff = np.asarray(data.dff[index], np.float32) if ids else np.zeros((0, data.frames))
    np.save(folder / "dff.npy", dff)
    seconds = np.arange(data.frames) / data.rate
    np.savetxt(
        folder / "dff.csv",
        np.column_stack([seconds, dff.T]),
        delimiter=",",
        header=",".join(["time_s", *(f"cell_{k}" for k in ids)]),
        comments="",
        fmt="%.6g",
    )


def write_nwb(
    path: Path, data: RunCells, run: RunRecord, experiment: ExperimentRecord, curation: Curation
) -> None:
    """An NWB file: PlaneSegmentation pixel masks, ΔF/F in DfOverF, raw F in Fluorescence."""
    try:
        from pynwb import NWBHDF5IO, NWBFile
        from pynwb.ophys import (
            DfOverF,
            Fluorescence,
            ImageSegmentation,
            OpticalChannel,
            RoiResponseSeries,
        )
    except ImportError:
        raise ValidationError.one(
            "format", "NWB export needs pynwb: pip install 'pico-nb[nwb]'"
        ) from None
    ids = accepted_ids(data, curation)
    nwb = NWBFile(
        session_description=f"{experiment.name}, run {run.number}: cells and traces by pico_nb",
        identifier=str(uuid.uuid4()),
        session_start_time=run.started_at or run.queued_at,
        experiment_description=experiment.description or experiment.name,
        notes="pipeline command: " + " ".join(run.argv)[:2000],
    )
    device = nwb.create_device(name="Microscope", description="one-photon calcium imaging")
    channel = OpticalChannel(
        name="OpticalChannel", description="calcium indicator emission", emission_lambda=np.nan
    )
    plane = nwb.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        imaging_rate=data.rate,
        description=f"input {run.input_path}",
        device=device,
        excitation_lambda=np.nan,
        indicator="unknown",
        location="unknown",
    )
    ophys = nwb.create_processing_module(
        name="ophys", description="cells and traces from the PICO pipeline"
    )
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    planes = segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        description="cells accepted after curation; pico_id is the run's cell number",
        imaging_plane=plane,
    )
    planes.add_column(name="pico_id", description="cell number in the pico_nb run")
    width = data.labels.shape[1]
    flat = data.labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(0, data.count + 2))
    for k in ids:
        pixels = order[bounds[k] : bounds[k + 1]]
        ys, xs = np.divmod(pixels, width)
        mask = [(int(x), int(y), 1.0) for y, x in zip(ys, xs, strict=True)]
        planes.add_roi(pixel_mask=mask, pico_id=k)
    if ids:
        index = np.array(ids) - 1
        series = [("DfOverF", DfOverF, data.dff, "n.a.")]
        raw_path = data.file("traces")
        if raw_path is not None:
            raw = np.load(raw_path, mmap_mode="r")
            if raw.shape == data.dff.shape:
                series.append(("Fluorescence", Fluorescence, raw, "a.u."))
        for name, container, values, unit in series:
            region = planes.create_roi_table_region(
                region=list(range(len(ids))), description="accepted cells"
            )
            with warnings.catch_warnings():  # hdmf checks the region before it joins the file
                warnings.filterwarnings("ignore", "The linked table for DynamicTableRegion")
                response = RoiResponseSeries(
                    name="RoiResponseSeries",
                    description=f"{name} of the accepted cells, frames × cells",
                    data=np.ascontiguousarray(np.asarray(values[index], np.float32).T),
                    rois=region,
                    unit=unit,
                    rate=data.rate,
                    starting_time=0.0,
                )
                ophys.add(container(name=name, roi_response_series=response))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
