"""One invocation of the pipeline: its input, output layout, flags and stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pico_nb.contract.sources import Source
from pico_nb.pipeline.flags import Flags
from pico_nb.pipeline.layout import Layout, read_info
from pico_nb.pipeline.progress import banner
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.store import frames_per_chunk


@dataclass
class Invocation:
    """What every stage reads: paths, typed flags, the checked input, and what each stage took."""

    data_path: Path
    layout: Layout
    flags: Flags
    source: Source | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def stage(
        self, stage: Stage, work: Callable[[Invocation], None], place: tuple[int, int]
    ) -> None:
        """Announce (as stage k of n, for overall progress), run and time one stage."""
        banner(f"{stage.value} (stage {place[0]} of {place[1]})")
        start, cpu = time.perf_counter(), time.process_time()
        work(self)
        self.seconds[stage.value] = round(time.perf_counter() - start, 3)
        self.cpu_seconds[stage.value] = round(time.process_time() - cpu, 3)

    def input_movie(self) -> Source:
        """The checked input movie, which prepare() discovers when the run starts by loading."""
        if self.source is None:
            raise RuntimeError("the input movie is known only to a run that starts by loading it")
        return self.source

    def chunk(self, wanted: int) -> int:
        """Frames per chunk: a chunk-size flag's value, capped by the float32 memory budget."""
        shape = read_info(self.layout.preprocess)["frame_shape"]
        return frames_per_chunk(tuple(shape), wanted)
