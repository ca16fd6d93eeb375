"""Where runs run and the queue: each machine's CPUs, memory and GPUs as the executor reports
them (this host, each Celery worker, or the Slurm partition's nodes), runs running and queued.
Nothing here measures the kernel's own machine: under the hub that is not where runs run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w
import traitlets as t

from pico_nb.schemas import JobRecord, MachineRecord, WorkerRecord
from pico_nb.text import esc, local_time, size
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

MIB = 1 << 20


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


def machine_html(machine: MachineRecord) -> str:
    """One machine: what it is and how it is doing, its CPU and memory as meters."""
    seen = f" · last report {local_time(machine.last_seen)}" if machine.kind == "worker" else ""
    slots = f" of {machine.slots}" if machine.slots is not None else ""
    yours = f" · your runs: {', '.join(map(str, machine.runs))}" if machine.runs else ""
    out = (
        f'<div style="margin-top:8px"><b>{esc(machine.name)}</b> <span class="pico-muted">'
        f"{esc(machine.kind)} · {esc(machine.state)} · {machine.running}{slots} runs running"
        f"{esc(yours + seen)}</span></div>"
    )
    cpus = machine.cpus
    if cpus and machine.cpus_busy is not None:
        busy = f"{machine.cpus_busy} of {cpus} CPUs allocated"
        out += meter("CPU", machine.cpus_busy / cpus, busy)
    elif cpus and machine.load is not None:
        out += meter("CPU", machine.load, f"load {machine.load * cpus:.1f} on {cpus} cores")
    total, used = machine.memory_total_mb, machine.memory_used_mb
    if total:
        detail = f"{size((used or 0) * MIB)} of {size(total * MIB)}" if used is not None else ""
        out += meter("Memory", (used or 0) / total, detail or f"{size(total * MIB)}")
    if machine.gres:
        out += f'<div class="pico-muted">generic resources: {esc(machine.gres)}</div>'
    return out


def gpus_html(machines: list[MachineRecord]) -> str:
    """Every GPU of every machine as a meter, or each machine's reason for having none."""
    parts = []
    for machine in machines:
        where = f"{machine.name} · " if len(machines) > 1 else ""
        parts += [
            meter(
                f"{where}GPU {gpu.index} · {gpu.name}",
                gpu.utilisation or 0.0,
                f"{(gpu.utilisation or 0.0) * 100:.0f}% busy · "
                f"{gpu.memory_used_mb} of {gpu.memory_total_mb} MiB",
            )
            for gpu in machine.gpus
        ]
        if not machine.gpus and machine.gpu_note:
            parts.append(f'<div class="pico-muted">{esc(where + machine.gpu_note)}</div>')
    return "".join(parts)


def job_table(jobs: list[JobRecord]) -> str:
    """This member's Slurm jobs with Slurm's state, and why a pending one waits."""
    rows = "".join(
        f"<tr><td>{esc(job.job_id)}</td><td>{job.run_id}</td><td>{esc(job.state)}</td>"
        f"<td>{esc(job.reason or '—')}</td><td>{esc(job.node or '—')}</td></tr>"
        for job in jobs
    )
    head = "".join(f"<th>{h}</th>" for h in ("Slurm job", "Run", "State", "Reason", "Node"))
    return f'<table class="pico-table"><tr>{head}</tr>{rows}</table>'


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
    """Where runs run, how those machines are doing and what waits, refreshed while visible."""

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
        self.refresh()
        self._ticker = Ticker(refresh_seconds, lambda: self.active and self.refresh())

    def close(self) -> None:
        self._ticker.stop()
        super().close()

    @guarded
    def refresh(self) -> None:
        """Ask again where runs run and what waits."""
        machines = self.lab.machines()
        self.machine.value = "".join(machine_html(m) for m in machines) or (
            '<div class="pico-muted">The executor reports no machine.</div>'
        )
        self.gpus.value = gpus_html(machines)
        q = self.lab.queue()
        gpus_text = f" · GPUs for runs: {esc(', '.join(q.gpus))}" if q.gpus else ""
        partition = f" · Slurm partition {esc(q.partition)}" if q.partition else ""
        error = f" · the executor did not answer: {esc(q.error)}" if q.error else ""
        self.queue.value = (
            f"<div><b>{q.running}</b> running of <b>{q.slots}</b> slots · "
            f"<b>{q.queued}</b> queued{gpus_text}{partition}{error}</div>"
        )
        workers = self.lab.workers()
        if q.jobs:
            self.workers.value = job_table(q.jobs)
        elif workers:
            self.workers.value = worker_table(workers)
        elif q.workers is not None:
            self.workers.value = (
                '<div class="pico-muted">No worker has registered yet: start one with '
                "<code>pico-nb worker</code> on a machine that reaches the broker.</div>"
            )
        else:
            self.workers.value = ""
