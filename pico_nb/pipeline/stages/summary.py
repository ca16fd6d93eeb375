"""summary.json, the machine-readable record of a finished run."""

from __future__ import annotations

import contextlib
import json
import resource
import time
from pathlib import Path

import numpy as np

from pico_nb.pipeline import writers
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import read_info


def peak_memory_mb() -> float:
    """The pipeline's peak resident memory so far, for compare and benchmarks: the kernel's
    high-water mark of this program (VmHWM), since ru_maxrss also keeps whatever the process
    that forked it held (a big parent would be counted as the pipeline's own)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        own = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def write_summary(run: Invocation, started: float) -> None:
    """summary.json, written last: its presence means the run finished."""
    layout = run.layout
    pre = read_info(layout.preprocess)
    labels = np.load(layout.seg / "masks.npy")
    seg_name = layout.seg.name
    size_file = layout.seg / "cell_size.json"
    size = json.loads(size_file.read_text("utf-8")) if size_file.exists() else {}
    previews = [
        ("mean image", f"{seg_name}/mean_image.png"),
        ("correlation image", f"{seg_name}/correlation_image.png"),
        ("neuron outlines over the mean image", f"{seg_name}/outlines.png"),
        ("example ΔF/F traces", f"{seg_name}/example_traces.png"),
        ("motion-correction shifts", "mc/shifts.png"),
    ]
    summary = {
        "pipeline": "pico_nb built-in CPU pipeline",
        "data_path": str(run.data_path),
        "out_path": str(layout.root),
        "input": pre["input"],
        "frames": pre["frames"],
        "size": pre["frame_shape"],
        "bad_frames": pre["bad_frames"],
        "neurons": int(labels.max()),
        "cell_size": size.get("cell_size"),
        "suggestions": size.get("suggestions", {}),
        "stage_seconds": run.seconds,
        "stage_cpu_seconds": run.cpu_seconds,
        "total_seconds": round(time.perf_counter() - started, 3),
        "peak_memory_mb": peak_memory_mb(),
        "result_dir": seg_name,
        "files": {
            "masks": f"{seg_name}/masks.npy",
            "traces": f"{seg_name}/traces.npy",
            "dff": f"{seg_name}/dff.npy",
            "rois": f"{seg_name}/rois.json",
            "shifts": "mc/shifts.csv",
            "bad_frames": "preprocess/bad_frames.csv",
        },
        "previews": {
            "images": [
                {"title": t, "path": path} for t, path in previews if (layout.root / path).exists()
            ]
        },
        "params": run.flags.as_dict(),
    }
    writers.write_json(layout.summary, summary)
