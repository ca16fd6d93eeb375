"""Compare experiments and their runs: differing values, results side by side, overlaid cells."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets

from pico_nb.contract.errors import ValidationError
from pico_nb.inputs import as_id
from pico_nb.schemas import ExperimentRecord, RunComparison, RunNumbers, RunRecord
from pico_nb.text import duration, esc, value_text
from pico_nb.widgets import default_lab
from pico_nb.widgets.style import MessageBar, guarded, heading, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

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


def _number(value: Any, pattern: str = "{:,}") -> str:
    return "—" if value is None else pattern.format(value)


RESULT_ROWS: dict[str, Any] = {
    "status": lambda n: esc(n.status),
    "cells found": lambda n: _number(n.cells),
    "cells accepted": lambda n: _number(n.accepted),
    "bad frames": lambda n: _number(n.bad_frames),
    "motion (RMS shift, px)": lambda n: _number(n.motion_rms, "{:.2f}"),
    "pipeline time": lambda n: esc(duration(n.pipeline_seconds)),
    "peak memory (MB)": lambda n: _number(n.peak_memory_mb, "{:,.0f}"),
    "exit reason": lambda n: esc(n.reason or "—"),
}


def results_table(comparison: RunComparison) -> str:
    """Runs as columns: results, stage times, then the parameters that differ (highlighted)."""
    runs = comparison.runs
    head = "".join(
        f"<th>{esc(n.name)} · run {n.number} <span class='pico-muted'>(id {n.run_id})</span></th>"
        for n in runs
    )
    rows = [
        f"<tr><td><b>{esc(label)}</b></td>" + "".join(f"<td>{fmt(n)}</td>" for n in runs) + "</tr>"
        for label, fmt in RESULT_ROWS.items()
    ]
    stages = list(dict.fromkeys(s for n in runs for s in n.stage_seconds))
    rows += [
        f"<tr><td>{esc(stage)} (s)</td>"
        + "".join(f"<td>{_number(n.stage_seconds.get(stage), '{:.1f}')}</td>" for n in runs)
        + "</tr>"
        for stage in stages
    ]
    rows += [
        f"<tr><td><b>{esc(name)}</b></td>"
        + "".join(f"<td class='diff'>{esc(value_text(v))}</td>" for v in values)
        + "</tr>"
        for name, values in comparison.differing.items()
    ]
    return (
        f'<table class="pico-table pico-run-compare"><tr><th>Run</th>{head}</tr>'
        f"{''.join(rows)}</table>"
    )


def match_text(comparison: RunComparison, runs: list[RunNumbers]) -> str:
    """The overlay's legend with matched / only-A / only-B counts and trace correlation."""
    match = comparison.match
    if match is None:
        return '<div class="pico-muted">The first two runs need finished results to overlay.</div>'
    a, b = runs[0], runs[1]
    corr = "—" if match.trace_correlation is None else f"{match.trace_correlation:.2f}"
    return (
        f'<div class="pico-match"><span style="color:#c800a0">■ run {a.number} of '
        f"{esc(a.name)} (A)</span> · <span style='color:#00a050'>■ run {b.number} of "
        f"{esc(b.name)} (B)</span><br><b class='pico-matched'>{match.matched}</b> matched · "
        f"<b class='pico-only-a'>{match.only_a}</b> only in A · "
        f"<b class='pico-only-b'>{match.only_b}</b> only in B · "
        f"median trace correlation of matched cells <b>{corr}</b></div>"
    )


class CompareView(w.VBox):
    """Pick two or more experiments (or runs) and see what differs, in values and results."""

    picked_runs = traitlets.List(traitlets.Int(), help="the runs a person chose in the pickers")
    experiment_ids = traitlets.List(traitlets.Int(), help="the experiments compared, if any")

    def __init__(
        self,
        experiment_ids: list[int] | None = None,
        lab: LabAPI | None = None,
        run_ids: list[int] | None = None,
    ) -> None:
        self.lab = lab or default_lab()
        self.ids = w.Text(
            placeholder="experiment ids, e.g. 3, 7, 12", layout=w.Layout(width="260px")
        )
        button = w.Button(description="Compare", icon="columns", button_style="primary")
        button.on_click(lambda _: self.compare_typed())
        self.table = w.HTML()
        self.run_pickers = styled(w.HBox(), "pico-toolbar")
        self.run_table = w.HTML()
        self.overlay = styled(w.Image(format="png", layout=w.Layout(width="512px")), "pico-overlay")
        self.overlay.layout.display = "none"
        self.match = w.HTML()
        self.messages = MessageBar()
        super().__init__(
            [
                stylesheet(),
                heading("Compare experiments"),
                styled(w.HBox([self.ids, button]), "pico-toolbar"),
                self.table,
                heading("Compare runs", 3),
                self.run_pickers,
                self.run_table,
                self.match,
                self.overlay,
                self.messages,
            ]
        )
        styled(self, "pico", "pico-compare")
        if run_ids:
            self.compare_runs(run_ids)
        elif experiment_ids:
            self.compare(experiment_ids)

    @guarded
    def compare_typed(self) -> None:
        """Compare the ids typed in the box; a number no id can be is a message, not a crash."""
        self.compare([as_id(x, "experiment_id") for x in re.findall(r"\d+", self.ids.value)])

    @guarded
    def compare(self, experiment_ids: list[int], run_ids: list[int] | None = None) -> None:
        """Load the experiments through the Lab and show their differences, with the given
        runs of them (one each, e.g. from the address) or else each one's latest finished."""
        self.messages.clear()
        ids = list(dict.fromkeys(experiment_ids))
        self.ids.value = ", ".join(map(str, ids))
        self.experiment_ids = ids
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
        given = [self.lab.get_run(r) for r in run_ids or ()]
        if [r.experiment_id for r in given] != ids or any(r.active for r in given):
            given = [r for r in map(self._latest_finished, ids) if r is not None]
        self._offer_runs(given)

    def _latest_finished(self, experiment_id: int) -> RunRecord | None:
        """The run an analyst means by default: the newest one that has finished."""
        runs = [r for r in self.lab.runs(experiment_id) if not r.active]
        return runs[-1] if runs else None

    def _offer_runs(self, chosen: list[RunRecord]) -> None:
        """One run picker per compared slot (any run of that experiment), then compare them."""
        pickers = []
        for run in chosen:
            options = [
                (f"exp {run.experiment_id} · run {r.number} ({r.status})", r.id)
                for r in reversed(self.lab.runs(run.experiment_id))
                if not r.active
            ]
            picker = w.Dropdown(options=options, value=run.id, layout=w.Layout(width="260px"))
            picker.observe(lambda _: self._picker_changed(), "value")
            pickers.append(picker)
        self.run_pickers.children = pickers
        self._runs_picked()

    def _picker_changed(self) -> None:
        """A person chose another run: compare it, and say so (the dashboard keeps the
        choice in the page's address)."""
        self._runs_picked()
        self.picked_runs = [p.value for p in self.run_pickers.children]

    def _runs_picked(self) -> None:
        ids = [p.value for p in self.run_pickers.children]
        if len(ids) >= 2 and len(set(ids)) == len(ids):
            self._show_runs(ids)
        else:
            self.run_table.value = (
                '<div class="pico-muted">Pick two different finished runs to compare.</div>'
            )
            self.match.value = ""
            self.overlay.layout.display = "none"

    @guarded
    def compare_runs(self, run_ids: list[int]) -> None:
        """Compare these runs (of one experiment or several), each with its own picker."""
        self.messages.clear()
        runs = [self.lab.get_run(r) for r in dict.fromkeys(run_ids)]
        if len(runs) < 2:
            self.messages.error("pick at least two runs to compare")
            return
        self.ids.value = ", ".join(str(i) for i in dict.fromkeys(r.experiment_id for r in runs))
        self.experiment_ids = []
        self.table.value = ""
        self._offer_runs(runs)

    @guarded
    def _show_runs(self, run_ids: list[int]) -> None:
        """The results table, and the first two runs' outlines overlaid with their counts."""
        comparison = self.lab.compare_runs(run_ids)
        self.run_table.value = results_table(comparison)
        self.match.value = match_text(comparison, comparison.runs)
        if comparison.match is None:
            self.overlay.layout.display = "none"
            return
        try:
            self.overlay.value = self.lab.overlay_image(run_ids[0], run_ids[1])
            self.overlay.layout.display = None
        except ValidationError as exc:  # e.g. frames of different sizes
            self.overlay.layout.display = "none"
            self.messages.error(exc)
