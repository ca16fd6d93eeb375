"""One widget per pipeline parameter, built from its spec, and the collapsible group of them.

A :class:`ParamField` holds its value, whether it differs from the default, and its error in
traits, and its input boxes follow the value both ways; a :class:`ParamSection` shows one group
of the spec and counts its changed fields in its title.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from pico_nb.contract.param import Param
from pico_nb.input_fit import fit_problem
from pico_nb.schemas import FrameInfo
from pico_nb.text import esc, value_text
from pico_nb.widgets.fields import field_label, help_block
from pico_nb.widgets.style import styled


def _number_box(param: Param, label: str = "") -> w.Widget:
    """An unbounded number box: out-of-range input stays as typed and is shown as an error."""
    kind = w.IntText if param.kind in ("int", "int_list") else w.FloatText
    box = kind(
        description=label,
        style={"description_width": "initial"},
        layout=w.Layout(width="120px" if label else "160px"),
    )
    if kind is w.FloatText:
        box.step = None
    return box


def _inputs(param: Param) -> list[w.Widget]:
    """The right control(s) for a parameter's type: checkbox, number, dropdown, text or boxes."""
    if param.kind == "bool":
        return [w.Checkbox(indent=False, layout=w.Layout(width="auto"))]
    if param.kind in ("int", "float"):
        return [_number_box(param)]
    if param.kind == "choice":
        return [w.Dropdown(options=list(param.choices), layout=w.Layout(width="160px"))]
    if param.kind == "str":
        return [w.Text(layout=w.Layout(width="240px"))]
    labels = param.labels or tuple(str(i) for i in range(param.length))
    return [_number_box(param, label) for label in labels]


class ParamField(w.HBox):
    """One parameter: its control(s), its help, a mark when it differs from the default, its error.

    Values are never altered: what is typed stays, and a value the spec refuses (or that does
    not fit the detected input) is shown as an error at the field until it is fixed.
    """

    value = t.Any()
    changed = t.Bool(False)
    error = t.Unicode("")

    def __init__(self, param: Param) -> None:
        self.param = param
        self.frames: FrameInfo | None = None  # the detected input, for data-aware checks
        self.inputs = _inputs(param)
        self.marker = w.HTML(layout=w.Layout(width="16px"))
        self.error_label = styled(w.HTML(), "pico-field-error")
        label = field_label(param.name, param.help)
        for box in self.inputs:
            box.tooltip = param.help
        extra: list[w.Widget] = []
        if param.unit:
            extra.append(styled(w.HTML(esc(param.unit)), "pico-unit"))
        self.whole_frame_button = w.Button(
            description="Use whole frame", layout=w.Layout(display="none")
        )
        if param.frame == "crop":
            extra.append(self.whole_frame_button)
        self.help = help_block(param.help, param.unit)
        super().__init__([label, *self.inputs, *extra, self.marker, self.error_label, self.help])
        styled(self, "pico-row", "pico-param")
        self._syncing = False
        for box in self.inputs:
            box.observe(self._from_inputs, "value")
        self.value = self.as_value(param.default)

    def as_value(self, value: Any) -> Any:
        """Lists for list parameters, so comparisons with defaults and records agree."""
        return list(value) if self.param.kind == "int_list" else value

    def _from_inputs(self, _: object = None) -> None:
        """Typing in a box changes the field's value and re-checks it at once."""
        if not self._syncing:
            values = [box.value for box in self.inputs]
            self.value = values if self.param.kind == "int_list" else values[0]
            self.check()

    def check(self) -> bool:
        """Show (or clear) this field's error for its current value; True when it is valid."""
        try:
            typed = self.param.coerce(self.value)
        except ValueError as exc:
            self.error = str(exc)
            return False
        problem = fit_problem(self.param, typed, self.frames) if self.frames else None
        self.error = problem or ""
        return problem is None

    @t.observe("value")
    def _to_inputs(self, change: dict[str, Any]) -> None:
        """A value set from Python shows in the boxes and updates the changed mark."""
        values = change["new"] if self.param.kind == "int_list" else [change["new"]]
        self._syncing = True
        try:
            for box, value in zip(self.inputs, values, strict=False):
                box.value = value
        finally:
            self._syncing = False
        self.changed = self.as_value(change["new"]) != self.as_value(self.param.default)

    @t.observe("changed")
    def _mark(self, change: dict[str, Any]) -> None:
        """A dot with the default as its tooltip marks a non-default value."""
        default = esc(value_text(self.param.default))
        self.marker.value = (
            f'<span class="pico-changed" title="default: {default}">●</span>'
            if change["new"]
            else ""
        )

    @t.observe("error")
    def _show_error(self, change: dict[str, Any]) -> None:
        self.error_label.value = esc(change["new"])
        self.whole_frame_button.layout.display = None if change["new"] else "none"

    def reset(self, _: object = None) -> None:
        """Back to the spec's default."""
        self.value = self.as_value(self.param.default)
        self.check()


class ParamSection(w.Accordion):
    """One collapsible group of parameters with its own reset; the title counts changes."""

    def __init__(self, group: str, params: list[Param]) -> None:
        self.group = group
        self.fields = [ParamField(p) for p in params]
        reset = w.Button(description=f"Reset {group.lower()}", icon="undo")
        reset.on_click(self.reset)
        body = w.VBox([*self.fields, reset])
        super().__init__([body], selected_index=None)
        styled(self, "pico-section")
        for field in self.fields:
            field.observe(self._retitle, "changed")
        self._retitle()

    def _retitle(self, _: object = None) -> None:
        """'Motion correction · 2 changed' tells what is inside without opening it."""
        count = sum(f.changed for f in self.fields)
        self.set_title(0, f"{self.group} · {count} changed" if count else self.group)

    def reset(self, _: object = None) -> None:
        """Every parameter of this group back to its default."""
        for field in self.fields:
            field.reset()
