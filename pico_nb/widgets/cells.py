"""A finished run's cells: the image with every outline, a sortable table, traces and curation.

The image and the traces are bqplot marks (zoom and pan in the browser, no build step); a click
on a cell's marker or a pick in the table shows its ΔF/F. Curation (reject / accept, by filter,
undo) is kept in the view until Save stores it through the Lab; shared viewers only read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bqplot as bq
import ipywidgets as w

from pico_nb.schemas import CellRecord, CellTable
from pico_nb.text import esc
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled
from pico_nb.widgets.traces import TracePlot

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

SORTS = {
    "SNR (high first)": ("snr", True),
    "peak ΔF/F": ("peak_dff", True),
    "activity": ("active", True),
    "area": ("area", True),
    "id": ("id", False),
}
IMAGES = {"mean image": "mean", "correlation image": "correlation", "max projection": "max"}
ACCEPTED, REJECTED = "#ffd600", "#e61e1e"
MAX_SHOWN = 8


def cell_row(cell: CellRecord, rejected: bool) -> str:
    """One line of the cell table, aligned for a monospace list."""
    mark = "✗ rejected" if rejected else ""
    return (
        f"#{cell.id:<5} SNR {cell.snr:7.1f}  peak {cell.peak_dff:7.3g}  "
        f"area {cell.area:5d}  active {100 * cell.active:5.1f}%  {mark}"
    )


class CellViewer(w.VBox):
    """Look at every cell of one run, its traces, and curate it."""

    def __init__(self, run_id: int, lab: LabAPI | None = None) -> None:
        self.lab = lab or default_lab()
        self.run_id = int(run_id)
        self.table: CellTable = self.lab.cells(self.run_id)
        self.by_id = {c.id: c for c in self.table.cells}
        self.marker_of = {c.id: i for i, c in enumerate(self.table.cells)}
        self.rejected: set[int] = {c.id for c in self.table.cells if not c.accepted}
        self.saved: set[int] = set(self.rejected)
        self.history: list[set[int]] = []
        self.messages = MessageBar()
        self._build_image()
        # bqplot's pan/zoom layer sits above the marks, so picking and zooming take turns.
        self.panzoom = bq.interacts.PanZoom(scales={"x": [self.sx], "y": [self.sy]})
        self.mode = w.ToggleButtons(
            options=[("Pick cells", "pick"), ("Zoom / pan", "zoom")],
            style={"button_width": "110px"},
        )
        self.mode.observe(self._mode_changed, "value")
        reset = w.Button(description="Reset zoom", icon="compress")
        reset.on_click(lambda _: self._reset_zoom())
        self.image_choice = w.Dropdown(options=list(IMAGES.items()), value="mean")
        self.image_choice.layout.width = "190px"
        self.image_choice.observe(lambda _: self._draw_image(), "value")
        self.sort = w.Dropdown(options=list(SORTS), layout=w.Layout(width="170px"))
        self.sort.observe(lambda _: self._fill_list(), "value")
        self.picker = styled(
            w.SelectMultiple(rows=14, layout=w.Layout(width="100%")), "pico-cell-list"
        )
        self.picker.observe(self._picked, "value")
        self.traces = TracePlot()
        self.status = styled(w.HTML(), "pico-curation-status")
        self._build_curation()
        side = w.VBox(
            [
                styled(w.HBox([w.HTML("Sort by"), self.sort]), "pico-toolbar"),
                self.picker,
                self.curation,
                self.status,
            ],
            layout=w.Layout(flex="1 1 360px", min_width="300px"),
        )
        main = w.VBox(
            [styled(w.HBox([self.image_choice, self.mode, reset]), "pico-toolbar"), self.figure],
            layout=w.Layout(flex="1 1 520px", min_width="300px"),
        )
        super().__init__(
            [
                heading(f"Cells ({len(self.table.cells):,})", 3),
                styled(
                    w.HBox([main, side], layout=w.Layout(flex_flow="row wrap")), "pico-cells-row"
                ),
                self.traces,
                self.messages,
            ]
        )
        styled(self, "pico-cells")
        self._draw_image()
        self._fill_list()
        self._show_status()

    # -------------------------------------------------------------------- building

    def _build_image(self) -> None:
        """The run's image as a bqplot Image mark, with a clickable marker on every cell."""
        height, width = self.table.height, self.table.width
        self.sx = bq.LinearScale(min=0, max=width)
        self.sy = bq.LinearScale(min=0, max=height, reverse=True)  # row 0 at the top
        scales = {"x": self.sx, "y": self.sy}
        self.picture = w.Image(format="png")
        self.image_mark = bq.Image(image=self.picture, scales=scales, x=[0, width], y=[height, 0])
        cells = self.table.cells
        self.markers = bq.Scatter(
            x=[c.centre_x + 0.5 for c in cells],
            y=[c.centre_y + 0.5 for c in cells],
            names=[str(c.id) for c in cells],
            display_names=True,
            default_size=24,
            colors=[ACCEPTED],
            stroke="black",
            scales=scales,
            tooltip=bq.Tooltip(fields=["name"], labels=["cell"]),
            interactions={"click": "select", "hover": "tooltip"},
            selected_style={"stroke": "white", "stroke-width": 3},
            unselected_style={"opacity": 0.45},
        )
        self.markers.observe(self._marker_clicked, "selected")
        side = 560
        aspect = height / max(width, 1)
        self.figure = bq.Figure(
            marks=[self.image_mark, self.markers],
            padding_x=0,
            padding_y=0,
            fig_margin={"top": 5, "bottom": 5, "left": 5, "right": 5},
            layout=w.Layout(
                width="100%", max_width=f"{side}px", height=f"{round(side * aspect)}px"
            ),
            min_aspect_ratio=0.1,
            max_aspect_ratio=10,
        )

    def _build_curation(self) -> None:
        """Reject / accept the picked cells, reject by an SNR filter, undo, save."""
        buttons = {
            "Reject": ("times", "warning", self.reject_picked),
            "Accept": ("check", "", self.accept_picked),
            "Undo": ("undo", "", self.undo),
            "Save": ("save", "primary", self.save),
        }
        self.buttons = {}
        for name, (icon, style, action) in buttons.items():
            button = w.Button(description=name, icon=icon, button_style=style)
            button.layout.width = "90px"
            button.on_click(lambda _, act=action: act())
            self.buttons[name] = button
        self.threshold = w.FloatText(value=3.0, layout=w.Layout(width="70px"))
        self.filter_button = w.Button(description="Reject SNR below", icon="filter")
        self.filter_button.on_click(lambda _: self.reject_below(self.threshold.value))
        self.export_format = w.Dropdown(
            options=[("NWB", "nwb"), ("CSV + NumPy", "csv")], layout=w.Layout(width="130px")
        )
        self.export_button = w.Button(description="Export accepted", icon="download")
        self.export_button.on_click(lambda _: self.export())
        self.curation = w.VBox(
            [
                styled(w.HBox(list(self.buttons.values())), "pico-toolbar"),
                styled(w.HBox([self.filter_button, self.threshold]), "pico-toolbar"),
                styled(w.HBox([self.export_button, self.export_format]), "pico-toolbar"),
            ]
        )
        if not self.table.editable:
            for widget in (*self.buttons.values(), self.filter_button, self.threshold):
                widget.disabled = True

    # --------------------------------------------------------------------- drawing

    def _mode_changed(self, change: dict[str, Any]) -> None:
        self.figure.interaction = self.panzoom if change["new"] == "zoom" else None

    def _reset_zoom(self) -> None:
        """Back to the whole image."""
        with self.sx.hold_trait_notifications(), self.sy.hold_trait_notifications():
            self.sx.min, self.sx.max = 0, self.table.width
            self.sy.min, self.sy.max = 0, self.table.height

    @guarded
    def _draw_image(self) -> None:
        """The stored curation's outlines (accepted yellow, rejected red) over the image."""
        self.picture.value = self.lab.cell_image(self.run_id, self.image_choice.value)

    def _fill_list(self) -> None:
        """The cell table in the chosen order, keeping the current pick."""
        key, descending = SORTS[self.sort.value]
        ordered = sorted(self.table.cells, key=lambda c: getattr(c, key), reverse=descending)
        picked = self.picker.value
        self.picker.unobserve(self._picked, "value")
        self.picker.options = [(cell_row(c, c.id in self.rejected), c.id) for c in ordered]
        self.picker.value = tuple(v for v in picked if v in self.by_id)
        self.picker.observe(self._picked, "value")
        self.markers.colors = [
            REJECTED if c.id in self.rejected else ACCEPTED for c in self.table.cells
        ]

    def _show_status(self) -> None:
        """Counts, who saved last, and whether there is anything unsaved."""
        total = len(self.table.cells)
        text = f"{total - len(self.rejected):,} of {total:,} cells accepted"
        if self.rejected != self.saved:
            text += ' · <b class="pico-changed">unsaved changes</b>'
        elif self.table.curated_by:
            text += f" · saved by {esc(self.table.curated_by)}"
        if not self.table.editable:
            text += " · read-only: only the experiment's owner can curate"
        self.status.value = f'<span class="pico-muted">{text}</span>'

    # ---------------------------------------------------------------------- picking

    def _marker_clicked(self, change: dict[str, Any]) -> None:
        """A click on cells' markers (bqplot selects them) picks those cells."""
        picked = [int(i) for i in change["new"] if 0 <= int(i) < len(self.table.cells)]
        if picked:
            self.pick([self.table.cells[i].id for i in picked])

    def pick(self, cell_ids: list[int]) -> None:
        """Show these cells' traces and select them in the table."""
        self.picker.value = tuple(c for c in cell_ids if c in self.by_id)

    def _highlight(self, cell_ids: list[int]) -> None:
        """The picked cells' markers stand out on the image, whichever side picked them."""
        wanted = [self.marker_of[i] for i in cell_ids]
        if wanted == list(self.markers.selected if self.markers.selected is not None else []):
            return  # the click on the image already marked them: no second round trip
        self.markers.unobserve(self._marker_clicked, "selected")
        self.markers.selected = wanted or None
        self.markers.observe(self._marker_clicked, "selected")

    @guarded
    def _picked(self, change: dict[str, Any]) -> None:
        self._highlight(list(change["new"]))
        ids = list(change["new"])[:MAX_SHOWN]
        if not ids:
            self.traces.show(None, [])
            return
        traces = self.lab.traces(self.run_id, ids)
        self.traces.show(traces, [self._current(self.by_id[i]) for i in ids])

    def _current(self, cell: CellRecord) -> CellRecord:
        """A cell with the view's (possibly unsaved) curation."""
        return cell.model_copy(update={"accepted": cell.id not in self.rejected})

    # --------------------------------------------------------------------- curation

    def _change(self, rejected: set[int]) -> None:
        """Apply a curation step, remembering the one before for Undo."""
        if rejected == self.rejected:
            return
        self.history.append(set(self.rejected))
        self.rejected = rejected
        self._fill_list()
        self._show_status()
        self._picked({"new": self.picker.value})

    def reject_picked(self) -> None:
        """Mark the picked cells as not cells."""
        self._change(self.rejected | set(self.picker.value))

    def accept_picked(self) -> None:
        """Take the picked cells back."""
        self._change(self.rejected - set(self.picker.value))

    def reject_below(self, snr: float) -> None:
        """Reject every cell whose SNR is below a threshold."""
        self._change(self.rejected | {c.id for c in self.table.cells if c.snr < snr})

    def undo(self) -> None:
        """Go back one curation step."""
        if self.history:
            self.rejected = self.history.pop()
            self._fill_list()
            self._show_status()
            self._picked({"new": self.picker.value})  # captions say accepted/rejected anew

    @guarded
    def save(self) -> None:
        """Store the curation for this run; the outlines redraw from what was stored."""
        stored = self.lab.set_curation(self.run_id, sorted(self.rejected))
        self.saved = set(stored.rejected)
        self.table = self.table.model_copy(update={"curated_by": stored.updated_by})
        self._draw_image()
        self._show_status()
        self.messages.info(f"saved: {len(self.saved)} cell(s) rejected")

    @guarded
    def export(self) -> str | None:
        """Write the accepted cells and their traces beside the run folders; exports use the
        saved curation, so unsaved changes are refused rather than silently left out."""
        if self.rejected != self.saved:
            self.messages.error("save the curation first: exports use the saved one")
            return None
        path = self.lab.export(self.run_id, self.export_format.value)
        accepted = len(self.table.cells) - len(self.saved)
        self.messages.info(f"exported {accepted:,} accepted cell(s) to {path}")
        return path
