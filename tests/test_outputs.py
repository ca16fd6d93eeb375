"""What a run produced, read safely for the results views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pico_nb import outputs
from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError


def test_summary_previews_and_files(tmp_path: Path) -> None:
    (tmp_path / "mc").mkdir()
    (tmp_path / "mc" / "shifts.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("outside")
    out = tmp_path / "out"
    (out / "seg").mkdir(parents=True)
    (out / "seg" / "mean.png").write_bytes(b"png")
    summary = {
        "frames": 10,
        "previews": {
            "images": [
                {"title": "mean", "path": "seg/mean.png"},
                {"title": "escape", "path": "../mc/shifts.png"},
                {"title": "missing", "path": "seg/none.png"},
            ]
        },
    }
    (out / "summary.json").write_text(json.dumps(summary))
    results = outputs.collect(1, out, [tmp_path])
    assert results.summary["frames"] == 10
    assert [(i.title, i.path) for i in results.images] == [("mean", "seg/mean.png")]
    assert {f.path for f in results.files} == {"summary.json", "seg/mean.png"}
    assert outputs.read_file(out, "seg/mean.png", [tmp_path]) == b"png"
    with pytest.raises(PermissionDenied):
        outputs.read_file(out, "../secret.txt", [tmp_path])
    with pytest.raises(PermissionDenied):
        outputs.read_file(out, "/etc/passwd", [tmp_path])
    with pytest.raises(NotFound):
        outputs.read_file(out, "seg/none.png", [tmp_path])
    with pytest.raises(ValidationError):
        outputs.read_file(out, "", [tmp_path])


def test_without_summary_lists_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "summary.json").write_text("{not json")
    results = outputs.collect(2, tmp_path, [tmp_path])
    assert results.summary is None and results.images == []
    assert [f.path for f in results.files] == ["a.txt", "summary.json"]
    assert outputs.collect(3, tmp_path / "missing", [tmp_path]).files == []
