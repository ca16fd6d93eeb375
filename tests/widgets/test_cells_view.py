"""The cell viewer and run comparison as widgets, against a real Lab and finished runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.lab import Lab
from pico_nb.settings import Settings
from pico_nb.widgets.cells import CellViewer
from pico_nb.widgets.results import ResultsView


def finished(lab: Lab, experiment_id: int) -> int:
    run = lab.run_experiment(experiment_id)
    assert lab.wait(run.id, timeout=120).status == "completed"
    return run.id


def test_click_a_cell_see_its_trace_and_curate(
    lab: Lab, frames: Path, tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    exp = lab.create_experiment("e", str(frames), str(tmp_path / "out"), params={"cells": 12})
    run_id = finished(lab, exp.id)
    results = ResultsView(run_id, lab)
    viewer = results.cells.children[0]
    assert isinstance(viewer, CellViewer)
    assert bytes(viewer.picture.value).startswith(b"\x89PNG")
    assert list(viewer.markers.names)[:3] == ["1", "2", "3"]
    # The table is sorted by SNR: cell 12 has the tallest transient.
    assert viewer.picker.options[0][1] == 12
    viewer.markers.selected = [4]  # what a click on the fifth marker does in the browser
    assert viewer.picker.value == (5,)
    assert "cell #5" in viewer.traces.captions.value
    assert "time (s)" in [a.label for a in viewer.traces.figure.axes]
    assert float(max(viewer.traces.lines.x)) == pytest.approx(
        19.9
    )  # 200 frames at 10 Hz, in seconds
    viewer.picker.value = (12,)  # a pick in the table marks the cell on the image too
    assert list(viewer.markers.selected) == [11]
    viewer.pick([5, 12])  # several cells: overlaid, then stacked one above the other
    assert list(viewer.markers.selected) == [4, 11]
    assert viewer.traces.lines.labels == ["#5", "#12"] and len(viewer.traces.lines.y) == 2
    viewer.traces.stacked.value = True
    assert min(viewer.traces.lines.y[0]) > 1.0  # raised by the tallest trace (cell 12: 1.2)
    viewer.pick([5])
    viewer.reject_picked()
    assert "rejected" in viewer.traces.captions.value and "unsaved" in viewer.status.value
    viewer.threshold.value = 20.0
    viewer.filter_button.click()
    low = {c.id for c in viewer.table.cells if c.snr < 20}
    assert viewer.rejected == low | {5}
    viewer.buttons["Undo"].click()
    assert viewer.rejected == {5}
    viewer.buttons["Undo"].click()  # back to nothing rejected: the caption follows
    assert "rejected" not in viewer.traces.captions.value
    viewer.reject_picked()
    viewer.export_button.click()  # an export uses the saved curation: unsaved work is refused
    assert "save the curation first" in viewer.messages.value
    viewer.buttons["Save"].click()
    assert lab.curation(run_id).rejected == [5] and "saved by alice" in viewer.status.value
    viewer.export_format.value = "csv"
    viewer.export_button.click()
    assert "exported 11 accepted cell(s) to" in viewer.messages.value
    assert (tmp_path / "out" / "exports").is_dir()
    assert "✗ rejected" in dict((v, k) for k, v in viewer.picker.options)[5]
    # A colleague with read access sees the curation but cannot change it.
    lab.share_experiment(exp.id)
    bob = Lab(user="bob", settings=settings_for(""))
    theirs = CellViewer(run_id, bob)
    assert theirs.rejected == {5} and theirs.buttons["Save"].disabled
    assert "read-only" in theirs.status.value


@pytest.mark.slow
def test_compare_runs_table_and_overlay(lab: Lab, frames: Path, tmp_path: Path) -> None:
    from pico_nb.widgets.compare import CompareView

    exp = lab.create_experiment("a", str(frames), str(tmp_path / "out"), params={"cells": 12})
    first = finished(lab, exp.id)
    lab.update_experiment(exp.id, params={"cell_seed": 1})
    second = finished(lab, exp.id)  # two runs of one experiment
    view = CompareView(run_ids=[first, second], lab=lab)
    assert [p.value for p in view.run_pickers.children] == [first, second]
    assert "cells found" in view.run_table.value and "cell_seed" in view.run_table.value
    assert "motion (RMS shift, px)" in view.run_table.value and "5.00" in view.run_table.value
    match = view.match.value
    assert "<b class='pico-matched'>8</b>" in match and "<b class='pico-only-a'>4</b>" in match
    assert view.overlay.layout.display is None
    assert bytes(view.overlay.value).startswith(b"\x89PNG")
    other = lab.clone_experiment(exp.id, name="b", params={"cell_seed": 0})
    finished(lab, other.id)
    by_experiment = CompareView([exp.id, other.id], lab)
    assert by_experiment.run_pickers.children[0].value == second
    assert "cell_seed" in by_experiment.table.value
    by_experiment.run_pickers.children[0].value = first  # any run of the experiment
    assert "<b class='pico-matched'>12</b>" in by_experiment.match.value


def test_list_shows_ids_and_owners_to_admins(
    lab: Lab, frames: Path, tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    from pico_nb.widgets.experiment_list import ExperimentList

    bob = Lab(user="bob", settings=settings_for(""))
    theirs = bob.create_experiment("bobs", str(frames), str(tmp_path / "b"))
    mine = lab.create_experiment("mine", str(frames), str(tmp_path / "a"))
    plain = ExperimentList(lab, refresh_seconds=60)
    try:
        headers = [h.value for h in plain.grid.children[:9]]
        assert "Id" in headers and "Owner" not in headers
        assert plain.rows[0].id_cell.value == str(mine.id)
    finally:
        plain.close()
    Lab.operator(settings=settings_for("")).set_admin("alice", True)
    admin = ExperimentList(lab, refresh_seconds=60)
    try:
        assert "Owner" in [h.value for h in admin.grid.children[:9]]
        shown = {r.id_cell.value: r.cells[-1].value for r in admin.rows}
        assert shown == {str(mine.id): "alice", str(theirs.id): "bob"}
    finally:
        admin.close()
