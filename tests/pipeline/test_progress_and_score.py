"""Progress lines as the run monitor parses them, and scoring against Neurofinder JSON."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pico_nb.contract.errors import ValidationError
from pico_nb.pipeline import score
from pico_nb.pipeline.progress import Progress, banner


def test_progress_lines_and_banner() -> None:
    stream = io.StringIO()
    banner("motion correction", stream)
    with Progress("motion correction", 2000, stream=stream) as bar:
        bar.done = 840
        line = bar.line()
        for _ in range(1000):
            bar.update(1)
    text = stream.getvalue()
    assert text.startswith("=======> motion correction <=======\n")
    assert re.fullmatch(
        r"motion correction:  42%\|████▏     \| 840/2000 "
        r"\[\d\d:\d\d<\d\d:\d\d, [\d.]+frames/s\]",
        line,
    )
    assert text.endswith("2000/2000" + text.split("2000/2000")[-1]) and text.endswith("\n")
    assert text.count("\r") < 20
    assert text.count("100%") == 1


@pytest.mark.slow
def test_score_with_neurofinder_json(demo_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo_run
    rois = json.loads((out / "seg_results_thresh_pmap_1" / "rois.json").read_text())
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps([{"coordinates": r["coordinates"]} for r in rois[:-1]]))
    result = score.score(out, truth)
    assert result["centre"]["recall"] == 1.0
    assert result["iou"]["matched"] == len(rois) - 1
    assert "registration_error_px" not in result
    assert "F1" in score.format_report(result)
    assert score.main([str(out), str(tmp_path / "absent.json")]) == 2


def test_bad_frame_report_counts_hits_against_the_truth() -> None:
    match = {"matched": 1, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    found = {"true": [3, 9], "found": [3, 9, 12], "missed": [], "false_alarms": [12]}
    result = {"neurons_found": 1, "neurons_true": 1, "centre": match, "iou": match}
    report = score.format_report({**result, "bad_frames": found})
    assert report.splitlines()[-1] == (
        "bad frames: 2 of 2 true bad frames found, 1 false alarm(s) "
        "(missed none, false alarms [12])"
    )


def test_scoring_an_experiments_folder_names_its_runs(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text("[]")
    experiment = tmp_path / "out"
    for name in ("run-0001", "run-0002", "e7-run-0003"):
        (experiment / name).mkdir(parents=True)
        (experiment / name / "summary.json").write_text("{}")
    with pytest.raises(ValidationError) as refused:
        score.score(experiment, truth)
    message = refused.value.errors["out_path"]
    assert "is an experiment's output folder; score one of its finished runs" in message
    assert str(experiment / "run-0002") in message and str(experiment / "e7-run-0003") in message
    with pytest.raises(ValidationError, match=r"has no summary\.json"):
        score.score(experiment / "run-0001" / "nothing", truth)


def test_another_pipeline_s_cells_are_scored_like_a_run_s(tmp_path: Path) -> None:
    """The suite2p side-by-side scores a label image: the truth itself is perfect, a shifted
    copy matches by centre but not by overlap, and a missing cell costs recall."""
    truth = tmp_path / "truth.json"
    cells = [
        [(r, c) for r in range(y, y + 6) for c in range(x, x + 6)] for y, x in ((5, 5), (30, 40))
    ]
    truth.write_text(json.dumps([{"coordinates": cell} for cell in cells]))
    labels = np.zeros((64, 64), np.int32)
    for k, cell in enumerate(cells, 1):
        labels[tuple(np.array(cell).T)] = k
    assert score.score_labels(labels, truth)["iou"]["f1"] == 1.0
    shifted = np.roll(labels, 3, axis=1)
    moved = score.score_labels(shifted, truth)
    assert moved["centre"]["f1"] == 1.0 and moved["iou"]["matched"] == 0
    labels[labels == 2] = 0
    assert score.score_labels(labels, truth)["centre"] == {
        "matched": 1,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
    }
