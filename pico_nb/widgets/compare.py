"""Compare experiments side by side, showing only what differs between them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from pico_nb.inputs import as_id
from pico_nb.schemas import ExperimentRecord
from pico_nb.text import esc, value_text
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab import Lab

MISSING = object()
FOLDERS = ("input_path", "output_path")


def differences(experiments: list[ExperimentRecord]) -> dict[str, list[Any]]:
    """Folders and parameters whose values are not the same in every experiment."""
    rows: dict[str, list[Any]] = {}
    for folder in FOLDERS:
        values = [getattr(e, folder) for e in experiments]
        if len(set(values)) > 1:
            rows[folder] = values
    names = sorted({k for e in experiments for k in e.params})
    for name in names:
        values = [e.params.get(name, MISSING) for e in experiments]
        if any(v != values[0] for v in values[1:]):
            rows[name] = values
    return rows


class CompareView(w.VBox):
    """Pick two or more experiments by id and see only the values that differ."""

    def __init__(self, experiment_ids: list[int] | None = None, lab: Lab | None = None) -> None:
        self.lab = lab or default_lab()
        self.ids = w.Text(
            placeholder="experiment ids, e.g. 3, 7, 12", layout=w.Layout(width="260px")
        )
        button = w.Button(description="Compare", icon="columns", button_style="primary")
        button.on_click(lambda _: self.compare_typed())
        self.table = w.HTML()
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Compare experiments"),
                styled(w.HBox([self.ids, button]), "pico-toolbar"),
                self.table,
                self.messages,
            ]
        )
        styled(self, "pico", "pico-compare")
        if experiment_ids:
            self.compare(experiment_ids)

    @guarded
    def compare_typed(self) -> None:
        """Compare the ids typed in the box; a number no id can be is a message, not a crash."""
        self.compare([as_id(x, "experiment_id") for x in re.findall(r"\d+", self.ids.value)])

    @guarded
    def compare(self, experiment_ids: list[int]) -> None:
        """Load the experiments through the Lab and show their differences."""
        self.messages.clear()
        ids = list(dict.fromkeys(experiment_ids))
        self.ids.value = ", ".join(map(str, ids))
        if len(ids) < 2:
            self.table.value = ""
            self.messages.error("pick at least two experiments to compare")
            return
        experiments = [self.lab.get_experiment(i) for i in ids]
        rows = differences(experiments)
        head = "".join(
            f"<th>{esc(e.name)} <span class='pico-muted'>#{e.id}</span></th>" for e in experiments
        )
        if not rows:
            same = "These experiments have the same folders and parameters."
            body = f'<tr><td colspan="{len(ids) + 1}">{same}</td></tr>'
        else:
            body = "".join(
                f"<tr><td><b>{esc(name)}</b></td>"
                + "".join(
                    f"<td class='diff'>{'—' if v is MISSING else esc(value_text(v))}</td>"
                    for v in values
                )
                + "</tr>"
                for name, values in rows.items()
            )
        self.table.value = (
            f'<table class="pico-table"><tr><th>Differs</th>{head}</tr>{body}</table>'
        )
