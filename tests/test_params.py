"""The parameter spec: defaults, bounds, argv in the original convention, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.spec import builtin_spec
from pico_nb.params import load_spec

SPEC = builtin_spec()

EXPECTED_DEFAULTS = {
    "jump_to_rmbg": False,
    "jump_to_seg": False,
    "jump_to_vis": False,
    "set_frame_num": 0,
    "fr": 10,
    "mc_chunk_size": 1000,
    "save_movie": True,
    "max_shifts": [100, 100],
    "strides": [96, 96],
    "overlaps": [48, 48],
    "num_frames_split": 100,
    "max_deviation_rigid": 3,
    "pw_rigid": False,
    "shifts_opencv": True,
    "border_nan": "copy",
    "downsample_ratio": 0.1,
    "crop_parameter": [0, 0, 0, 0],  # the whole frame of any movie (original: 153 303 1000 1000)
    "intensity_corr_flag": False,
    "bad_frame_detect_flag": True,
    "up_sample": 2,
    "rmbg_chunk_size": 1000,
    "rmbg_gsize": 6,
    "ckpt_pth": "utils/deepdefinite_ckpt_resize_2.pth",
    "device": "cpu",  # the built-in pipeline is CPU-only (original: cuda)
    "gpu_ids": "0",
    "patch_size": 500,
    "pixel_size": 2,
    "minArea": 50,
    "avgArea": 100,
    "thresh_pmap": 1,
    "thresh_mask": 0.5,
    "thresh_COM0": 6,
    "thresh_COM": 10,
    "cons": 5,
    "avi_quality": 100,
}

# The original PICO script's call with every default, token for token.
ORIGINAL_DEFAULT_FLAGS = (
    "--data_path IN --out_path OUT --jump_to_rmbg false --jump_to_seg false "
    "--jump_to_vis false --set_frame_num 0 --fr 10 --mc_chunk_size 1000 --save_movie true "
    "--max_shifts 100,100 --strides 96,96 --overlaps 48,48 --num_frames_split 100 "
    "--max_deviation_rigid 3 --pw_rigid false --shifts_opencv true --border_nan copy "
    "--downsample_ratio 0.1 --crop_parameter 0 0 0 0 --intensity_corr_flag false "
    "--bad_frame_detect_flag true --up_sample 2 --rmbg_chunk_size 1000 --rmbg_gsize 6 "
    "--ckpt_pth utils/deepdefinite_ckpt_resize_2.pth --device cpu --gpu_ids 0 "
    "--patch_size 500 --pixel_size 2 --minArea 50 --avgArea 100 --thresh_pmap 1 "
    "--thresh_mask 0.5 --thresh_COM0 6 --thresh_COM 10 --cons 5 --avi_quality 100"
).split()


def test_every_parameter_has_its_original_default() -> None:
    assert SPEC.validate({}) == EXPECTED_DEFAULTS
    assert [p.name for p in SPEC.params] == list(EXPECTED_DEFAULTS)


def test_every_parameter_has_help_and_a_group() -> None:
    for p in SPEC.params:
        assert len(p.help) > 40, p.name
        assert p.group in {
            "Flow control",
            "Reading",
            "Motion correction",
            "Preprocessing",
            "Background removal",
            "Segmentation",
            "Saving",
        }


def test_default_argv_matches_the_original_convention() -> None:
    argv = SPEC.to_argv({}, "IN", "OUT")
    assert argv[:3][1:] == ["-m", "pico_nb.pipeline"]
    assert argv[3:] == ORIGINAL_DEFAULT_FLAGS


@pytest.mark.parametrize(
    ("name", "value", "tokens"),
    [
        ("pw_rigid", True, ["--pw_rigid", "true"]),
        ("max_shifts", "20, 30", ["--max_shifts", "20,30"]),
        ("strides", [48, 64], ["--strides", "48,64"]),
        ("crop_parameter", "0 0 512 256", ["--crop_parameter", "0", "0", "512", "256"]),
        ("downsample_ratio", "0.25", ["--downsample_ratio", "0.25"]),
        ("fr", "30", ["--fr", "30"]),
        ("border_nan", "min", ["--border_nan", "min"]),
        ("gpu_ids", "0,1", ["--gpu_ids", "0,1"]),
    ],
)
def test_argv_form_of_each_kind(name: str, value: object, tokens: list[str]) -> None:
    argv = SPEC.to_argv({name: value}, "IN", "OUT")
    i = argv.index(tokens[0])
    assert argv[i : i + len(tokens)] == tokens


def test_argv_round_trips_through_parse() -> None:
    values = {"fr": 30, "crop_parameter": [1, 2, 3, 4], "pw_rigid": True, "thresh_mask": 0.7}
    argv = SPEC.to_argv(values, "/in", "/out")
    data, out, parsed = SPEC.parse_argv(argv[3:])
    assert (data, out) == ("/in", "/out")
    assert parsed == {**EXPECTED_DEFAULTS, **values}


@pytest.mark.parametrize(
    ("values", "field", "rule"),
    [
        ({"fr": 0}, "fr", "at least 1"),
        ({"fr": "10.5"}, "fr", "whole number"),
        ({"fr": True}, "fr", "whole number"),
        ({"fr": "ten"}, "fr", "whole number"),
        ({"downsample_ratio": 0}, "downsample_ratio", "greater than 0"),
        ({"downsample_ratio": 1.5}, "downsample_ratio", "at most 1"),
        ({"downsample_ratio": "nan"}, "downsample_ratio", "finite"),
        ({"avi_quality": 101}, "avi_quality", "at most 100"),
        ({"avi_quality": -1}, "avi_quality", "at least 0"),
        ({"crop_parameter": [0, 0, -1, 10]}, "crop_parameter", "height must be at least 0"),
        ({"crop_parameter": [-1, 0, 10, 10]}, "crop_parameter", "y must be at least 0"),
        ({"crop_parameter": [1, 2, 3]}, "crop_parameter", "4 whole numbers"),
        ({"max_shifts": "1,2,3"}, "max_shifts", "2 whole numbers"),
        ({"strides": [0, 5]}, "strides", "y must be at least 1"),
        ({"border_nan": "maybe"}, "border_nan", "one of copy, min, true, false"),
        ({"device": "tpu"}, "device", "one of cpu, cuda"),
        ({"pw_rigid": "perhaps"}, "pw_rigid", "true or false"),
        ({"gpu_ids": "0;rm -rf"}, "gpu_ids", "comma-separated GPU numbers"),
        ({"ckpt_pth": "a\nb"}, "ckpt_pth", "one line"),
        ({"thresh_mask": 2}, "thresh_mask", "at most 1"),
        ({"minArea": 0}, "minArea", "at least 1"),
        ({"no_such_flag": 1}, "no_such_flag", "unknown parameter"),
        ({"jump_to_seg": True}, "jump_to_seg", "jump_to_rmbg must be on"),
        (
            {"jump_to_rmbg": True, "jump_to_vis": True},
            "jump_to_vis",
            "jump_to_seg must be on",
        ),
        ({"minArea": 200, "avgArea": 100}, "avgArea", "smallest accepted area"),
        # issue 12: numbers beyond any store or any recording, text read as a flag or spoofing
        ({"mc_chunk_size": 10**4999}, "mc_chunk_size", "at most 1000000"),
        ({"cons": 10**3999}, "cons", "at most 1000000"),
        ({"set_frame_num": 1e300}, "set_frame_num", "at most 100000000"),
        ({"max_shifts": [2**63, 0]}, "max_shifts", "y must be at most 65535"),
        ({"set_frame_num": "9" * 5000}, "set_frame_num", "whole number"),
        ({"downsample_ratio": "1e400"}, "downsample_ratio", "finite"),
        ({"downsample_ratio": 10**400}, "downsample_ratio", "finite"),
        ({"ckpt_pth": "--out_path"}, "ckpt_pth", "must not start with '-'"),
        ({"ckpt_pth": "--data_path=/etc"}, "ckpt_pth", "must not start with '-'"),
        ({"ckpt_pth": "model\x7f.pth"}, "ckpt_pth", "control characters"),
        ({"ckpt_pth": "evil\u202egnp.pth"}, "ckpt_pth", "bidi"),
        ({"ckpt_pth": "c1\x85.pth"}, "ckpt_pth", "control characters"),
    ],
)
def test_each_rule_names_its_field(values: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        SPEC.validate(values)
    assert field in info.value.errors
    assert rule in info.value.errors[field]
    assert field in str(info.value)


def test_all_bad_fields_are_reported_together() -> None:
    with pytest.raises(ValidationError) as info:
        SPEC.validate({"fr": -1, "avi_quality": 500, "bogus": 1})
    assert set(info.value.errors) == {"fr", "avi_quality", "bogus"}


def test_form_strings_are_typed() -> None:
    typed = SPEC.validate({"fr": " 20 ", "pw_rigid": "True", "thresh_mask": "0.25"})
    assert typed["fr"] == 20 and typed["pw_rigid"] is True and typed["thresh_mask"] == 0.25


def test_json_schema_agrees_with_the_spec() -> None:
    schema = SPEC.json_schema()
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(props) == set(EXPECTED_DEFAULTS)
    assert props["fr"] == {**props["fr"], "type": "integer", "minimum": 1, "default": 10}
    assert props["downsample_ratio"]["exclusiveMinimum"] == 0
    assert props["border_nan"]["enum"] == ["copy", "min", "true", "false"]
    assert [item["minimum"] for item in props["crop_parameter"]["prefixItems"]] == [0, 0, 0, 0]
    assert props["crop_parameter"]["x-labels"] == ["y", "x", "height", "width"]
    json.dumps(schema)  # serialisable as is


def test_a_lab_can_load_its_own_spec(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "name": "mypico",
                "command": ["/opt/pico/run.sh"],
                "params": [
                    {"name": "fr", "type": "int", "default": 20, "minimum": 1, "help": "rate"}
                ],
            }
        )
    )
    spec = load_spec(path)
    assert spec.to_argv({"fr": 5}, "i", "o") == [
        "/opt/pico/run.sh",
        "--data_path",
        "i",
        "--out_path",
        "o",
        "--fr",
        "5",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('name = "x"\n', "command"),
        ('command = ["x"]\n[[params]]\nname = "a"\ntype = "blob"\ndefault = 1\n', "type"),
        ('command = ["x"]\n[[params]]\nname = "a"\ntype = "int"\ndefault = "z"\n', "default"),
        ("not toml at all [", "pipeline_spec"),
    ],
)
def test_a_broken_spec_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValidationError) as info:
        load_spec(path)
    assert "pipeline_spec" in info.value.errors
    assert message in str(info.value)


def test_spec_travels_as_data() -> None:
    from pico_nb.contract.spec import spec_from_dict

    assert spec_from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC
