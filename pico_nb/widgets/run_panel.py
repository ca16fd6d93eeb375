"""A live view of one run: bounded log tail, stage, progress with ETA, Stop, download, copy."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ipywidgets as w
import traitlets as t

from pico_nb.schemas import LogLine, QueueRecord, RunRecord
from pico_nb.text import duration, esc, local_time
from pico_nb.widgets import default_lab
from pico_nb.widgets.routes import download_url
from pico_nb.widgets.run_notice import ended_notice
from pico_nb.widgets.style import MessageBar, badge, guarded, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

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
# Installed once per log box by an image that cannot load (widgets do not run <script>): keep
# the view on the newest line while the reader is at the bottom, leave it alone once they
# scroll up, and follow again when they come back down or press "Jump to latest".
FOLLOW_JS = (
    "const s=this.closest('.pico-log-scroll');if(!s||s.dataset.follow)return;"
    "s.dataset.follow='1';s.dataset.atBottom='1';"
    "s.addEventListener('scroll',()=>{s.dataset.atBottom="
    "(s.scrollHeight-s.scrollTop-s.clientHeight<24)?'1':'';"
    "s.classList.toggle('pico-log-paused',!s.dataset.atBottom)});"
    "new MutationObserver(()=>{if(s.dataset.atBottom)s.scrollTop=s.scrollHeight})"
    ".observe(s,{childList:true,subtree:true,characterData:true});"
    "s.scrollTop=s.scrollHeight"
)

JUMP_JS = (
    "const s=this.closest('.pico-run').querySelector('.pico-log-scroll');"
    "s.dataset.atBottom='1';s.scrollTop=s.scrollHeight"
)


_PLACE = re.compile(r"^(?P<name>.*?)\s*\(stage (?P<k>\d+) of (?P<n>\d+)\)$")


def split_stage(stage: str) -> tuple[str, tuple[int, int] | None]:
    """'motion correction (stage 4 of 9)' → ('motion correction', (4, 9)); others as they are."""
    match = _PLACE.match(stage or "")
    if not match or not 0 < int(match["k"]) <= int(match["n"]):
        return stage, None
    return match["name"], (int(match["k"]), int(match["n"]))


def overall_fraction(stage: str, fraction: float) -> float:
    """How far the whole run is: stages done plus this one's share (the stage alone if unknown)."""
    _, place = split_stage(stage)
    if place is None:
        return fraction
    return (place[0] - 1 + min(max(fraction, 0.0), 1.0)) / place[1]


def overall_eta(stage: str, fraction: float, run: RunRecord) -> float | None:
    """Time left for the whole run from its pace so far; unknown until a little is done."""
    _, place = split_stage(stage)
    elapsed = run.duration_seconds
    done = overall_fraction(stage, fraction)
    if place is None or elapsed is None or done < 0.05:
        return None
    return elapsed * (1 - done) / done


def queue_text(run: RunRecord, queue: QueueRecord) -> str:
    """What a queued run awaits: "queued · 2nd in line · waiting for a free slot (1 of 1 used)"."""
    parts = ["queued"]
    if run.queue_position:
        parts.append(
            "next to start" if run.queue_position == 1 else f"{_nth(run.queue_position)} in line"
        )
    slots, running = queue.slots, queue.running
    if run.reason:
        parts.append(run.reason)
    elif queue.workers is not None and not slots:
        parts.append("waiting for a worker to come online")
    elif run.needs_gpu:
        parts.append("waiting for a free GPU")
    else:
        parts.append(f"waiting for a free slot ({running} of {slots} used)")
    return " · ".join(parts)


def _nth(n: int) -> str:
    """1st, 2nd, 3rd, 4th … 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class LogView(w.Box):
    """A tail of at most MAX_LINES lines sent in blocks, so an update only carries new lines."""

    max_lines = t.Int(MAX_LINES)

    def __init__(self, **kwargs: object) -> None:
        self._inner = styled(w.Box(), "pico-log")
        self._blocks: list[tuple[w.HTML, list[str]]] = []
        follow = w.HTML(f'<img alt="" src="data:," onerror="{esc(FOLLOW_JS)}">')
        super().__init__([styled(follow, "pico-log-hook"), self._inner], **kwargs)
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

    def __init__(self, run_id: int, lab: LabAPI | None = None, **kwargs: object) -> None:
        self._closed = threading.Event()
        self.lab = lab or default_lab()
        self.header = w.HTML()
        self.stage_label = styled(w.HTML(), "pico-muted")
        self.bar = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="100%"))
        self.log_view = LogView()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.stop_button.on_click(self._stop_clicked)
        self.links = w.HTML()
        self.notifier = styled(w.HTML(), "pico-log-hook")
        self.messages = MessageBar()
        self._lock = threading.Lock()
        self._run: RunRecord | None = None
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
                self.notifier,
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
        when = (
            f"started {esc(local_time(run.started_at))} · {esc(duration(run.duration_seconds))}"
            if run.started_at
            else f"queued {esc(local_time(run.queued_at))}"
        )
        self.header.value = (
            f'<div class="pico-h3">Run {run.number} {badge(run.status)}</div>'
            f'<div class="pico-muted">{when}{reason}</div>'
        )
        self.stop_button.disabled = not run.active
        self.stop_button.layout.display = None if run.active else "none"  # nothing left to stop
        self.links.value = (
            f'<a class="pico-button" href="{esc(download_url(run.id))}" download>Download log</a> '
            f'<button class="pico-button" onclick="{esc(COPY_JS)}">Copy</button> '
            f'<button class="pico-button pico-jump" onclick="{esc(JUMP_JS)}">'
            "Jump to latest ↓</button>"
        )
        if not self.stage and run.stage:
            self.stage = run.stage
        self._run = run
        if run.status == "completed":
            self.bar.value, self.bar.bar_style = 1.0, "success"
        elif run.status in ("failed", "cancelled"):
            self.bar.bar_style = ""  # neutral: how far it got, not a warning colour
            self.bar.add_class("pico-bar-ended")
        elif self.bar.value == 0 and run.progress:
            self.bar.value = overall_fraction(self.stage, run.progress)
        if self.status in ("queued", "running") and not run.active:
            self._notify(run)
        self.status = run.status
        self._stage_text(None)

    def _notify(self, run: RunRecord) -> None:
        """Tell the person who owns the run, if that is who watches, that it has ended."""
        if run.user != self.lab.username:
            return
        self.notifier.value = ended_notice(run, self.lab.get_experiment(run.experiment_id).name)

    def _show_progress(self, event: LogLine) -> None:
        """Stage banner or progress bar state, parsed by the Lab from the log."""
        if event.stage is not None and event.stage != self.stage:
            self.stage = event.stage
        self.progress = event.progress or 0.0
        if self.status not in ("failed", "cancelled"):
            self.bar.value = overall_fraction(self.stage, self.progress)
        self._stage_text(event.eta_seconds)

    def _stage_text(self, eta: float | None) -> None:
        """'stage 4 of 9: motion correction · 45% · about 1m 05s left in all', or the queue."""
        run = self._run
        if run is not None and run.status == "queued":
            self.stage_label.value = esc(queue_text(run, self.lab.queue()))
            return
        name, place = split_stage(self.stage)
        parts = [f"stage {place[0]} of {place[1]}: {name}" if place else name]
        if not name:
            parts = ["waiting for the pipeline's first output" if run and run.active else ""]
        elif run is not None and not run.active:
            parts = [f"last stage: {parts[0]}"]
        if self.progress and run is not None and run.active:
            parts.append(f"{self.progress:.0%}")
        left = overall_eta(self.stage, self.progress, run) if run and run.active else None
        if left is None and eta is not None and eta >= 1 and not place:
            left = eta
        if left is not None and left >= 1:
            parts.append(f"about {duration(left)} left" + (" in all" if place else ""))
        self.stage_label.value = esc(" · ".join(parts))

    @guarded
    def _stop_clicked(self, _: object = None) -> None:
        """Ask the Lab to stop the run; the log shows when it has."""
        self.stop_button.disabled = True
        run = self.lab.stop_run(self.run_id)
        self.messages.info(f"stop requested for run {run.number}")
        self._show_run(run)
