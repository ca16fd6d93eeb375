"""The machine and the queue: CPU, memory, GPUs where nvidia-smi exists, running and queued runs."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import ipywidgets as w
import psutil
import traitlets as t

from pico_nb.schemas import WorkerRecord
from pico_nb.text import esc, local_time, size
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

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


def worker_table(workers: list[WorkerRecord]) -> str:
    """Workers with their load and last report; a lost one stands out."""
    colours = {"online": "#16a34a", "stopped": "#64748b", "lost": "#dc2626"}
    rows = "".join(
        f"<tr><td><b>{esc(wk.name)}</b></td><td>{esc(wk.host)}</td>"
        f'<td style="color:{colours.get(wk.state, "#000")}">{esc(wk.state)}</td>'
        f"<td>{wk.busy} of {wk.slots}</td><td>{esc(', '.join(wk.gpus) or '—')}</td>"
        f"<td>{esc(', '.join(map(str, wk.runs)) or '—')}</td>"
        f"<td>{esc(local_time(wk.heartbeat_at))}</td></tr>"
        for wk in workers
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Worker", "Host", "State", "Busy", "GPUs", "Your runs", "Last report")
    )
    return f'<table class="pico-table"><tr>{head}</tr>{rows}</table>'


class ResourcesView(w.VBox):
    """What the machine is doing and what waits in the queue, refreshed while visible."""

    active = t.Bool(True)

    def __init__(self, lab: LabAPI | None = None, refresh_seconds: float = 2.0) -> None:
        self.lab = lab or default_lab()
        self.machine = w.HTML()
        self.gpus = w.HTML()
        self.queue = w.HTML()
        self.workers = w.HTML()
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Resources"),
                self.machine,
                self.gpus,
                heading("Queue", 3),
                self.queue,
                self.workers,
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
        workers = self.lab.workers()
        if workers:
            self.workers.value = worker_table(workers)
        elif self.lab.settings.executor == "celery":
            self.workers.value = (
                '<div class="pico-muted">No worker has registered yet: start one with '
                "<code>pico-nb worker</code> on a machine that reaches the broker.</div>"
            )
