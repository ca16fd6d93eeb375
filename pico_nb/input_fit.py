"""Parameters checked against the input movie itself: a crop inside the frame, no more frames
than it holds. Type and bound checks live in params.py; these need the detected frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pico_nb.contract.param import Param
from pico_nb.contract.spec import PipelineSpec
from pico_nb.schemas import FrameInfo


def whole_frame(info: FrameInfo) -> list[int]:
    """The crop that keeps everything: what the form's "use whole frame" fills in."""
    return [0, 0, int(info.height or 0), int(info.width or 0)]


def crop_problem(crop: list[int], info: FrameInfo) -> str | None:
    """Why a y, x, height, width crop does not fit the frame (0 = to the edge), or None."""
    if not info.height or not info.width:
        return None
    y, x, height, width = (int(v) for v in crop)
    bottom = y + (height or info.height - y)
    right = x + (width or info.width - x)
    if y < info.height and x < info.width and bottom <= info.height and right <= info.width:
        return None
    whole = " ".join(str(v) for v in whole_frame(info))
    return (
        f"rows {y}–{bottom} × columns {x}–{right} fall outside the input's "
        f"{info.height}×{info.width} frame (height×width); suggested: {whole} (the whole frame)"
    )


def count_problem(count: int, info: FrameInfo) -> str | None:
    """Why a number of frames to read is more than the movie has, or None."""
    if count <= info.count:
        return None
    return (
        f"must be at most {info.count}, the number of frames in the input "
        f"(0 reads every frame); suggested: {info.count}"
    )


def fit_problem(param: Param, value: Any, info: FrameInfo) -> str | None:
    """Why one typed value cannot work on this input (per its frame role), or None."""
    if param.frame == "crop":
        return crop_problem(value, info)
    if param.frame == "count":
        return count_problem(int(value), info)
    return None


def check_fits_input(
    spec: PipelineSpec, params: Mapping[str, Any], info: FrameInfo
) -> dict[str, str]:
    """Every typed parameter that cannot work on this input, with a suggested value."""
    errors: dict[str, str] = {}
    for param in spec.params:
        if param.frame and param.name in params:
            problem = fit_problem(param, params[param.name], info)
            if problem:
                errors[param.name] = problem
    return errors
