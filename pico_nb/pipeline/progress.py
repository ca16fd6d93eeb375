"""Stage banners and tqdm-style progress bars that other components parse from stdout."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

_PARTIAL = " ▏▎▍▌▋▊▉"
_MIN_INTERVAL = 0.1


def banner(stage: str, stream: TextIO | None = None) -> None:
    """Announce a stage in the fixed form the run monitor looks for."""
    out = stream or sys.stdout
    out.write(f"=======> {stage} <=======\n")
    out.flush()


def _clock(seconds: float) -> str:
    """Elapsed and remaining time as tqdm prints it."""
    seconds = int(max(0, seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _bar(fraction: float, width: int = 10) -> str:
    """A block bar with eighth-steps, so slow stages still visibly move."""
    eighths = int(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_PARTIAL[part] if full < width else "")
    return text.ljust(width)


class Progress:
    """A carriage-return progress line, throttled to about ten updates a second."""

    def __init__(
        self, label: str, total: int, unit: str = "frames", stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = stream or sys.stdout
        self.done = 0
        self.start = time.perf_counter()
        self._last = -1.0
        self._final_drawn = False

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None and self.done < self.total:
            self.done = self.total
            self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def update(self, count: int = 1) -> None:
        """Advance by count units and redraw if enough time has passed."""
        self.done = min(self.total, self.done + count)
        self._draw()

    def line(self) -> str:
        """The current bar, e.g. `mc:  42%|████▏     | 840/2000 [00:03<00:04, 250.1frames/s]`."""
        elapsed = time.perf_counter() - self.start
        fraction = self.done / self.total if self.total else 1.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"{self.label}: {fraction * 100:3.0f}%|{_bar(fraction)}| {self.done}/{self.total} "
            f"[{_clock(elapsed)}<{_clock(remaining)}, {rate:.1f}{self.unit}/s]"
        )

    def _draw(self, force: bool = False) -> None:
        """Write the bar over the previous one."""
        now = time.perf_counter()
        if not force and now - self._last < _MIN_INTERVAL and self.done < self.total:
            return
        if self.done == self.total and self._final_drawn:
            return
        self._final_drawn = self.done == self.total
        self._last = now
        self.stream.write("\r" + self.line())
        self.stream.flush()
