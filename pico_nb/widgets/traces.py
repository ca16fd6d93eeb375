"""ΔF/F traces of chosen cells in a bqplot figure: seconds on the axis, zoom and pan in time."""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np

from pico_nb.schemas import CellRecord, Traces
from pico_nb.widgets.style import styled

COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000"]


def cell_caption(cell: CellRecord) -> str:
    """What an analyst reads about one cell: id, size, place, peak, SNR, curation."""
    state = "accepted" if cell.accepted else '<b class="pico-changed">rejected</b>'
    return (
        f'<span class="pico-cell-caption" data-cell="{cell.id}"><b>cell #{cell.id}</b> · '
        f"area {cell.area} px · centre (x {cell.centre_x:.1f}, y {cell.centre_y:.1f}) · "
        f"peak ΔF/F {cell.peak_dff:.3g} · SNR {cell.snr:.1f} · {state}</span>"
    )


class TracePlot(w.VBox):
    """One line per chosen cell, overlaid or stacked; drag to pan, wheel to zoom in time."""

    def __init__(self) -> None:
        self.x = bq.LinearScale()
        self.y = bq.LinearScale()
        self.lines = bq.Lines(scales={"x": self.x, "y": self.y}, stroke_width=1)
        axes = [
            bq.Axis(scale=self.x, label="time (s)"),
            bq.Axis(scale=self.y, side="left", label="ΔF/F"),
        ]
        self.figure = bq.Figure(
            marks=[self.lines],
            axes=axes,
            interaction=bq.interacts.PanZoom(scales={"x": [self.x]}),
            fig_margin={"top": 30, "bottom": 45, "left": 60, "right": 20},
            layout=w.Layout(width="100%", height="300px"),
            title="",
        )
        self.stacked = w.ToggleButton(description="Stacked", icon="bars", value=False)
        self.stacked.observe(lambda _: self._draw(), "value")
        self.captions = styled(w.HTML(), "pico-trace-captions")
        self._traces: Traces | None = None
        super().__init__(
            [styled(w.HBox([self.stacked]), "pico-toolbar"), self.captions, self.figure]
        )
        styled(self, "pico-traces")
        self._draw()  # before any pick, the empty plot says how to fill it

    def show(self, traces: Traces | None, cells: list[CellRecord]) -> None:
        """Plot these traces; `cells` gives their captions in the same order."""
        self._traces = traces
        self.captions.value = "<br>".join(cell_caption(c) for c in cells)
        self._draw()

    def _draw(self) -> None:
        """Lines against seconds; stacked rows are offset by the tallest trace."""
        traces = self._traces
        if traces is None or not traces.values:
            self.lines.x, self.lines.y = np.zeros(0), np.zeros(0)
            self.figure.title = "Click a cell on the image or pick it in the table"
            return
        values = np.asarray(traces.values, np.float32)
        if self.stacked.value and len(values) > 1:
            step = float(np.nanmax(values) - np.nanmin(values)) or 1.0
            values = values + step * np.arange(len(values))[::-1, None]
        seconds = np.arange(values.shape[1], dtype=np.float32) / traces.frame_rate
        with self.lines.hold_sync():
            self.lines.x = seconds
            self.lines.y = values
            self.lines.colors = [COLOURS[i % len(COLOURS)] for i in range(len(values))]
            self.lines.labels = [f"#{c}" for c in traces.cells]
            self.lines.display_legend = len(values) > 1
        self.x.min, self.x.max = 0.0, float(seconds[-1]) if len(seconds) else 1.0
        self.figure.title = "ΔF/F of " + ", ".join(f"cell #{c}" for c in traces.cells)
