"""Reading how far a run is from its log lines: stage banners, tqdm bars and k/N counters.

A banner (``===> Motion correction <===``) names the stage; a tqdm bar (``42%|███ | 42/100
[00:10<00:14, 4.1it/s]``) or a plain ``k/N`` counter gives the fraction, and tqdm's remaining
time (or its rate) the ETA. Counters in tqdm's scaled units (``1.2k/3.4k``) are unscaled first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BANNER = re.compile(r"={3,}>\s*(?P<stage>.*?)\s*<={3,}")
_BAR = re.compile(r"(?P<pct>\d+(?:\.\d+)?)%\|")
_COUNT = re.compile(
    r"(?<![\w./])(?P<k>\d+(?:\.\d+)?[kMGTPEZY]?)/(?P<n>\d+(?:\.\d+)?[kMGTPEZY]?)(?![\w/])"
)
_LEFT = re.compile(r"<(?P<left>\d+(?::\d\d){1,2})\b")
_RATE = re.compile(r",\s*(?P<rate>\d+(?:\.\d+)?)(?P<unit>[^\s,\]/]*)/(?P<per>[^\s,\]]+)\]")
_SCALE = {s: 1000.0**i for i, s in enumerate("kMGTPEZY", start=1)}


@dataclass(frozen=True)
class Progress:
    """What a run reports about how far it is; every field may be unknown."""

    stage: str | None
    fraction: float | None
    eta_seconds: float | None
    text: str


class ProgressParser:
    """Turn stage banners, tqdm bars and k/N counters into a Progress, remembering the stage."""

    def __init__(self) -> None:
        self.current = Progress(None, None, None, "")

    def feed(self, line: str) -> Progress | None:
        """Return the new progress if the line reports any; other lines leave it as it was."""
        if "/" not in line and "<" not in line and "%" not in line:
            return None
        text = line.strip()
        if banner := _BANNER.search(text):
            found = Progress(banner["stage"], None, None, text)
        elif measured := _measure(text):
            found = Progress(self.current.stage, *measured, text)
        else:
            return None
        self.current = found
        return found


def _measure(text: str) -> tuple[float, float | None] | None:
    """Read fraction and ETA from a tqdm bar, or the fraction from a plain k/N counter."""
    bar = _BAR.search(text)
    count = _COUNT.search(text, bar.end() if bar else 0)
    done, total = (_number(count["k"]), _number(count["n"])) if count else (0.0, 0.0)
    if bar is None:
        return (done / total, None) if 0 <= done <= total and total > 0 else None
    fraction = done / total if 0 <= done <= total and total > 0 else float(bar["pct"]) / 100
    return min(fraction, 1.0), _eta(text, total - done)


def _eta(text: str, remaining: float) -> float | None:
    """Prefer tqdm's own remaining time; else work it out from the rate."""
    if left := _LEFT.search(text):
        return float(sum(int(part) * 60**i for i, part in enumerate(reversed(left[1].split(":")))))
    rate = _RATE.search(text)
    if rate is None or remaining <= 0 or float(rate["rate"]) <= 0:
        return None
    if rate["per"] == "s":
        return remaining / float(rate["rate"])
    return remaining * float(rate["rate"]) if rate["unit"] == "s" else None


def _number(value: str) -> float:
    """Undo tqdm's unit scaling (``1.2k``) so scaled counters give the right fraction."""
    return float(value[:-1]) * _SCALE[value[-1]] if value[-1] in _SCALE else float(value)
