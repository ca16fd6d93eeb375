"""Cell size from the data, and parameter suggestions when minArea/avgArea do not fit it.

Segmentation grows every seed into the region of pixels that share its activity, before
any area rule; the median area of those cell-shaped regions is the typical cell's, so
its equivalent diameter is the cell size the data shows. A rejected region at least
half that typical area is an otherwise good candidate (smaller ones are fragments and
specks, rightly dropped); when minArea turns away more than a tenth of the good ones, the
flags assume bigger cells than the field has: the run says so and proposes values derived
from the measured size (summary.json "suggestions"), which accept what it turned away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pico_nb.pipeline.flags import Flags

REJECTED_SHARE = 0.10
"""Share of cell-shaped regions minArea may reject before the run suggests other values."""
SMALL_CELL_PX = 10.0
"""Cells narrower than this need seeds searched at full resolution (pixel_size 1)."""


def diameter(areas: Sequence[int]) -> float | None:
    """Equivalent diameter of the median region: the typical cell's width in pixels."""
    if not len(areas):
        return None
    return float(2 * np.sqrt(np.median(areas) / np.pi))


def advise(
    accepted: Sequence[int], rejected: Sequence[int], flags: Flags
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cell_size, suggestions) for summary.json; suggestions is empty when the flags fit."""
    areas = [*accepted, *rejected]
    width = diameter(areas)
    typical = float(np.median(areas)) if areas else 0.0
    good = [a for a in rejected if a >= 0.5 * typical]
    share = len(good) / (len(accepted) + len(good)) if areas else 0.0
    size = {
        "diameter_px": None if width is None else round(width, 2),
        "median_area_px": typical if areas else None,
        "regions": len(accepted) + len(good),
        "rejected_by_min_area": len(good),
        "rejected_share": round(share, 3),
    }
    if width is None or share <= REJECTED_SHARE:
        return size, {}
    values = {
        "minArea": max(1, int(0.5 * typical)),
        "avgArea": max(1, round(typical)),
        "rmbg_gsize": max(1, round(width / 2)),
    }
    if width < SMALL_CELL_PX:
        values["pixel_size"] = 1
    current = flags.as_dict()
    values = {k: v for k, v in values.items() if v != current[k]}
    if not values:  # the flags already say what the data shows: nothing to try
        return size, {}
    why = (
        f"minArea {flags.minArea} rejected {len(good)} of {len(accepted) + len(good)} "
        f"cell-like regions ({100 * share:.0f}%); the cells measure about {width:.1f} px across "
        f"(median area {typical:.0f} px)"
    )
    return size, {"params": values, "why": why}


def describe(suggestions: dict[str, Any]) -> str:
    """The suggestion as one log line a person can act on."""
    values = " ".join(f"--{k} {v}" for k, v in suggestions["params"].items())
    return f"suggestion: {suggestions['why']}; try {values}"
