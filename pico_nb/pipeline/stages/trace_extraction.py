"""Traces: raw and neuropil fluorescence of every neuron, ΔF/F, and the activity filter."""

from __future__ import annotations

import numpy as np

from pico_nb.pipeline import traces
from pico_nb.pipeline.corrected_frames import Registered
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info
from pico_nb.pipeline.parallel import prefetch
from pico_nb.pipeline.progress import Progress
from pico_nb.pipeline.stage_order import Stage
from pico_nb.pipeline.stages.frame_stats import good_frames


def extract_traces(run: Invocation) -> None:
    """Raw and neuropil traces in one pass over the registered movie, then ΔF/F and cons."""
    flags, seg = run.flags, run.layout.seg
    labels = np.load(seg / "masks.npy")
    registered = Registered(run.layout)
    n = registered.n_frames
    cells = traces.mask_matrix(labels)
    ring = traces.neuropil_matrix(labels, flags.rmbg_gsize)
    used = np.union1d(cells.indices, ring.indices)
    cells, ring = cells[:, used], ring[:, used]
    raw = np.zeros((cells.shape[0], n), np.float32)
    neuropil = np.zeros_like(raw)
    with Progress(Stage.TRACES.value, n) as bar:
        for start, stop, frames in prefetch(registered.read, n, run.chunk(flags.mc_chunk_size)):
            pixels = np.take(frames.reshape(stop - start, -1), used, axis=1)
            pixels = pixels.T.astype(np.float32, order="C")
            raw[:, start:stop] = cells @ pixels
            neuropil[:, start:stop] = ring @ pixels
            bar.update(stop - start)
    corrected = raw - traces.NEUROPIL_FACTOR * neuropil
    dff = traces.delta_f_over_f(raw, corrected, flags.fr)
    good = good_frames(read_info(run.layout.preprocess))
    active = traces.longest_active_run(dff, good) >= flags.cons if len(dff) else np.zeros(0, bool)
    keep = np.flatnonzero(active)
    print(
        f"neurons kept: {len(keep)} of {len(dff)} active for at least {flags.cons} frames",
        flush=True,
    )
    lookup = np.zeros(len(dff) + 1, np.int32)
    lookup[keep + 1] = np.arange(1, len(keep) + 1)
    labels = lookup[labels]
    np.save(seg / "masks.npy", labels)
    np.save(seg / "traces.npy", raw[keep])
    np.save(seg / "neuropil.npy", neuropil[keep])
    np.save(seg / "dff.npy", dff[keep].astype(np.float32))
    np.save(seg / "traces_corrected.npy", corrected[keep])
