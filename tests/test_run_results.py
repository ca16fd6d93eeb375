"""A folder per run, results of any run, cells and traces, curation, compare and exports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pico_nb import db
from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.lab import Lab
from pico_nb.models import Run

from cell_results import FRAMES, RATE, write_results


def finished(lab: Lab, experiment_id: int) -> int:
    """Run an experiment to the end and return the run's id."""
    run = lab.run_experiment(experiment_id)
    done = lab.wait(run.id, timeout=120)
    assert done.status == "completed", done.reason
    return run.id


@pytest.fixture
def alice(lab_for: Callable[..., Lab]) -> Lab:
    return lab_for("alice")


@pytest.mark.slow
def test_two_runs_keep_their_own_results(alice: Lab, frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    exp = alice.create_experiment("e", str(frames), str(out), params={"cells": 12})
    first = finished(alice, exp.id)
    alice.update_experiment(exp.id, params={"cells": 5, "cell_seed": 1})
    second = finished(alice, exp.id)
    runs = {r.id: r for r in alice.runs(exp.id)}
    assert runs[first].output_path == str(out / "run-0001")
    assert runs[second].output_path == str(out / "run-0002")
    assert runs[second].argv[runs[second].argv.index("--out_path") + 1] == str(out / "run-0002")
    assert alice.results(first).summary["neurons"] == 12
    assert alice.results(second).summary["neurons"] == 5
    assert len(alice.cells(first).cells) == 12
    assert len(alice.cells(second).cells) == 5
    # A clone keeps the parent's output folder but never its run folders.
    clone = alice.clone_experiment(exp.id, name="clone")
    clone_run = finished(alice, clone.id)
    assert alice.get_run(clone_run).output_path == str(out / f"e{clone.id}-run-0001")
    assert alice.results(first).summary["neurons"] == 12
    # Deleting the parent with its outputs removes its run folders, not the clone's.
    alice.delete_experiment(exp.id, remove_outputs=True)
    assert not (out / "run-0001").exists() and not (out / "run-0002").exists()
    assert alice.results(clone_run).summary["neurons"] == 5


def test_cells_traces_and_curation(
    lab_for: Callable[..., Lab], frames: Path, tmp_path: Path
) -> None:
    alice, bob = lab_for("alice"), lab_for("bob")
    exp = alice.create_experiment("e", str(frames), str(tmp_path / "out"), params={"cells": 6})
    run_id = finished(alice, exp.id)
    files = alice.results(run_id).files
    table = alice.cells(run_id)
    assert (table.frames, table.frame_rate, table.editable) == (FRAMES, RATE, True)
    cell = table.cells[2]
    assert cell.id == 3 and cell.area == 13 and cell.accepted
    assert cell.peak_dff == pytest.approx(0.3, abs=0.05) and cell.snr > 10
    traces = alice.traces(run_id, [3, 1])
    assert traces.cells == [3, 1] and len(traces.values[0]) == FRAMES
    assert max(traces.values[0]) == pytest.approx(cell.peak_dff, abs=1e-3)
    with pytest.raises(ValidationError) as bad:
        alice.traces(run_id, [7])
    assert "cells" in bad.value.errors
    assert alice.cell_image(run_id).startswith(b"\x89PNG")

    saved = alice.set_curation(run_id, [2, 5, 5])
    assert saved.rejected == [2, 5] and saved.updated_by == "alice"
    assert alice.cells(run_id).accepted == 4
    with pytest.raises(ValidationError) as bad:
        alice.set_curation(run_id, [99])
    assert "rejected" in bad.value.errors
    assert alice.curation(run_id).rejected == [2, 5]  # nothing half-stored

    with pytest.raises(PermissionDenied):
        bob.cells(run_id)
    alice.share_experiment(exp.id)
    shared = bob.cells(run_id)
    assert not shared.editable and [c.id for c in shared.cells if not c.accepted] == [2, 5]
    with pytest.raises(PermissionDenied):
        bob.set_curation(run_id, [])
    assert alice.curation(run_id).rejected == [2, 5]
    assert alice.results(run_id).files == files  # the pipeline's outputs are left alone


@pytest.mark.slow
def test_compare_runs_matches_cells(alice: Lab, frames: Path, tmp_path: Path) -> None:
    exp = alice.create_experiment("e", str(frames), str(tmp_path / "out"), params={"cells": 12})
    a = finished(alice, exp.id)
    other = alice.clone_experiment(exp.id, name="moved", params={"cell_seed": 1})
    b = finished(alice, other.id)
    alice.set_curation(a, [1])
    comparison = alice.compare_runs([a, b])
    first, second = comparison.runs
    assert (first.cells, first.accepted, first.bad_frames) == (12, 11, 2)
    assert first.motion_rms == pytest.approx(5.0) and first.pipeline_seconds == 12.5
    assert second.name == "moved" and comparison.differing == {"cell_seed": [0, 1]}
    match = comparison.match
    assert (match.matched, match.only_a, match.only_b) == (8, 4, 4)
    assert match.trace_correlation == pytest.approx(1.0)
    assert alice.overlay_image(a, b).startswith(b"\x89PNG")
    with pytest.raises(ValidationError):
        alice.compare_runs([a])


def test_exports_hold_the_curated_cells(alice: Lab, frames: Path, tmp_path: Path) -> None:
    from nwbinspector import Importance, inspect_nwbfile
    from pynwb import NWBHDF5IO

    exp = alice.create_experiment("e", str(frames), str(tmp_path / "out"), params={"cells": 6})
    run_id = finished(alice, exp.id)
    alice.set_curation(run_id, [4])
    nwb = Path(alice.export(run_id, "nwb"))
    assert nwb == tmp_path / "out" / "exports" / f"e{exp.id}-run-0001.nwb"
    with NWBHDF5IO(str(nwb), "r") as io:
        content = io.read()
        ophys = content.processing["ophys"]
        planes = ophys["ImageSegmentation"]["PlaneSegmentation"]
        assert len(planes) == 5 and list(planes["pico_id"][:]) == [1, 2, 3, 5, 6]
        series = ophys["DfOverF"]["RoiResponseSeries"]
        assert series.data.shape == (FRAMES, 5) and series.rate == RATE
        assert ophys["Fluorescence"]["RoiResponseSeries"].data.shape == (FRAMES, 5)
    # pico_nb knows nothing of the animal; a lab adds the Subject itself (module doc).
    found = inspect_nwbfile(nwbfile_path=str(nwb), ignore=["check_subject_exists"])
    critical = [m for m in found if m.importance == Importance.CRITICAL]
    assert critical == []
    folder = Path(alice.export(run_id, "csv", str(tmp_path / "csv")))
    ids = np.loadtxt(folder / "cells.csv", delimiter=",", skiprows=1)[:, 0]
    assert list(ids) == [1, 2, 3, 5, 6]
    assert np.load(folder / "dff.npy").shape == (5, FRAMES)
    assert (folder / "dff.csv").read_text().splitlines()[0].startswith("time_s,cell_1,")
    with pytest.raises(ValidationError) as bad:
        alice.export(run_id, "csv", str(tmp_path / "out" / "run-0001" / "x"))
    assert "destination" in bad.value.errors
    with pytest.raises(ValidationError):
        alice.export(run_id, "xls")


def test_old_layout_runs_migrate(tmp_path: Path) -> None:
    """Runs recorded before per-run folders: the last one's results, a note for the rest."""
    from alembic import command
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    out = write_results(tmp_path / "out", 4)
    engine = create_engine(url)
    command.upgrade(db._alembic_config(engine), "0002")
    stamp = "'2026-11-01T00:00:00+00:00'"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO users (id, username, is_admin, created_at) VALUES (1, 'old', 0, {stamp})"
        )
        conn.exec_driver_sql(
            "INSERT INTO experiments (id, owner_id, name, description, input_path, output_path,"
            f" pipeline, params, shared, created_at, updated_at) VALUES (1, 1, 'e', '', '/i',"
            f" '{out}', 'fake', '{{}}', 0, {stamp}, {stamp})"
        )
        for number in (1, 2):
            conn.exec_driver_sql(
                "INSERT INTO runs (id, experiment_id, number, user_id, status, argv, params,"
                " input_path, output_path, log_path, queued_at, started_at, provenance,"
                f" needs_gpu) VALUES ({number}, 1, {number}, 1, 'completed', '[]', '{{}}', '/i',"
                f" '{out}', '/l', {stamp}, {stamp}, '{{}}', 0)"
            )
    engine.dispose()
    from pico_nb.settings import load_settings

    settings = load_settings(tmp_path / "home", database_url=url, data_roots=[str(tmp_path)])
    lab = Lab(user="old", settings=settings)  # outputs are read only inside the data roots
    with lab.db.read() as session:
        assert {r.layout for r in session.query(Run)} == {"shared"}
    assert lab.results(2).summary["neurons"] == 4 and len(lab.cells(2).cells) == 4
    old = lab.results(1)
    assert old.summary is None and "run 2 later replaced" in (old.note or "")
    with pytest.raises(NotFound):
        lab.cells(1)


def test_delete_never_follows_a_run_folder_symlink(
    alice: Lab, frames: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    exp = alice.create_experiment("e", str(frames), str(out), params={"cells": 2})
    finished(alice, exp.id)
    elsewhere = tmp_path / "elsewhere"
    (out / "run-0001").rename(elsewhere)
    (out / "run-0001").symlink_to(elsewhere)
    alice.delete_experiment(exp.id, remove_outputs=True)
    assert (elsewhere / "summary.json").exists() and (out / "run-0001").is_symlink()


def test_export_to_a_folder_it_cannot_write_names_the_field(
    alice: Lab, frames: Path, tmp_path: Path
) -> None:
    exp = alice.create_experiment("e", str(frames), str(tmp_path / "out"), params={"cells": 2})
    run_id = finished(alice, exp.id)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValidationError) as bad:
        alice.export(run_id, "csv", str(blocker / "inside"))
    assert "destination" in bad.value.errors and not (blocker / "inside").exists()
