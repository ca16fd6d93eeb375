"""A live view of one run: bounded log tail, stage, progress with ETA, Stop, download, copy."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ipywidgets as w
import traitlets as t

from pico_nb.schemas import LogLine, RunRecord
from pico_nb.text import duration, esc, local_time
from pico_nb.widgets import default_lab
from pico_nb.widgets.routes import download_url
from pico_nb.widgets.style import MessageBar, badge, guarded, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab import Lab

MAX_LINES = 2000
BLOCK_LINES = 250
FLUSH_INTERVAL = 0.25  # at most four updates a second reach the browser
REFRESH_INTERVAL = 2.0  # status and duration are re-read this often while nothing is logged
REPLAY_LIMIT = 16 << 20  # bigger logs are replayed from their tail; the download has it all

COPY_JS = (
    "const t=this.closest('.pico-run').querySelector('.pico-log').innerText;"
    "navigator.clipboard.writeText(t).then(()=>{this.textContent='Copied';"
    "setTimeout(()=>{this.textContent='Copy'},1500)})"
)


class LogView(w.Box):
    """A tail of at most MAX_LINES lines sent in blocks, so an update only carries new lines."""

    max_lines = t.Int(MAX_LINES)

    def __init__(self, **kwargs: object) -> None:
        self._inner = styled(w.Box(), "pico-log")
        self._blocks: list[tuple[w.HTML, list[str]]] = []
        super().__init__([self._inner], **kwargs)
        self.add_class("pico-log-scroll")

    @property
    def lines(self) -> list[str]:
        """The lines the browser holds now."""
        return [line for _, lines in self._blocks for line in lines]

    def append(self, lines: list[str]) -> None:
        """Add lines at the end, dropping whole blocks from the start to stay bounded."""
        if not lines:
            return
        lines = lines[-self.max_lines :]
        if len(lines) == self.max_lines:
            self.clear()
        touched: list[tuple[w.HTML, list[str]]] = []
        for line in lines:
            if not self._blocks or len(self._blocks[-1][1]) >= BLOCK_LINES:
                self._blocks.append((w.HTML(), []))
            block = self._blocks[-1]
            block[1].append(line)
            if not touched or touched[-1] is not block:
                touched.append(block)
        dropped = []
        while sum(len(b[1]) for b in self._blocks) > self.max_lines:
            dropped.append(self._blocks.pop(0)[0])
        for html_widget, block_lines in touched:
            html_widget.value = "<pre>" + esc("\n".join(block_lines)) + "</pre>"
        self._inner.children = tuple(b[0] for b in self._blocks)
        for widget in dropped:
            widget.close()

    def clear(self) -> None:
        """Forget every line."""
        old = [b[0] for b in self._blocks]
        self._blocks = []
        self._inner.children = ()
        for widget in old:
            widget.close()


@dataclass
class _Pending:
    """What the reader thread collected since the last update of the page."""

    lines: deque[str] = field(
        default_factory=lambda: deque(maxlen=MAX_LINES)
    )  # only the tail shows
    progress: LogLine | None = None
    reader_done: bool = False
    error: Exception | None = None


class RunPanel(w.VBox):
    """Follow one run live from any kernel or page: it replays the log, then tails it."""

    run_id = t.Int()
    status = t.Unicode("")
    stage = t.Unicode("")
    progress = t.Float(0.0)
    following = t.Bool(False)

    def __init__(self, run_id: int, lab: Lab | None = None, **kwargs: object) -> None:
        self._closed = threading.Event()
        self.lab = lab or default_lab()
        self.header = w.HTML()
        self.stage_label = styled(w.HTML(), "pico-muted")
        self.bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="100%"))
        self.log_view = LogView()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.on_click(self._stop_clicked)
        self.links = w.HTML()
        self.messages = MessageBar()
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._wake = threading.Event()
        toolbar = styled(w.HBox([self.stop_button, self.links]), "pico-toolbar")
        super().__init__(
            [
                stylesheet(),
                self.header,
                self.stage_label,
                self.bar,
                self.log_view,
                toolbar,
                self.messages,
            ],
            **kwargs,
        )
        styled(self, "pico", "pico-run")
        self.run_id = int(run_id)
        self._attach()

    # ------------------------------------------------------------------ lifecycle

    def _attach(self) -> None:
        """Show the run as it is now and, if it has a log to read, start following it."""
        run = self.lab.get_run(self.run_id)
        self._show_run(run)
        size = self.lab.read_log(run.id, 0, 4).size
        from_tail = MAX_LINES if size > REPLAY_LIMIT else None
        if from_tail:
            self.messages.info(f"log is {size >> 20} MB: showing its end; download has it all")
        self.following = True
        threading.Thread(target=self._read, args=(from_tail,), daemon=True).start()
        threading.Thread(target=self._update_loop, daemon=True).start()

    def close(self) -> None:
        """Stop following before the widget goes, so no thread outlives its page."""
        self._closed.set()
        self._wake.set()
        super().close()

    def _read(self, from_tail: int | None) -> None:
        """Reader thread: collect lines and progress from the log as the pipeline writes them."""
        try:
            for event in self.lab.follow_log(
                self.run_id, 0, from_tail=from_tail, stop=self._closed.is_set
            ):
                if self._closed.is_set():
                    return
                with self._lock:
                    if event.line is not None:
                        self._pending.lines.append(event.line)
                    if event.stage is not None or event.progress is not None:
                        self._pending.progress = event
                self._wake.set()
        except Exception as exc:
            with self._lock:
                self._pending.error = exc
        finally:
            with self._lock:
                self._pending.reader_done = True
            self._wake.set()

    def _update_loop(self) -> None:
        """Update thread: apply what was read in batches, at most every FLUSH_INTERVAL."""
        last = 0.0
        while not self._closed.is_set():
            woken = self._wake.wait(REFRESH_INTERVAL)
            self._wake.clear()
            wait = last + FLUSH_INTERVAL - time.monotonic()
            if wait > 0 and self._closed.wait(wait):
                break
            if self._closed.is_set():
                break
            with self._lock:
                pending, self._pending = self._pending, _Pending()
            last = time.monotonic()
            try:
                self._apply(pending, refresh=not woken or pending.reader_done)
            except Exception as exc:
                self.messages.error(exc)
                pending.reader_done = True
            if pending.reader_done:
                break
        self.following = False

    def _apply(self, pending: _Pending, refresh: bool) -> None:
        """Put a batch on the page; re-read the run when asked or when something moved."""
        self.log_view.append(list(pending.lines))
        if pending.progress is not None:
            self._show_progress(pending.progress)
        if pending.error is not None:
            self.messages.error(pending.error)
        if refresh or pending.lines:
            self._show_run(self.lab.get_run(self.run_id))

    # ------------------------------------------------------------------- display

    def _show_run(self, run: RunRecord) -> None:
        """Header line, buttons and bar colour for the run's current state."""
        reason = f" · {esc(run.reason)}" if run.reason else ""
        self.header.value = (
            f'<div class="pico-h3">Run {run.number} {badge(run.status)}</div>'
            f'<div class="pico-muted">started {esc(local_time(run.started_at))} · '
            f"{esc(duration(run.duration_seconds))}{reason}</div>"
        )
        self.stop_button.disabled = not run.active
        self.links.value = (
            f'<a class="pico-button" href="{esc(download_url(run.id))}" download>Download log</a> '
            f'<button class="pico-button" onclick="{esc(COPY_JS)}">Copy</button>'
        )
        if not self.stage and run.stage:
            self.stage = run.stage
        if run.status == "completed":
            self.bar.value, self.bar.bar_style = 1.0, "success"
        elif run.status in ("failed", "cancelled"):
            self.bar.bar_style = "danger" if run.status == "failed" else "warning"
        elif self.bar.value == 0 and run.progress:
            self.bar.value = run.progress
        self.status = run.status
        self._stage_text(None)

    def _show_progress(self, event: LogLine) -> None:
        """Stage banner or progress bar state, parsed by the Lab from the log."""
        if event.stage is not None and event.stage != self.stage:
            self.stage = event.stage
        self.progress = event.progress or 0.0
        self.bar.value = self.progress
        self._stage_text(event.eta_seconds)

    def _stage_text(self, eta: float | None) -> None:
        """'motion correction · 45% · about 1m 05s left'."""
        parts = [self.stage or "waiting for the pipeline"]
        if self.progress:
            parts.append(f"{self.progress:.0%}")
        if eta is not None and self.status == "running":
            parts.append(f"about {duration(eta)} left")
        self.stage_label.value = esc(" · ".join(parts))

    @guarded
    def _stop_clicked(self, _: object = None) -> None:
        """Ask the Lab to stop the run; the log shows when it has."""
        self.stop_button.disabled = True
        run = self.lab.stop_run(self.run_id)
        self.messages.info(f"stop requested for run {run.number}")
        self._show_run(run)
