"""The parts of a form's labelled rows: a label with its help, the help block, a text field.

Every label has the same width, so the rows of a form line up; a field's complaint is a trait,
shown escaped, so Python code and the user see the same text.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from pico_nb.text import esc
from pico_nb.widgets.style import styled

LABEL_WIDTH = "200px"


def field_label(name: str, help_text: str) -> w.HTML:
    """A field's name with a visible (i) mark carrying its help, for hover and screen readers."""
    return w.HTML(
        f'<span class="pico-label"><span>{esc(name)}</span> '
        f'<span class="pico-info" title="{esc(help_text)}" '
        f'aria-label="help: {esc(help_text)}">i</span></span>',
        layout=w.Layout(width=LABEL_WIDTH),
    )


def help_block(help_text: str, unit: str = "") -> w.HTML:
    """The help shown under a row while it is hovered or one of its inputs has focus."""
    units = f' <span class="pico-unit-note">Unit: {esc(unit)}.</span>' if unit else ""
    return styled(w.HTML(f"{esc(help_text)}{units}"), "pico-help")


class TextField(w.VBox):
    """A labelled text box with its error underneath."""

    error = t.Unicode("")

    def __init__(self, label: str, box: w.Widget, *extra: w.Widget) -> None:
        self.box = box
        self.error_label = styled(w.HTML(), "pico-field-error")
        title = w.Label(label, layout=w.Layout(width=LABEL_WIDTH))
        super().__init__([styled(w.HBox([title, box, *extra]), "pico-row"), self.error_label])
        box.observe(self._edited, "value")

    def _edited(self, _: object = None) -> None:
        """An old complaint goes as soon as the value is changed; Save checks it again."""
        self.error = ""

    @t.observe("error")
    def _show_error(self, change: dict[str, Any]) -> None:
        """The complaint is text from the Lab: escaped, never taken as HTML."""
        self.error_label.value = esc(change["new"])
