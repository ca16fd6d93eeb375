"""The experiment form: generated from the spec, validated on Save, no duplicates."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as w

from pico_nb.lab import Lab
from pico_nb.widgets.form import ExperimentForm


def fill(form: ExperimentForm, frames: Path, out: Path, name: str = "trial") -> None:
    form.name.box.value = name
    form.input_path.box.value = str(frames)
    form.output_path.box.value = str(out)


def test_controls_follow_the_spec(lab: Lab) -> None:
    form = ExperimentForm(lab)
    assert [s.group for s in form.sections] == list(lab.spec.groups())
    assert set(form.fields) == {p.name for p in lab.spec.params}
    assert isinstance(form.fields["ignore_term"].inputs[0], w.Checkbox)
    assert isinstance(form.fields["lines"].inputs[0], w.IntText)
    assert form.fields["lines"].inputs[0].tooltip == lab.spec.by_name["lines"].help
    assert lab.spec.by_name["lines"].help in form.fields["lines"].help.value


def test_out_of_range_input_stays_and_is_explained(lab: Lab) -> None:
    form = ExperimentForm(lab)
    field = form.fields["exit_code"]
    field.inputs[0].value = 300
    assert field.value == 300 and field.inputs[0].value == 300  # never clamped
    assert field.error == "must be at most 255" and "255" in field.error_label.value
    field.inputs[0].value = 7
    assert field.error == "" and field.error_label.value == ""
    form.name.error = "must not be empty"
    form.name.box.value = "named now"
    assert form.name.error == ""


def test_changed_marks_and_resets(lab: Lab) -> None:
    form = ExperimentForm(lab)
    field = form.fields["lines"]
    assert not field.changed and field.marker.value == ""
    field.inputs[0].value = 7
    assert field.value == 7 and field.changed and "●" in field.marker.value
    section = next(s for s in form.sections if field in s.fields)
    assert "1 changed" in section.get_title(0)
    section.reset()
    assert field.value == 3 and not field.changed
    field.value = 9
    form.reset_params()
    assert form.params() == lab.spec.defaults()


def test_save_creates_once_then_updates(lab: Lab, frames: Path, tmp_path: Path) -> None:
    form = ExperimentForm(lab)
    saved = []
    form.on_saved(lambda exp, run: saved.append((exp.id, run)))
    fill(form, frames, tmp_path / "out")
    form.fields["lines"].value = 5
    form.save_button.click()
    form.save_button.click()  # a double click
    assert lab.count_experiments() == 1
    exp = lab.experiments()[0]
    assert exp.params["lines"] == 5 and exp.name == "trial"
    assert form.mode == "edit" and form.experiment_id == exp.id
    assert [s[0] for s in saved] == [exp.id, exp.id]
    assert "Saved experiment" in form.messages.value


def test_bad_values_show_next_to_fields_and_store_nothing(
    lab: Lab, frames: Path, tmp_path: Path
) -> None:
    form = ExperimentForm(lab)
    fill(form, tmp_path / "missing", tmp_path / "out", name="bad\x07name")
    form.fields["wait_file"].value = "two\nlines"
    form.save_button.click()
    assert lab.count_experiments() == 0
    assert form.name.error and form.input_path.error
    assert "one line" in form.fields["wait_file"].error_label.value
    assert "Not saved" in form.messages.value and "Traceback" not in form.messages.value
    fill(form, frames, tmp_path / "out")
    form.fields["wait_file"].value = ""
    form.save_button.click()
    assert lab.count_experiments() == 1 and form.name.error == ""


def test_detect_frames(lab: Lab, frames: Path, tmp_path: Path) -> None:
    form = ExperimentForm(lab)
    form.input_path.box.value = str(frames)
    form.input_path.children[0].children[2].click()
    assert "3 frames" in form.frames.value and "jpeg sequence" in form.frames.value
    empty = tmp_path / "empty"
    empty.mkdir()
    form.input_path.box.value = str(empty)
    form.input_path.children[0].children[2].click()
    assert "contains no frame_N.jpg images" in form.input_path.error


def test_save_and_run(lab: Lab, frames: Path, tmp_path: Path) -> None:
    form = ExperimentForm(lab)
    fill(form, frames, tmp_path / "out")
    runs = []
    form.on_saved(lambda exp, run: runs.append(run))
    form.save_run_button.click()
    assert runs[0] is not None and runs[0].number == 1
    assert lab.wait(runs[0].id, timeout=30).status == "completed"


def test_edit_and_clone(lab: Lab, make_experiment, tmp_path: Path) -> None:
    exp = make_experiment("base", lines=4)
    form = ExperimentForm(lab, exp.id)
    assert form.mode == "edit" and form.fields["lines"].value == 4
    form.fields["exit_code"].value = 2
    form.save_button.click()
    assert lab.get_experiment(exp.id).params["exit_code"] == 2
    clone = ExperimentForm(lab, exp.id, clone=True)
    assert clone.name.box.value == "base (copy)"
    clone.save_button.click()
    copy = lab.experiments(sort="id")[0]
    assert copy.parent_id == exp.id and copy.params["lines"] == 4
    assert lab.count_experiments() == 2


def test_crop_that_does_not_fit_is_refused_with_whole_frame_offered(
    settings_for, frames: Path, tmp_path: Path
) -> None:
    lab = Lab(user="alice", settings=settings_for("", pipeline_spec=None))
    form = ExperimentForm(lab)
    fill(form, frames, tmp_path / "out")
    crop = form.fields["crop_parameter"]
    crop.value = [153, 303, 1000, 1000]  # the original script's default, on a 16×16 movie
    form.save_button.click()
    assert lab.count_experiments() == 0
    assert "16×16 frame" in crop.error and "suggested: 0 0 16 16" in crop.error
    assert crop.whole_frame_button.layout.display is None
    crop.whole_frame_button.click()
    assert crop.value == [0, 0, 16, 16] and crop.error == ""
    assert crop.whole_frame_button.layout.display == "none"
    form.save_button.click()
    assert lab.experiments()[0].params["crop_parameter"] == [0, 0, 16, 16]
