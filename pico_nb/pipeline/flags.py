"""The pipeline's flags as one typed, frozen object, so stages read attributes, not string keys.

One attribute per parameter of `pico_spec.toml`, in the spec's order and of the type its kind
gives (bool, int, float, str for text and choices, a tuple for whole-number lists); the spec
validates every value before it becomes a Flags, and tests/pipeline/test_flags.py checks the
attributes against the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pico_nb.contract.spec import builtin_spec


@dataclass(frozen=True)
class Flags:
    """Every flag of one pipeline run, typed and validated."""

    jump_to_rmbg: bool
    jump_to_seg: bool
    jump_to_vis: bool
    set_frame_num: int
    fr: int
    mc_chunk_size: int
    save_movie: bool
    max_shifts: tuple[int, int]
    strides: tuple[int, int]
    overlaps: tuple[int, int]
    num_frames_split: int
    max_deviation_rigid: int
    pw_rigid: bool
    shifts_opencv: bool
    border_nan: str
    downsample_ratio: float
    crop_parameter: tuple[int, int, int, int]
    intensity_corr_flag: bool
    bad_frame_detect_flag: bool
    up_sample: int
    rmbg_chunk_size: int
    rmbg_gsize: int
    ckpt_pth: str
    device: str
    gpu_ids: str
    patch_size: int
    pixel_size: int
    minArea: int
    avgArea: int
    thresh_pmap: int
    thresh_mask: float
    thresh_COM0: int
    thresh_COM: int
    cons: int
    avi_quality: int

    @classmethod
    def parse(cls, argv: Sequence[str]) -> tuple[str, str, Flags]:
        """(data_path, out_path, flags) from the command line; a bad flag is a
        ValidationError naming it."""
        data_path, out_path, typed = builtin_spec().parse_argv(argv)
        return data_path, out_path, cls._from_typed(typed)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Flags:
        """Flags from some values and the spec's defaults, validated as the command line is."""
        return cls._from_typed(builtin_spec().validate(values))

    @classmethod
    def _from_typed(cls, typed: Mapping[str, Any]) -> Flags:
        """Lists become tuples, so a Flags cannot be changed after the spec checked it."""
        return cls(**{f.name: _frozen(typed[f.name]) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Flag name to value in the spec's order, as summary.json records them."""
        return {f.name: _thawed(getattr(self, f.name)) for f in fields(self)}


def _frozen(value: Any) -> Any:
    """A whole-number list as a tuple; other values as they are."""
    return tuple(value) if isinstance(value, list) else value


def _thawed(value: Any) -> Any:
    """A tuple as the list the spec and JSON use; other values as they are."""
    return list(value) if isinstance(value, tuple) else value
