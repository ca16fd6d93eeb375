"""The experiment list: filter, search, sort and page through experiments; it keeps itself fresh."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, get_args

import ipywidgets as w
import traitlets as t

from pico_nb.inputs import Status
from pico_nb.schemas import ExperimentRecord
from pico_nb.text import duration, esc, local_time
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, badge, guarded, styled, stylesheet
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

STATUSES = get_args(Status)
SORTS = {"Newest": "created", "Recently changed": "updated", "Name": "name", "Id": "id"}
COLUMNS = "32px 44px minmax(140px, 3fr) 100px 48px minmax(150px, 2fr) 72px minmax(110px, 3fr)"
HEADERS = ("", "Id", "Name", "Status", "Run", "Started", "Duration", "Reason")
OWNER_COLUMN = " 90px"  # admins see everyone's experiments, so they get an Owner column
REFRESH_SECONDS = 3.0


class ListRow:
    """The widgets of one row, reused from page to page so a refresh only sends what changed."""

    def __init__(
        self, opened: Callable[[int], None], picked: Callable[[int, bool], None], owner: bool
    ) -> None:
        self.experiment_id = 0
        self.owner = owner
        self.pick = w.Checkbox(indent=False, layout=w.Layout(width="28px"))
        self.id_cell = styled(w.HTML(), "pico-muted")
        self.name = styled(w.Button(layout=w.Layout(width="auto")), "pico-link")
        self.cells = [w.HTML() for _ in range(6 if owner else 5)]
        self.name.on_click(lambda _: opened(self.experiment_id))
        self.pick.observe(lambda c: picked(self.experiment_id, c["new"]), "value")
        self._filling = False

    @property
    def widgets(self) -> list[w.Widget]:
        return [self.pick, self.id_cell, self.name, *self.cells]

    def show(self, exp: ExperimentRecord, picked: bool) -> None:
        """Fill the row from a record; unchanged values are not re-sent."""
        self.experiment_id = exp.id
        run = exp.last_run
        self.pick.value = picked
        self.id_cell.value = str(exp.id)
        self.name.description = exp.name
        self.name.tooltip = f"experiment {exp.id} by {exp.owner}: {exp.description}"[:300]
        values: tuple[str, ...] = (
            badge(exp.status),
            str(run.number) if run else "—",
            esc(local_time(run.started_at if run else None)),
            esc(duration(run.duration_seconds if run else None)),
            f'<span class="pico-muted">{esc(run.reason or "") if run else ""}</span>',
        )
        if self.owner:
            values = (*values, esc(exp.owner))
        for cell, value in zip(self.cells, values, strict=True):
            cell.value = value
        self.visible(True)

    def visible(self, on: bool) -> None:
        for widget in self.widgets:
            widget.layout.display = None if on else "none"


class ExperimentList(w.VBox):
    """Experiments this user may see, a page at a time, refreshed every few seconds when visible."""

    page = t.Int(0)
    page_size = t.Int(25)
    total = t.Int(0)
    active = t.Bool(True)  # the dashboard turns refreshing off while another view shows

    def __init__(self, lab: LabAPI | None = None, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.lab = lab or default_lab()
        self.selected: set[int] = set()
        self._opened: list[Callable[[int], object]] = []
        self._compared: list[Callable[[list[int]], None]] = []
        self._lock = threading.RLock()
        self.search = w.Text(
            placeholder="Search name or description", layout=w.Layout(width="240px")
        )
        self.status = w.Dropdown(options=[("Any status", "")] + [(s, s) for s in STATUSES])
        self.status.layout.width = "130px"
        admin = self.lab.is_admin
        self.scope = w.ToggleButtons(
            options=[
                ("Mine", "mine"),
                ("Shared", "shared"),
                ("All", "all" if admin else "visible"),
            ],
            value="all" if admin else "visible",
            style={"button_width": "70px"},
        )
        self.sort = w.Dropdown(options=list(SORTS.items()), layout=w.Layout(width="160px"))
        self.descending = w.ToggleButton(value=True, icon="sort-amount-desc", tooltip="order")
        self.descending.layout.width = "40px"
        self.compare_button = w.Button(
            description="Compare selected", icon="columns", disabled=True
        )
        self.compare_button.on_click(self._compare_clicked)
        self.prev_button = w.Button(description="Previous", icon="chevron-left")
        self.next_button = w.Button(description="Next", icon="chevron-right")
        self.prev_button.on_click(lambda _: self._turn(-1))
        self.next_button.on_click(lambda _: self._turn(1))
        self.pager = styled(w.HTML(), "pico-muted")
        self.messages = MessageBar()
        self.rows: list[ListRow] = []
        self.admin = admin
        headers = (*HEADERS, "Owner") if admin else HEADERS
        columns = COLUMNS + OWNER_COLUMN if admin else COLUMNS
        header = [styled(w.HTML(esc(h)), "pico-th") for h in headers]
        self.grid = styled(
            w.GridBox(header, layout=w.Layout(grid_template_columns=columns)), "pico-grid"
        )
        self.empty = styled(w.HTML(), "pico-muted")
        toolbar = styled(
            w.HBox([self.search, self.status, self.scope, self.sort, self.descending]),
            "pico-toolbar",
        )
        pager = styled(
            w.HBox([self.prev_button, self.pager, self.next_button, self.compare_button]),
            "pico-toolbar",
        )
        super().__init__([stylesheet(), toolbar, self.grid, self.empty, pager, self.messages])
        styled(self, "pico", "pico-list")
        for control in (self.search, self.status, self.scope, self.sort, self.descending):
            control.observe(self._filters_changed, "value")
        self.settle()
        self._ticker = Ticker(refresh_seconds, self._tick)

    # ------------------------------------------------------------------ callbacks

    def on_open(self, callback: Callable[[int], object]) -> None:
        """Call back with an experiment id when its name is clicked."""
        self._opened.append(callback)

    def on_compare(self, callback: Callable[[list[int]], None]) -> None:
        """Call back with the ticked experiment ids when Compare is clicked."""
        self._compared.append(callback)

    def close(self) -> None:
        """Stop refreshing with the widget."""
        self._ticker.stop()
        super().close()

    # -------------------------------------------------------------------- actions

    def _filters_changed(self, change: dict[str, Any]) -> None:
        self.descending.icon = "sort-amount-desc" if self.descending.value else "sort-amount-asc"
        self.page = 0
        self.refresh()

    def _turn(self, step: int) -> None:
        self.page = max(0, min(self.page + step, self._pages() - 1))
        self.refresh()

    def _pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    def _open(self, experiment_id: int) -> None:
        for callback in self._opened:
            callback(experiment_id)

    def _pick(self, experiment_id: int, on: bool) -> None:
        if on:
            self.selected.add(experiment_id)
        else:
            self.selected.discard(experiment_id)
        self.compare_button.disabled = len(self.selected) < 2
        self.compare_button.description = f"Compare selected ({len(self.selected)})"

    def _compare_clicked(self, _: object = None) -> None:
        for callback in self._compared:
            callback(sorted(self.selected))

    def _tick(self) -> None:
        if self.active:
            self.settle()

    @guarded
    def settle(self) -> None:
        """Reconcile, then show the page: a run whose supervisor vanished reads as lost within
        a tick, even when no other run's supervisor is left to notice it."""
        self.lab.reconcile()
        self.refresh()

    @guarded
    def refresh(self) -> None:
        """Query the current page and show it, reusing row widgets."""
        with self._lock:
            filters: dict[str, Any] = {
                "status": self.status.value or None,
                "search": self.search.value.strip() or None,
                "scope": self.scope.value,
            }
            self.total = self.lab.count_experiments(**filters)
            self.page = min(self.page, self._pages() - 1)
            items = self.lab.experiments(
                **filters,
                limit=self.page_size,
                offset=self.page * self.page_size,
                sort=self.sort.value,
                descending=self.descending.value,
            )
            self._show(items)

    def _empty_text(self) -> str:
        """An empty list says what to do next: loosen the filters, or create the first one."""
        if self.search.value.strip() or self.status.value or self.scope.value in ("mine", "shared"):
            return "No experiments match these filters."
        return (
            "No experiments yet. Click “New experiment” above to create your first: a name, "
            "an input folder of frames and an output folder; then press Save & Run."
        )

    def _show(self, items: list[ExperimentRecord]) -> None:
        """Fill rows, growing the pool only when a page is longer than any before."""
        while len(self.rows) < len(items):
            row = ListRow(self._open, self._pick, self.admin)
            self.rows.append(row)
            self.grid.children = (*self.grid.children, *row.widgets)
        for row, exp in zip(self.rows, items, strict=False):
            row.show(exp, exp.id in self.selected)
        for row in self.rows[len(items) :]:
            row.visible(False)
        first = self.page * self.page_size
        self.pager.value = (
            f"{first + 1:,}–{first + len(items):,} of {self.total:,} · "
            f"page {self.page + 1:,} of {self._pages():,}"
            if items
            else ""
        )
        self.empty.value = "" if items else esc(self._empty_text())
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self._pages() - 1
        self.messages.clear()
