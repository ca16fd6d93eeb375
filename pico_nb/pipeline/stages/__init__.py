"""The pipeline's stages, one module per group; each reads the previous stage's outputs from
disk and writes its own. WORK gives each Stage (stage_order.py) the function that does it."""

from __future__ import annotations

from collections.abc import Callable

from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.stages import (
    background_removal,
    figures,
    motion,
    preprocess,
    segmentation,
    trace_extraction,
)

WORK: dict[Stage, Callable[[Invocation], None]] = {
    Stage.LOADING: preprocess.load,
    Stage.BAD_FRAMES: preprocess.repair,
    Stage.CORRECTION: preprocess.flatten,
    Stage.MOTION: motion.motion_correct,
    Stage.BACKGROUND: background_removal.remove_background,
    Stage.VESSELS: segmentation.find_vessels,
    Stage.SEGMENTATION: segmentation.segment_neurons,
    Stage.TRACES: trace_extraction.extract_traces,
    Stage.OUTPUTS: figures.write_outputs,
}
