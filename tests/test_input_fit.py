"""Parameters checked against the input movie at create, edit and run, with a suggested value."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.contract.errors import ValidationError
from pico_nb.lab import Lab
from pico_nb.params import load_spec

from support import write_frames

LabFor = Callable[..., Lab]


@pytest.fixture
def lab(settings_for: Callable[..., object]) -> Lab:
    """The built-in PICO spec on SQLite: the trap is in its crop."""
    return Lab(user="alice", settings=settings_for("", pipeline_spec=None))


def refused(call: Callable[[], object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        call()
    return caught.value.errors


def test_create_refuses_a_crop_outside_the_frame_and_suggests_the_whole_frame(
    lab: Lab, tmp_path: Path
) -> None:
    movie = write_frames(tmp_path / "movie", count=5, size=(24, 32))
    out = str(tmp_path / "out")
    errors = refused(
        lambda: lab.create_experiment(
            "trap", str(movie), out, params={"crop_parameter": [153, 303, 1000, 1000]}
        )
    )
    assert set(errors) == {"params.crop_parameter"}
    assert "24×32 frame" in errors["params.crop_parameter"]
    assert "suggested: 0 0 24 32 (the whole frame)" in errors["params.crop_parameter"]
    errors = refused(
        lambda: lab.create_experiment("many", str(movie), out, params={"set_frame_num": 6})
    )
    assert errors == {
        "params.set_frame_num": "must be at most 5, the number of frames in the input "
        "(0 reads every frame); suggested: 5"
    }
    assert lab.count_experiments() == 0  # nothing stored
    fits = lab.create_experiment("fits", str(movie), out, params={"set_frame_num": 5})
    assert fits.params["crop_parameter"] == [0, 0, 0, 0]  # the default: the whole frame


def test_edit_and_run_check_the_input_again(lab: Lab, tmp_path: Path) -> None:
    movie = write_frames(tmp_path / "movie", count=3, size=(32, 32))
    small = write_frames(tmp_path / "small", count=3, size=(16, 16))
    exp = lab.create_experiment(
        "e", str(movie), str(tmp_path / "out"), params={"crop_parameter": "8 8 24 24"}
    )
    errors = refused(lambda: lab.update_experiment(exp.id, input_path=str(small)))
    assert "16×16 frame" in errors["params.crop_parameter"]
    assert lab.get_experiment(exp.id).input_path == str(movie)  # unchanged
    shutil.rmtree(movie)
    write_frames(movie, count=3, size=(16, 16))  # the movie changed under the experiment
    errors = refused(lambda: lab.run_experiment(exp.id))
    assert "suggested: 0 0 16 16" in errors["params.crop_parameter"]
    assert lab.runs(exp.id) == []


def test_a_labs_own_spec_keeps_its_defaults(settings_for, tmp_path: Path) -> None:
    own = tmp_path / "lab_spec.toml"
    fake = (Path(__file__).parent / "fake_pipeline.toml").read_text()
    own.write_text(
        fake.replace("{spec_dir}", str(Path(__file__).parent))
        + '\n[[params]]\nname = "crop_parameter"\ntype = "int_list"\nlength = 4\n'
        'labels = ["y", "x", "height", "width"]\ndefault = [153, 303, 1000, 1000]\n'
        'minimum = [0, 0, 1, 1]\nframe = "crop"\nargv = "tokens"\n'
    )
    assert load_spec(own).defaults()["crop_parameter"] == [153, 303, 1000, 1000]
    lab = Lab(user="alice", settings=settings_for("", pipeline_spec=str(own)))
    movie = write_frames(tmp_path / "movie", count=3, size=(16, 16))
    errors = refused(lambda: lab.create_experiment("own", str(movie), str(tmp_path / "out")))
    assert "suggested: 0 0 16 16" in errors["params.crop_parameter"]  # refused, not rewritten
    assert load_spec(None).by_name["crop_parameter"].default == [0, 0, 0, 0]
