"""What the machine this process runs on has and uses: CPUs, load, memory, and the GPUs that
nvidia-smi reports. The local executor measures its host here and each Celery worker measures
itself here for its heartbeat, so front ends show where runs run, never the kernel's machine.

A measurement is plain JSON (it is stored on the worker's row):
``{"cpus": 8, "load": 0.25, "memory_total_mb": 32000, "memory_used_mb": 9000,
"gpus": [{"index": "0", "name": "…", "utilisation": 0.5, "memory_used_mb": 100,
"memory_total_mb": 8000}], "gpu_note": "…"}``.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import psutil

from pico_nb.schemas import MachineRecord

GPU_QUERY = "index,name,utilization.gpu,memory.used,memory.total"
MB = 1 << 20


def gpus() -> tuple[list[dict[str, Any]], str | None]:
    """One entry per GPU from nvidia-smi, and a sentence saying why there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "No NVIDIA GPU tools on this machine (nvidia-smi not found)."
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi did not answer ({type(exc).__name__})."
    found = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 5:
            index, name, util, used, total = cells[:5]
            found.append(
                {
                    "index": index,
                    "name": name,
                    "utilisation": _number(util, 100),
                    "memory_used_mb": _whole(used),
                    "memory_total_mb": _whole(total),
                }
            )
    return found, None if found else "nvidia-smi reports no GPUs."


def _number(text: str, scale: float) -> float | None:
    """nvidia-smi prints "[N/A]" for what a GPU cannot measure."""
    try:
        return float(text) / scale
    except ValueError:
        return None


def _whole(text: str) -> int | None:
    """A whole number of MiB, or None where nvidia-smi has none."""
    value = _number(text, 1)
    return None if value is None else int(value)


def this_machine() -> dict[str, Any]:
    """CPUs, the load average over the last minute as a share of them, memory, GPUs."""
    cpus = psutil.cpu_count() or 1
    memory = psutil.virtual_memory()
    found, note = gpus()
    return {
        "cpus": cpus,
        "load": round(psutil.getloadavg()[0] / cpus, 3),
        "memory_total_mb": memory.total // MB,
        "memory_used_mb": (memory.total - memory.available) // MB,
        "gpus": found,
        "gpu_note": note,
    }


def machine_record(measured: dict[str, Any] | None, **fields: Any) -> MachineRecord:
    """A measurement (or none yet: a worker from before workers measured themselves) with
    what the executor knows of the machine, as the record front ends display."""
    return MachineRecord.model_validate({**(measured or {}), **fields})
