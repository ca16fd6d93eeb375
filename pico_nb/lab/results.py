"""Results of finished runs: output files, cells and their curation, comparison, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from pico_nb import cells as run_cells
from pico_nb import outputs, safe_paths
from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.inputs import as_id
from pico_nb.lab.core import LabCore
from pico_nb.models import RUN_FOLDER, Run, utcnow
from pico_nb.models import Curation as CurationRow
from pico_nb.schemas import (
    CellMatch,
    CellRecord,
    CellTable,
    Curation,
    Results,
    RunComparison,
    RunNumbers,
    RunRecord,
    Traces,
)

MAX_TRACES = 50
MAX_COMPARED = 8
IMAGE_PIXELS = 1024
ACCEPTED_COLOUR, REJECTED_COLOUR = (255, 214, 0), (230, 30, 30)
RUN_A_COLOUR, RUN_B_COLOUR = (255, 0, 200), (0, 230, 90)


class ResultsMixin(LabCore):
    """What a run left behind, read back for the results, cells and compare views."""

    def results(self, run_id: int) -> Results:
        """The run's summary.json, preview images and output files, for the results view."""
        run = self.get_run(run_id)
        replaced_by = self._replaced_by(run)
        if replaced_by is not None:
            note = (
                f"run {run.number} wrote into {run.output_path}, the folder every run used before "
                f"runs had folders of their own; run {replaced_by} later replaced its results there"
            )
            return Results(run_id=run.id, output_path=run.output_path, note=note)
        return outputs.collect(run.id, Path(run.output_path), self._roots_of(run))

    def _replaced_by(self, run: RunRecord) -> int | None:
        """For an old-layout run: the number of the later run that wrote into the same folder."""
        if run.layout == RUN_FOLDER:
            return None
        with self.db.read() as session:
            return session.scalar(
                select(func.max(Run.number)).where(
                    Run.experiment_id == run.experiment_id,
                    Run.output_path == run.output_path,
                    Run.number > run.number,
                    Run.started_at.is_not(None),
                )
            )

    def result_file(self, run_id: int, path: str) -> bytes:
        """One output file's bytes; only files inside the run's output folder, size-capped."""
        run = self.get_run(run_id)
        return outputs.read_file(Path(run.output_path), path, self._roots_of(run))

    def _roots_of(self, run: RunRecord) -> list[Path]:
        """The data roots of whoever ran it: its outputs are re-checked against these at use."""
        return self.settings.data_roots_for(run.user)

    # --------------------------------------------------------------------- cells

    def _finished_cells(self, run: RunRecord) -> run_cells.RunCells:
        """A run's cells from its own folder; NotFound while it runs or once it was replaced."""
        if run.active:
            raise NotFound(f"run {run.id} has not finished yet")
        if self._replaced_by(run) is not None:
            raise NotFound(self.results(run.id).note or f"run {run.id} has no results")
        safe_paths.check_unlinked(run.output_path, self._roots_of(run))  # swapped for a link?
        return run_cells.open_run(Path(run.output_path))

    def _curation_state(self, run_id: int) -> tuple[RunRecord, bool, Curation]:
        """The run, whether this user may curate it, and its stored curation."""
        with self.db.read() as session:
            row = self._load_run(session, run_id, write=False)
            try:
                self._load(session, row.experiment_id, write=True)
                editable = True
            except PermissionDenied:
                editable = False
            stored = session.get(CurationRow, row.id)
            curation = Curation(
                run_id=row.id,
                rejected=sorted(stored.rejected) if stored else [],
                updated_by=stored.updated_by if stored else None,
                updated_at=stored.updated_at if stored else None,
            )
            return self._run_record(session, row), editable, curation

    def cells(self, run_id: int) -> CellTable:
        """Every cell of a finished run with its numbers and whether it is accepted."""
        run, editable, curation = self._curation_state(run_id)
        data = self._finished_cells(run)
        found = run_cells.stats(data)
        rejected = set(curation.rejected)
        rows = [
            CellRecord(
                id=k + 1,
                area=int(found.area[k]),
                centre_y=round(float(found.centre[k, 0]), 2),
                centre_x=round(float(found.centre[k, 1]), 2),
                peak_dff=round(float(found.peak[k]), 4),
                snr=round(float(found.snr[k]), 3),
                active=round(float(found.active[k]), 4),
                accepted=k + 1 not in rejected,
            )
            for k in range(data.count)
        ]
        height, width = data.labels.shape
        return CellTable(
            run_id=run.id,
            frames=data.frames,
            frame_rate=data.rate,
            height=height,
            width=width,
            cells=rows,
            editable=editable,
            curated_by=curation.updated_by,
            curated_at=curation.updated_at,
        )

    def traces(self, run_id: int, cells: list[int]) -> Traces:
        """ΔF/F of up to 50 cells, read from the memory-mapped traces file."""
        if not isinstance(cells, list) or not cells:
            raise ValidationError.one("cells", "must be a list of cell numbers")
        if len(cells) > MAX_TRACES:
            raise ValidationError.one("cells", f"at most {MAX_TRACES} at once")
        data = self._finished_cells(self.get_run(run_id))
        ids = [data.check_cell(c) for c in cells]
        values = [data.trace(c).tolist() for c in ids]
        return Traces(run_id=int(run_id), frame_rate=data.rate, cells=ids, values=values)

    def cell_image(self, run_id: int, image: str = "mean") -> bytes:
        """PNG of the run's mean/correlation/max image with accepted cells outlined in yellow
        and rejected ones in red."""
        run, _, curation = self._curation_state(run_id)
        data = self._finished_cells(run)
        rejected = np.isin(data.labels, curation.rejected) if curation.rejected else None
        accepted = data.labels if rejected is None else np.where(rejected, 0, data.labels)
        layers = [(accepted, ACCEPTED_COLOUR)]
        if rejected is not None:
            layers.append((np.where(rejected, data.labels, 0), REJECTED_COLOUR))
        return run_cells.outline_png(data.image(image), layers, IMAGE_PIXELS)[0]

    def curation(self, run_id: int) -> Curation:
        """Which cells of a run are rejected, by whom and when."""
        return self._curation_state(run_id)[2]

    def set_curation(self, run_id: int, rejected: list[int]) -> Curation:
        """Store the run's rejected cells (the rest are accepted); owners and admins only."""
        if not isinstance(rejected, list):
            raise ValidationError.one("rejected", "must be a list of cell numbers")
        with self.db.read() as session:
            run = self._run_record(session, self._load_run(session, run_id, write=True))
        data = self._finished_cells(run)
        try:
            ids = sorted({data.check_cell(c) for c in rejected})
        except ValidationError as exc:
            raise ValidationError.one("rejected", exc.errors["cells"]) from None
        with self.db.write() as session:
            self._load_run(session, run.id, write=True)
            row = session.get(CurationRow, run.id)
            if row is None:
                row = CurationRow(run_id=run.id, updated_by=self.username)
                session.add(row)
            row.rejected, row.updated_by, row.updated_at = ids, self.username, utcnow()
        return self.curation(run.id)

    # ----------------------------------------------------------------- comparing

    def compare_runs(self, run_ids: list[int]) -> RunComparison:
        """Two or more runs side by side; the first two also matched cell by cell."""
        if not isinstance(run_ids, list):
            raise ValidationError.one("run_ids", "pick at least two runs")
        if len(run_ids) > MAX_COMPARED:
            raise ValidationError.one("run_ids", f"at most {MAX_COMPARED} runs at once")
        ids = list(dict.fromkeys(as_id(r, "run_ids") for r in run_ids))  # ids before set()
        if len(ids) < 2:
            raise ValidationError.one("run_ids", "pick at least two runs")
        numbers: list[RunNumbers] = []
        opened: list[run_cells.RunCells | None] = []
        for run_id in ids:
            run, _, curation = self._curation_state(run_id)
            name = self.get_experiment(run.experiment_id).name
            try:
                data: run_cells.RunCells | None = self._finished_cells(run)
            except NotFound:
                data = None
            opened.append(data)
            numbers.append(_run_numbers(run, name, data, curation))
        match = None
        if opened[0] is not None and opened[1] is not None:
            found = run_cells.match(opened[0], opened[1])
            match = CellMatch(
                run_a=ids[0],
                run_b=ids[1],
                matched=len(found.pairs),
                only_a=found.only_a,
                only_b=found.only_b,
                trace_correlation=found.correlation,
            )
        return RunComparison(
            runs=numbers, differing=_differing([n.params for n in numbers]), match=match
        )

    def overlay_image(self, run_a: int, run_b: int, image: str = "mean") -> bytes:
        """PNG of run A's outlines (magenta) and run B's (green) over A's image."""
        a = self._finished_cells(self.get_run(run_a))
        b = self._finished_cells(self.get_run(run_b))
        if a.labels.shape != b.labels.shape:
            raise ValidationError.one("run_b", "has a different frame size; cannot overlay")
        layers = [(a.labels, RUN_A_COLOUR), (b.labels, RUN_B_COLOUR)]
        return run_cells.outline_png(a.image(image), layers, IMAGE_PIXELS)[0]

    # -------------------------------------------------------------------- export

    def export(self, run_id: int, format: str, destination: str | None = None) -> str:
        """Write a run's accepted cells and traces as NWB or CSV/NumPy; returns where.

        By default into `<output>/exports/`, beside the run folders, never inside them."""
        from pico_nb import export

        if not isinstance(format, str) or format not in export.FORMATS:
            raise ValidationError.one("format", f"must be one of {', '.join(export.FORMATS)}")
        run, _, curation = self._curation_state(run_id)
        experiment = self.get_experiment(run.experiment_id)
        data = self._finished_cells(run)
        if destination is None:
            safe_paths.check_unlinked(experiment.output_path, self._roots_of(run))
            folder = Path(experiment.output_path) / "exports"
            stem = f"e{experiment.id}-run-{run.number:04d}"
            target = folder / (stem + export.FORMATS[format])
        else:
            target = self._export_target(destination, run)
        try:
            export.write(format, target, data, run, experiment, curation)
        except OSError as exc:
            where = "destination" if destination is not None else "output_path"
            raise ValidationError.one(where, f"cannot write {target}: {exc.strerror}") from None
        return str(target)

    def _export_target(self, destination: str, run: RunRecord) -> Path:
        """An export goes inside the user's data roots and never into a run's own folder."""
        if not isinstance(destination, str) or not destination.strip():
            raise ValidationError.one("destination", "must be a path")
        target = Path(destination).expanduser().resolve()
        if not any(target.is_relative_to(root) for root in self.data_roots):
            raise ValidationError.one("destination", "must be inside your data folders")
        if target.is_relative_to(Path(run.output_path).resolve()):
            raise ValidationError.one("destination", "must not be inside the run's own folder")
        return target


def _run_numbers(
    run: RunRecord, name: str, data: run_cells.RunCells | None, curation: Curation
) -> RunNumbers:
    """A run's figures for compare: from summary.json, its cells and its record."""
    summary = data.summary if data else {}
    bad = summary.get("bad_frames")
    stages = summary.get("stage_seconds")
    memory = summary.get("peak_memory_mb", summary.get("peak_rss_mb"))
    return RunNumbers(
        run_id=run.id,
        experiment_id=run.experiment_id,
        number=run.number,
        name=name,
        status=run.status,
        reason=run.reason,
        cells=data.count if data else None,
        accepted=data.count - len(curation.rejected) if data else None,
        bad_frames=len(bad) if isinstance(bad, list) else None,
        motion_rms=data.motion_rms() if data else None,
        pipeline_seconds=summary.get("total_seconds") if data else run.duration_seconds,
        peak_memory_mb=memory if isinstance(memory, int | float) else None,
        stage_seconds=stages if isinstance(stages, dict) else {},
        params=run.params,
    )


def _differing(params: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Parameters whose values are not the same in every run (None where one lacks it)."""
    names = sorted({k for p in params for k in p})
    values = {n: [p.get(n) for p in params] for n in names}
    return {n: v for n, v in values.items() if any(x != v[0] for x in v)}
