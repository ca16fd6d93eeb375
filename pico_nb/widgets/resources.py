"""The machine and the queue: CPU, memory, GPUs where nvidia-smi exists, running and queued runs."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import ipywidgets as w
import psutil
import traitlets as t

from pico_nb.text import esc, size
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab import Lab

GPU_QUERY = "index,name,utilization.gpu,memory.used,memory.total"


def gpu_rows() -> list[list[str]] | str:
    """One row per GPU from nvidia-smi, or a sentence saying why there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "No NVIDIA GPU tools on this machine (nvidia-smi not found)."
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi did not answer ({type(exc).__name__})."
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
    return rows or "nvidia-smi reports no GPUs."


def meter(label: str, fraction: float, detail: str) -> str:
    """A labelled bar in plain HTML, so many meters cost one widget."""
    pct = max(0.0, min(fraction, 1.0)) * 100
    colour = "#dc2626" if pct > 90 else "#f59e0b" if pct > 70 else "#2563eb"
    return (
        f'<div style="margin:6px 0"><div><b>{esc(label)}</b> '
        f'<span class="pico-muted">{esc(detail)}</span></div>'
        f'<div style="background:#e2e8f0;border-radius:4px;height:10px;max-width:420px">'
        f'<div style="width:{pct:.0f}%;background:{colour};height:10px;border-radius:4px">'
        "</div></div></div>"
    )


class ResourcesView(w.VBox):
    """What the machine is doing and what waits in the queue, refreshed while visible."""

    active = t.Bool(True)

    def __init__(self, lab: Lab | None = None, refresh_seconds: float = 2.0) -> None:
        self.lab = lab or default_lab()
        self.machine = w.HTML()
        self.gpus = w.HTML()
        self.queue = w.HTML()
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Resources"),
                self.machine,
                self.gpus,
                heading("Queue", 3),
                self.queue,
                self.messages,
            ]
        )
        styled(self, "pico", "pico-resources")
        psutil.cpu_percent(interval=None)  # the first reading primes the counter
        self.refresh()
        self._ticker = Ticker(refresh_seconds, lambda: self.active and self.refresh())

    def close(self) -> None:
        self._ticker.stop()
        super().close()

    @guarded
    def refresh(self) -> None:
        """Read the machine and the queue again."""
        cpu = psutil.cpu_percent(interval=None)
        mem = psutil.virtual_memory()
        self.machine.value = meter(
            "CPU", cpu / 100, f"{cpu:.0f}% of {psutil.cpu_count()} cores"
        ) + meter(
            "Memory",
            mem.percent / 100,
            f"{size(mem.used)} of {size(mem.total)} ({mem.percent:.0f}%)",
        )
        gpus = gpu_rows()
        if isinstance(gpus, str):
            self.gpus.value = f'<div class="pico-muted">{esc(gpus)}</div>'
        else:
            self.gpus.value = "".join(
                meter(
                    f"GPU {i} · {name}", float(util) / 100, f"{util}% busy · {used} of {total} MiB"
                )
                for i, name, util, used, total in (row[:5] for row in gpus if len(row) >= 5)
            )
        q = self.lab.queue()
        gpus_text = f" · GPUs for runs: {esc(', '.join(q['gpus']))}" if q.get("gpus") else ""
        self.queue.value = (
            f"<div><b>{q['running']}</b> running of <b>{q['slots']}</b> slots · "
            f"<b>{q['queued']}</b> queued{gpus_text}</div>"
        )
