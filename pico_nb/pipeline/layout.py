"""Where each stage keeps its outputs, and the state of one run.

Later stages (and jump_to_* reruns) find earlier results only through Layout, so the
folder layout is defined in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pico_nb.errors import ValidationError
from pico_nb.frames import Source
from pico_nb.pipeline.progress import banner
from pico_nb.pipeline.store import frames_per_chunk


@dataclass(frozen=True)
class Layout:
    """The output folder and the original pipeline's sub-folder names."""

    root: Path
    thresh_pmap: int

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess"

    @property
    def mc(self) -> Path:
        return self.root / "mc"

    @property
    def rmbg(self) -> Path:
        return self.root / "rmbg"

    @property
    def seg(self) -> Path:
        return self.root / f"seg_results_thresh_pmap_{self.thresh_pmap}"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def make(self) -> None:
        """Create every stage folder."""
        for folder in (self.preprocess, self.mc, self.rmbg, self.seg):
            folder.mkdir(parents=True, exist_ok=True)

    def require(self, *paths: Path, flag: str) -> None:
        """Stop with a clear message when a jump flag needs outputs that are not there."""
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise ValidationError.one(
                flag,
                f"needs {missing[0].relative_to(self.root)} from an earlier run in "
                f"{self.root}, which is missing; run without {flag} first",
            )


def read_info(folder: Path) -> dict[str, Any]:
    """A stage's info.json."""
    return json.loads((folder / "info.json").read_text("utf-8"))


@dataclass
class Run:
    """One pipeline invocation: its paths, parameters and stage timings."""

    data_path: Path
    layout: Layout
    params: dict[str, Any]
    source: Source | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, work: Callable[[Run], None], place: tuple[int, int]) -> None:
        """Announce (as stage k of n, for overall progress), run and time one stage."""
        banner(f"{name} (stage {place[0]} of {place[1]})")
        start, cpu = time.perf_counter(), time.process_time()
        work(self)
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.cpu_seconds[name] = round(time.process_time() - cpu, 3)

    def input_movie(self) -> Source:
        """The checked input movie, which prepare() discovers when the run starts by loading."""
        if self.source is None:
            raise RuntimeError("the input movie is known only to a run that starts by loading it")
        return self.source

    def chunk(self, key: str = "mc_chunk_size") -> int:
        """Frames per chunk: the flag's value, capped by the float32 memory budget."""
        shape = read_info(self.layout.preprocess)["frame_shape"]
        return frames_per_chunk(tuple(shape), self.params[key])
