"""What a finished run produced: its key numbers, its preview images, its output files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from pico_nb.contract.errors import NotFound
from pico_nb.schemas import Results
from pico_nb.text import duration, esc, size
from pico_nb.widgets import default_lab
from pico_nb.widgets.routes import file_url
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

MAX_IMAGES = 12
MAX_LISTED_FILES = 200
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".svg": "svg+xml"}


def _frame_size(value: Any) -> str:
    return " × ".join(str(v) for v in value) if isinstance(value, list) else str(value)


KEY_NUMBERS: dict[str, tuple[str, Any]] = {
    "frames": ("frames", lambda v: f"{v:,}"),
    "size": ("frame size", _frame_size),
    "bad_frames": ("bad frames repaired", lambda v: f"{len(v) if isinstance(v, list) else v:,}"),
    "neurons": ("neurons found", lambda v: f"{v:,}"),
    "total_seconds": ("pipeline time", duration),
}


def key_numbers(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary values an analyst looks at first, formatted; unknown shapes are skipped."""
    out = []
    for key, (label, fmt) in KEY_NUMBERS.items():
        if key in summary:
            try:
                out.append((label, fmt(summary[key])))
            except (TypeError, ValueError):
                continue
    return out


def suggested(summary: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(why, parameter values) when the run's summary.json suggests other values, else None."""
    advice = summary.get("suggestions")
    if not isinstance(advice, dict):
        return None
    why, values = advice.get("why"), advice.get("params")
    if not isinstance(why, str) or not isinstance(values, dict) or not values:
        return None
    return why, values


class ResultsView(w.VBox):
    """A run's outputs: key numbers and a gallery from summary.json, or the list of files."""

    def __init__(self, run_id: int, lab: LabAPI | None = None) -> None:
        self.lab = lab or default_lab()
        self.run_id = int(run_id)
        self.numbers = w.HTML()
        self.advice = w.VBox()
        self.gallery = styled(w.HBox(), "pico-gallery")
        self.full_size = w.VBox()
        self.cells = w.VBox()
        self.files = w.HTML()
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Results", 3),
                self.numbers,
                self.advice,
                self.gallery,
                self.full_size,
                self.cells,
                self.files,
                self.messages,
            ]
        )
        styled(self, "pico", "pico-results")
        self.refresh()

    @guarded
    def refresh(self) -> None:
        """Read the run's results through the Lab and show them."""
        run = self.lab.get_run(self.run_id)
        if run.active:
            self.numbers.value = esc("Results appear here when the run has finished.")
            return
        results = self.lab.results(self.run_id)
        if results.note:
            self.numbers.value = f'<div class="pico-muted">{esc(results.note)}</div>'
            return
        numbers = key_numbers(results.summary or {})
        self.numbers.value = "".join(
            f'<span class="pico-kpi"><b>{esc(v)}</b><span class="pico-muted">{esc(k)}</span></span>'
            for k, v in numbers
        )
        self.gallery.children = [
            self._figure(image.title, image.path) for image in results.images[:MAX_IMAGES]
        ]
        self.files.value = self._file_table(results)
        self._show_advice(suggested(results.summary or {}))
        self._show_cells(results)

    def _show_advice(self, advice: tuple[str, dict[str, Any]] | None) -> None:
        """The pipeline's own advice on cell size, with a one-click clone that follows it."""
        if advice is None:
            self.advice.children = ()
            return
        why, values = advice
        listed = " · ".join(f"{k} {v}" for k, v in values.items())
        text = styled(
            w.HTML(f"<b>Cell size.</b> {esc(why)}. Suggested: {esc(listed)}."), "pico-notice"
        )
        clone = w.Button(description="Clone with suggested values", icon="clone")
        clone.on_click(lambda _: self.clone_suggested(values))
        self.advice.children = (text, styled(w.HBox([clone]), "pico-toolbar"))

    @guarded
    def clone_suggested(self, values: dict[str, Any]) -> int:
        """A new experiment from this run's, with the suggested values and its own output
        folder beside the original's, ready to run; the original is left as it is."""
        run = self.lab.get_run(self.run_id)
        exp = self.lab.get_experiment(run.experiment_id)
        clone = self.lab.clone_experiment(
            exp.id,
            f"{exp.name} (suggested cell size)"[:200],
            params=values,
            output_path=f"{exp.output_path.rstrip('/')}-suggested-{run.number}",
        )
        self.messages.info(
            f"cloned as experiment {clone.id}, “{clone.name}”: open it from the list to run it"
        )
        return clone.id

    def _show_cells(self, results: Results) -> None:
        """The interactive cell viewer, for runs whose summary lists masks and traces."""
        from pico_nb.widgets.cells import CellViewer

        if self.cells.children or not results.summary:
            return
        try:
            self.cells.children = (CellViewer(self.run_id, self.lab),)
        except NotFound:
            self.cells.children = ()

    def _figure(self, title: str, path: str) -> w.Widget:
        """One preview with its caption; an unreadable image becomes its caption and the error."""
        suffix = path[path.rfind(".") :].lower()
        try:
            data = self.lab.result_file(self.run_id, path)
            image: w.Widget = w.Image(value=data, format=IMAGE_FORMATS.get(suffix, "png"))
        except Exception as exc:
            image = styled(w.HTML(esc(f"cannot show {path}: {exc}")), "pico-field-error")
        caption = styled(w.HTML(esc(title)), "pico-muted")
        opener = styled(w.Button(description="full size", icon="expand"), "pico-link")
        opener.on_click(lambda _: self._open_full(title, image))
        return styled(w.VBox([image, w.HBox([caption, opener])]), "pico-figure")

    def _open_full(self, title: str, image: w.Widget) -> None:
        """One preview at its own size (scrolling if wider than the page), closable."""
        if not isinstance(image, w.Image):
            return
        close = w.Button(description="close", icon="times")
        close.on_click(lambda _: setattr(self.full_size, "children", ()))
        big = styled(w.Image(value=image.value, format=image.format), "pico-full-image")
        self.full_size.children = (
            styled(w.HBox([heading(title, 3), close]), "pico-toolbar"),
            styled(w.Box([big], layout=w.Layout(overflow="auto")), "pico-full"),
        )

    @staticmethod
    def _file_table(results: Results) -> str:
        """The output files, in a collapsible list so a big folder does not flood the page."""
        if not results.files:
            return f'<div class="pico-muted">No output files in {esc(results.output_path)}.</div>'
        rows = "".join(
            f'<tr><td><a href="{esc(file_url(results.run_id, f.path))}" download>'
            f"{esc(f.path)}</a></td><td>{esc(size(f.size))}</td></tr>"
            for f in results.files[:MAX_LISTED_FILES]
        )
        more = len(results.files) - MAX_LISTED_FILES
        if results.truncated or more > 0:
            rows += '<tr><td colspan="2" class="pico-muted">… and more</td></tr>'
        opened = "" if results.summary else " open"
        return (
            f"<details{opened}><summary>Output files ({len(results.files):,}"
            f"{'+' if results.truncated else ''}) in {esc(results.output_path)}</summary>"
            f'<table class="pico-table"><tr><th>File</th><th>Size</th></tr>{rows}</table>'
            "</details>"
        )
