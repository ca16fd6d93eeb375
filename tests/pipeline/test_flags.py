"""Typed flags from the spec, and the one stage list the run and the stage table share."""

from __future__ import annotations

import typing
from dataclasses import FrozenInstanceError, fields

import pytest

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.spec import builtin_spec
from pico_nb.pipeline.flags import Flags
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.stages import WORK

SPEC = builtin_spec()
_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "choice": str}


def test_every_spec_parameter_is_a_typed_attribute_in_spec_order() -> None:
    hints = typing.get_type_hints(Flags)
    assert [f.name for f in fields(Flags)] == [p.name for p in SPEC.params]
    for p in SPEC.params:
        hint = hints[p.name]
        if p.kind == "int_list":
            assert typing.get_origin(hint) is tuple, p.name
            assert typing.get_args(hint) == (int,) * p.length, p.name
        else:
            assert hint is _TYPES[p.kind], p.name


def test_flags_from_the_command_line_are_typed_frozen_and_recorded_as_the_spec_reads_them() -> None:
    argv = SPEC.to_argv({"minArea": 20, "max_shifts": [7, 9]}, "/in", "/out")[3:]
    data_path, out_path, flags = Flags.parse(argv)
    assert (data_path, out_path) == ("/in", "/out")
    assert flags.minArea == 20 and flags.max_shifts == (7, 9) and flags.fr == 10
    assert isinstance(flags.downsample_ratio, float)
    assert flags.as_dict() == SPEC.validate({"minArea": 20, "max_shifts": [7, 9]})
    with pytest.raises(FrozenInstanceError):
        flags.minArea = 5  # type: ignore[misc]


def test_a_bad_value_is_refused_with_the_field_name() -> None:
    with pytest.raises(ValidationError) as caught:
        Flags.from_values({"minArea": "big"})
    assert set(caught.value.errors) == {"minArea"}
    assert "minArea" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        Flags.parse(["--data_path", "i", "--out_path", "o", "--fr", "0"])
    assert "fr: must be at least 1" in str(caught.value)


def test_every_stage_has_its_work_in_run_order() -> None:
    assert list(WORK) == list(Stage)
    assert Stage.BACKGROUND.and_after()[0] is Stage.BACKGROUND
    assert Stage.LOADING.and_after() == list(Stage)
