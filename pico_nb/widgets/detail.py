"""One experiment: what it is, its parameters, its run history, the live run and its results."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets as t

from pico_nb.schemas import ExperimentRecord, RunRecord
from pico_nb.text import duration, esc, local_time, value_text
from pico_nb.widgets import default_lab
from pico_nb.widgets.compare import CompareView
from pico_nb.widgets.form import ExperimentForm
from pico_nb.widgets.results import ResultsView
from pico_nb.widgets.run_panel import RunPanel
from pico_nb.widgets.style import MessageBar, badge, guarded, heading, styled, stylesheet
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

Callback = Callable[[int], None]


def params_table(
    exp: ExperimentRecord, defaults: dict[str, Any], parent: ExperimentRecord | None, every: bool
) -> str:
    """Parameters with values off the default (and off the parent, for a clone) highlighted."""
    parent_params = parent.params if parent else {}
    rows = []
    for name, value in exp.params.items():
        off_default = defaults.get(name) != value
        off_parent = parent is not None and parent_params.get(name) != value
        if not (every or off_default or off_parent):
            continue
        cls = ' class="diff"' if off_default or off_parent else ""
        parent_cell = (
            f"<td{' class=diff' if off_parent else ''}>"
            f"{esc(value_text(parent_params.get(name, '—')))}</td>"
            if parent
            else ""
        )
        rows.append(
            f"<tr><td><b>{esc(name)}</b></td><td{cls}>{esc(value_text(value))}</td>"
            f"<td>{esc(value_text(defaults.get(name, '—')))}</td>{parent_cell}</tr>"
        )
    if not rows:
        return '<div class="pico-muted">Every parameter has its default value.</div>'
    parent_head = f"<th>parent: {esc(parent.name)}</th>" if parent else ""
    return (
        '<table class="pico-table"><tr><th>Parameter</th><th>Value</th><th>Default</th>'
        f"{parent_head}</tr>{''.join(rows)}</table>"
    )


def history_table(runs: list[RunRecord]) -> str:
    """Every run, newest first: number, status, times, duration, exit code, reason."""
    if not runs:
        return '<div class="pico-muted">Not run yet.</div>'
    rows = "".join(
        f"<tr><td>{r.number}</td><td>{badge(r.status)}</td>"
        f"<td>{esc(local_time(r.started_at))}</td><td>{esc(local_time(r.finished_at))}</td>"
        f"<td>{'—' if r.active else esc(duration(r.duration_seconds))}</td>"
        f"<td>{'—' if r.exit_code is None else r.exit_code}</td>"
        f"<td>{esc(r.reason or '')}</td></tr>"
        for r in reversed(runs)
    )
    return (
        '<table class="pico-table pico-history"><tr><th>Run</th><th>Status</th><th>Started</th>'
        "<th>Finished</th><th>Duration</th><th>Exit</th><th>Reason</th></tr>"
        f"{rows}</table>"
    )


class ExperimentDetail(w.VBox):
    """An experiment with Run, Edit, Clone and Delete, and its selected run live (its panel has
    the one Stop button: two on one page were one too many)."""

    experiment_id = t.Int()
    run_id = t.Int(None, allow_none=True)

    def __init__(
        self, experiment_id: int, lab: LabAPI | None = None, refresh_seconds: float = 3.0
    ) -> None:
        self.lab = lab or default_lab()
        self._latest_run: int | None = None
        self._lock = threading.RLock()  # the timer and button clicks both refresh
        self._callbacks: dict[str, list[Callback]] = {"edit": [], "clone": [], "deleted": []}
        self._compare_runs: list[Callable[[list[int]], None]] = []
        self.header = w.HTML()
        self.info = w.HTML()
        self.params = w.HTML()
        self.all_params = w.Checkbox(description="Show every parameter", indent=False)
        self.all_params.observe(lambda _: self.refresh(), "value")
        self.history = w.HTML()
        self.run_picker = w.Dropdown(description="Show", layout=w.Layout(width="280px"))
        self.run_picker.style.description_width = "40px"
        self.run_picker.observe(self._pick_run, "value")
        self.run_area = w.VBox()
        self.editor = w.VBox()
        self.confirm = styled(w.HBox(), "pico-toolbar")
        self.messages = MessageBar()
        self.buttons = {
            name: w.Button(description=name, icon=icon, button_style=style)
            for name, icon, style in (
                ("Run", "play", "success"),
                ("Edit", "pencil", ""),
                ("Clone", "copy", ""),
                ("Compare runs", "columns", ""),
                ("Delete", "trash", "danger"),
            )
        }
        actions = {
            "Run": self.run,
            "Edit": lambda: self._open_form(clone=False),
            "Clone": lambda: self._open_form(clone=True),
            "Compare runs": self.compare_runs,
            "Delete": self._ask_delete,
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _, act=actions[name]: act())
        self.record: ExperimentRecord | None = None
        self.panel: RunPanel | None = None
        super().__init__(
            [
                stylesheet(),
                self.header,
                styled(w.HBox(list(self.buttons.values())), "pico-toolbar"),
                self.confirm,
                self.messages,
                self.editor,
                self.run_picker,  # the live run first: after Run it is on screen, not below
                self.run_area,
                self.info,
                heading("Parameters", 3),
                self.all_params,
                self.params,
                heading("Run history", 3),
                self.history,
            ]
        )
        styled(self, "pico", "pico-detail")
        self.experiment_id = int(experiment_id)
        self.refresh()
        # Runs started elsewhere (another tab, the CLI, a colleague) show up by themselves.
        self._ticker = Ticker(refresh_seconds, self.refresh)

    # ------------------------------------------------------------------ callbacks

    def on_edit(self, callback: Callback) -> None:
        """Let a dashboard show its own form instead of the inline one."""
        self._callbacks["edit"].append(callback)

    def on_clone(self, callback: Callback) -> None:
        self._callbacks["clone"].append(callback)

    def on_deleted(self, callback: Callback) -> None:
        self._callbacks["deleted"].append(callback)

    def on_compare_runs(self, callback: Callable[[list[int]], None]) -> None:
        """Let a dashboard show its own compare page (with an address) for these runs."""
        self._compare_runs.append(callback)

    def close(self) -> None:
        """Closing the view stops following its run and refreshing."""
        self._ticker.stop()
        if self.panel is not None:
            self.panel.close()
        super().close()

    # -------------------------------------------------------------------- display

    @guarded
    def refresh(self) -> None:
        """Read the experiment and its runs again and redraw everything but the live panel."""
        with self._lock:
            self._redraw()

    def _redraw(self) -> None:
        exp = self.lab.get_experiment(self.experiment_id)
        runs = self.lab.runs(exp.id)
        self.record = exp
        parent = self._parent(exp)
        shared = ' <span class="pico-badge pico-admin">shared</span>' if exp.shared else ""
        self.header.value = (
            f'<div class="pico-h2">{esc(exp.name)} {badge(exp.status)}{shared}</div>'
            f'<div class="pico-muted">experiment {exp.id} · owner {esc(exp.owner)} · '
            f"created {esc(local_time(exp.created_at))} · "
            f"updated {esc(local_time(exp.updated_at))}</div>"
        )
        parent_line = (
            f"<tr><th>Cloned from</th><td>{esc(parent.name)} (experiment {parent.id})</td></tr>"
            if parent
            else ""
        )
        self.info.value = (
            f'<table class="pico-table">'
            f"<tr><th>Description</th><td>{esc(exp.description) or '—'}</td></tr>"
            f"<tr><th>Input folder</th><td><code>{esc(exp.input_path)}</code></td></tr>"
            f"<tr><th>Output folder</th><td><code>{esc(exp.output_path)}</code></td></tr>"
            f"{parent_line}</table>"
        )
        self.params.value = params_table(
            exp, self.lab.spec.defaults(), parent, self.all_params.value
        )
        self.history.value = history_table(runs)
        active = exp.last_run is not None and exp.last_run.active
        self.buttons["Run"].disabled = active
        self.buttons["Edit"].disabled = active
        self.buttons["Delete"].disabled = active
        options = [(f"Run {r.number}", r.id) for r in reversed(runs)]
        latest = runs[-1].id if runs else None
        if list(self.run_picker.options) != options:
            current = self.run_picker.value
            self.run_picker.options = options
            ids = [o[1] for o in options]
            fresh = latest != self._latest_run  # a new run: follow it
            self.run_picker.value = latest if fresh or current not in ids else current
        self._latest_run = latest
        self.run_picker.layout.display = None if runs else "none"

    def _parent(self, exp: ExperimentRecord) -> ExperimentRecord | None:
        """The experiment this one was cloned from, if the user may still see it."""
        if exp.parent_id is None:
            return None
        try:
            return self.lab.get_experiment(exp.parent_id)
        except Exception:
            return None

    def _pick_run(self, change: dict[str, Any]) -> None:
        """Show the chosen run: its live panel, and its results once it has finished."""
        if change["new"] != self.run_id:
            self.show_run(change["new"])

    def show_run(self, run_id: int | None) -> None:
        """Replace the run area with one run's panel and results."""
        if self.panel is not None:
            self.panel.close()
            self.panel = None
        self.run_id = run_id
        if run_id is None:
            self.run_area.children = ()
            return
        self.panel = RunPanel(run_id, self.lab)
        self.panel.observe(self._run_changed, "status")
        results = ResultsView(run_id, self.lab)
        self.run_area.children = (self.panel, results)

    def _run_changed(self, change: dict[str, Any]) -> None:
        """When the shown run ends, the history, buttons and results catch up."""
        if change["old"] and change["new"] != change["old"]:
            self.refresh()
            if change["new"] not in ("queued", "running") and len(self.run_area.children) > 1:
                self.run_area.children[1].refresh()

    # -------------------------------------------------------------------- actions

    @guarded
    def run(self) -> RunRecord:
        """Start a new run and follow it."""
        run = self.lab.run_experiment(self.experiment_id)
        if run.status == "queued":
            place = f", number {run.queue_position} in line" if run.queue_position else ""
            self.messages.info(f"run {run.number} is queued{place}; it starts when a slot frees")
        else:
            self.messages.info(f"started run {run.number}")
        self.refresh()
        self.run_picker.value = run.id
        return run

    @guarded
    def compare_runs(self) -> None:
        """The two latest finished runs of this experiment side by side (each slot can then
        pick any other run): what a re-run with other values changed."""
        done = [r.id for r in self.lab.runs(self.experiment_id) if not r.active]
        if len(done) < 2:
            self.messages.error("comparing runs needs two finished runs of this experiment")
            return
        if self._compare_runs:
            for callback in self._compare_runs:
                callback(done[-2:])
            return
        self.editor.children = (CompareView(lab=self.lab, run_ids=done[-2:]),)

    @guarded
    def _open_form(self, clone: bool) -> None:
        """Hand over to the dashboard's form, or edit inline when used alone."""
        key = "clone" if clone else "edit"
        if self._callbacks[key]:
            for callback in self._callbacks[key]:
                callback(self.experiment_id)
            return
        form = ExperimentForm(self.lab, self.experiment_id, clone=clone)
        form.on_cancel(lambda: setattr(self.editor, "children", ()))
        form.on_saved(self._saved_inline)
        self.editor.children = (form,)

    def _saved_inline(self, exp: ExperimentRecord, run: RunRecord | None) -> None:
        self.editor.children = ()
        if exp.id != self.experiment_id:
            self.messages.info(f"saved clone as experiment {exp.id}")
            return
        self.refresh()
        if run is not None:
            self.run_picker.value = run.id

    def _ask_delete(self) -> None:
        """Deleting needs a second, explicit click; removing outputs is a separate choice."""
        outputs = w.Checkbox(description="also delete the output folder", indent=False)
        yes = w.Button(description="Delete for good", button_style="danger", icon="trash")
        no = w.Button(description="Keep it")
        yes.on_click(lambda _: self.delete(outputs.value))
        no.on_click(lambda _: setattr(self.confirm, "children", ()))
        question = w.HTML(f"<b>Delete “{esc(self.record.name if self.record else '')}”?</b>")
        self.confirm.children = (question, outputs, yes, no)

    @guarded
    def delete(self, remove_outputs: bool = False) -> None:
        """Delete through the Lab, then hand back to whoever shows this view."""
        self.confirm.children = ()
        self.lab.delete_experiment(self.experiment_id, remove_outputs=remove_outputs)
        self._ticker.stop()
        self.show_run(None)
        for button in self.buttons.values():
            button.disabled = True
        self.messages.info("experiment deleted")
        for callback in self._callbacks["deleted"]:
            callback(self.experiment_id)
