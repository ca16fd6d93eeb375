"""The experiment form for create, edit and clone, generated from the pipeline's parameter spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import traitlets as t

from pico_nb.contract.errors import ValidationError
from pico_nb.input_fit import whole_frame
from pico_nb.schemas import ExperimentRecord, FrameInfo, RunRecord
from pico_nb.text import esc
from pico_nb.widgets import default_lab
from pico_nb.widgets.fields import TextField
from pico_nb.widgets.param_fields import ParamField, ParamSection
from pico_nb.widgets.style import MessageBar, guarded, heading, heading_html, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

# After a refused Save, bring the first complaint on screen (widgets do not run <script>).
SHOW_FIRST_ERROR_JS = (
    "const f=this.closest('.pico-form');if(!f)return;"
    "const e=[...f.querySelectorAll('.pico-field-error')].find(x=>x.textContent.trim());"
    "if(e)e.scrollIntoView({block:'center'})"
)
Saved = Callable[[ExperimentRecord, RunRecord | None], None]


class ExperimentForm(w.VBox):
    """Create, edit or clone an experiment; nothing is stored unless every field is valid."""

    mode = t.Enum(["create", "edit", "clone"], "create")
    experiment_id = t.Int(None, allow_none=True)
    busy = t.Bool(False)

    def __init__(
        self,
        lab: LabAPI | None = None,
        experiment_id: int | None = None,
        *,
        clone: bool = False,
        **kwargs: object,
    ) -> None:
        self.lab = lab or default_lab()
        self.title = heading("New experiment")
        wide = w.Layout(width="min(560px, 100%)")
        self.name = TextField("Name", w.Text(placeholder="e.g. mouse 12, day 3", layout=wide))
        self.description = TextField(
            "Description", w.Textarea(placeholder="what this run is for", layout=wide)
        )
        detect = w.Button(description="Detect frames", icon="search")
        detect.on_click(self._detect)
        self.frames = styled(w.HTML(), "pico-muted")
        self.input_path = TextField(
            "Input folder", w.Text(placeholder="/data/movie", layout=wide), detect
        )
        roots = ", ".join(str(r) for r in self.lab.data_roots)
        self.folders = styled(w.HTML(esc(f"Your folders: {roots}")), "pico-muted", "pico-hint")
        self.input_path.children = (*self.input_path.children, self.frames, self.folders)
        self.output_path = TextField(
            "Output folder", w.Text(placeholder="/data/results", layout=wide)
        )
        self.sections = [ParamSection(g, ps) for g, ps in self.lab.spec.groups().items()]
        self.fields = {f.param.name: f for s in self.sections for f in s.fields}
        for field in self.fields.values():
            field.whole_frame_button.on_click(lambda _, f=field: self._use_whole_frame(f))
        self.save_button = w.Button(description="Save", button_style="primary", icon="save")
        self.save_run_button = w.Button(description="Save & Run", button_style="success")
        self.save_run_button.icon = "play"
        self.cancel_button = w.Button(description="Cancel")
        reset_all = w.Button(description="Reset all parameters", icon="undo")
        self.save_button.on_click(lambda _: self.save())
        self.save_run_button.on_click(lambda _: self.save(run=True))
        self.cancel_button.on_click(self._cancel)
        reset_all.on_click(self.reset_params)
        self.messages = MessageBar()
        self._scroller = styled(w.HTML(), "pico-log-hook")
        self._refusals = 0
        self._saved: list[Saved] = []
        self._cancelled: list[Callable[[], None]] = []
        buttons = styled(
            w.HBox([self.save_button, self.save_run_button, self.cancel_button, reset_all]),
            "pico-toolbar",
        )
        super().__init__(
            [
                stylesheet(),
                self.title,
                self.name,
                self.description,
                self.input_path,
                self.output_path,
                heading(f"Parameters — {self.lab.spec.title}", 3),
                *self.sections,
                buttons,
                self.messages,
                self._scroller,
            ],
            **kwargs,
        )
        styled(self, "pico", "pico-form")
        if experiment_id is not None:
            self.load(self.lab.get_experiment(experiment_id), clone=clone)

    # ------------------------------------------------------------------- values

    def params(self) -> dict[str, Any]:
        """Every parameter as the form holds it."""
        return {name: field.value for name, field in self.fields.items()}

    def set_params(self, values: dict[str, Any]) -> None:
        """Fill the parameter fields; unknown names are ignored (the spec may have changed)."""
        for name, value in values.items():
            if name in self.fields:
                self.fields[name].value = self.fields[name].as_value(value)

    def reset_params(self, _: object = None) -> None:
        """Every parameter back to its default."""
        for section in self.sections:
            section.reset()

    def load(self, exp: ExperimentRecord, clone: bool = False) -> None:
        """Fill the form from an experiment, to edit it or to start a clone of it."""
        self.mode = "clone" if clone else "edit"
        self.experiment_id = exp.id
        self.title.value = heading(f"Clone of {exp.name}" if clone else f"Edit {exp.name}").value
        self.name.box.value = f"{exp.name} (copy)"[:200] if clone else exp.name
        self.description.box.value = exp.description
        self.input_path.box.value = exp.input_path
        self.output_path.box.value = f"{exp.output_path}-copy" if clone else exp.output_path
        self.reset_params()
        self.set_params(exp.params)
        self.clear_errors()

    def loaded_id(self) -> int:
        """The experiment being edited or cloned: load() sets it together with the mode."""
        if self.experiment_id is None:
            raise RuntimeError(f"the form is in {self.mode} mode without an experiment")
        return self.experiment_id

    def clear(self) -> None:
        """An empty create form."""
        self.mode, self.experiment_id = "create", None
        self.title.value = heading_html("New experiment")
        for field in (self.name, self.description, self.input_path, self.output_path):
            field.box.value = ""
        self.frames.value = ""
        self.reset_params()
        self.clear_errors()
        for field in self.fields.values():
            field.frames = None

    # ------------------------------------------------------------------ actions

    def on_saved(self, callback: Saved) -> None:
        """Call back with the stored experiment (and its run, for Save & Run)."""
        self._saved.append(callback)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call back when the user gives up."""
        self._cancelled.append(callback)

    def _cancel(self, _: object = None) -> None:
        self.clear_errors()
        for callback in self._cancelled:
            callback()

    def clear_errors(self) -> None:
        """Remove every field message and the message area."""
        for field in (self.name, self.description, self.input_path, self.output_path):
            field.error = ""
        for field in self.fields.values():
            field.error = ""
        self.messages.clear()

    def _show_errors(self, exc: ValidationError) -> None:
        """Each message next to its field; the rest (and a summary) in the message area."""
        text_fields = {
            "name": self.name,
            "description": self.description,
            "input_path": self.input_path,
            "output_path": self.output_path,
        }
        loose = {}
        for key, rule in exc.errors.items():
            name = key.removeprefix("params.")
            if key in text_fields:
                text_fields[key].error = rule
            elif key.startswith("params.") and name in self.fields:
                self.fields[name].error = rule
                section = next(s for s in self.sections if self.fields[name] in s.fields)
                section.selected_index = 0
            else:
                loose[key] = rule
        names = ", ".join(k.removeprefix("params.") for k in exc.errors)
        summary = f"Not saved: {len(exc.errors)} field(s) need attention ({names})."
        extra = "; ".join(f"{k}: {v}" for k, v in loose.items())
        self.messages.error(f"{summary} {extra}".strip())
        self._refusals += 1
        self._scroller.value = (
            f'<img alt="" src="data:," data-n="{self._refusals}" '
            f'onerror="{esc(SHOW_FIRST_ERROR_JS)}">'
        )

    def _store(self) -> ExperimentRecord:
        """Create, update or clone through the Lab, which validates everything at once."""
        values = {
            "name": self.name.box.value,
            "description": self.description.box.value,
            "input_path": self.input_path.box.value.strip(),
            "output_path": self.output_path.box.value.strip(),
            "params": self.params(),
        }
        if self.mode == "edit":
            return self.lab.update_experiment(self.loaded_id(), **values)
        if self.mode == "clone":
            name = values.pop("name")
            return self.lab.clone_experiment(self.loaded_id(), name, **values)
        return self.lab.create_experiment(**values)

    def save(self, run: bool = False) -> ExperimentRecord | None:
        """Save (and run); a second click while saving, or after, never makes a duplicate."""
        if self.busy:
            return None
        self.busy = True
        try:
            return self._save(run)
        finally:
            self.busy = False

    @t.observe("busy")
    def _disable(self, change: dict[str, Any]) -> None:
        for button in (self.save_button, self.save_run_button):
            button.disabled = change["new"]

    @guarded
    def _save(self, run: bool) -> ExperimentRecord | None:
        self.clear_errors()
        try:
            exp = self._store()
        except ValidationError as exc:
            self._show_errors(exc)
            return None
        # From now on this form edits what it stored: a repeated Save updates, never duplicates.
        self.load(exp)
        started = self.lab.run_experiment(exp.id) if run else None
        self.messages.info(
            f"Saved experiment {exp.id}" + (f" and started run {started.number}" if started else "")
        )
        for callback in self._saved:
            callback(exp, started)
        return exp

    def _frames(self) -> FrameInfo | None:
        """Detect the input folder's frames, showing the result (or the problem) beside it."""
        self.input_path.error = ""
        self.frames.value = ""
        try:
            info = self.lab.detect_frames(self.input_path.box.value.strip())
        except ValidationError as exc:
            self.input_path.error = "; ".join(exc.errors.values())
            return None
        dims = f" · {info.width} × {info.height} px" if info.width else ""
        self.frames.value = esc(f"✓ {info.count:,} frames · {info.kind}{dims}")
        for field in self.fields.values():
            if field.param.frame:
                field.frames = info
                field.check()
        return info

    @guarded
    def _detect(self, _: object = None) -> None:
        """Confirm the input folder before saving: how many frames, of which kind, what size."""
        self._frames()

    @guarded
    def _use_whole_frame(self, field: ParamField) -> None:
        """The crop that always fits: 0, 0 and the detected frame's height and width."""
        info = self._frames()
        if info is not None and info.height:
            field.value = whole_frame(info)
            field.check()
