"""The look shared by every view: one stylesheet, status badges, a message area, error guards."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import ipywidgets as w

from pico_nb.text import error_text, esc

P = ParamSpec("P")
R = TypeVar("R")
V = TypeVar("V", bound="_Reporting")

STATUS_COLOURS = {
    "created": ("#475569", "#e2e8f0"),
    "queued": ("#92400e", "#fef3c7"),
    "running": ("#1e40af", "#dbeafe"),
    "completed": ("#166534", "#dcfce7"),
    "failed": ("#991b1b", "#fee2e2"),
    "cancelled": ("#3f3f46", "#e4e4e7"),
}

CSS = """
.pico { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px;
  color: #1f2937; }
.pico .widget-label, .pico .widget-html, .pico button, .pico input, .pico select {
  font-family: inherit; }
.pico .widget-button, .pico .widget-toggle-button { width: auto; min-width: 72px;
  padding: 0 12px; }
.pico .widget-vbox > .widget-button { align-self: flex-start; }
.pico-form .widget-vbox > .pico-field-error, .pico-form .widget-vbox > .pico-hint {
  margin-left: 208px; }
.pico-badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; line-height: 18px; white-space: nowrap; }
.pico-admin { background: #ede9fe; color: #5b21b6; }
.pico-header { background: #0f172a; color: #f8fafc; padding: 10px 16px; border-radius: 8px;
  align-items: center; justify-content: space-between; flex-wrap: wrap; gap: 8px; }
.pico-header .widget-html-content { color: #f8fafc; }
.pico-header a { color: #bfdbfe; margin-left: 12px; }
.pico-title { font-size: 18px; font-weight: 700; letter-spacing: .2px; }
.pico-h2 { font-size: 17px; font-weight: 700; margin: 4px 0; }
.pico-h3 { font-size: 14px; font-weight: 700; margin: 8px 0 2px; color: #334155; }
.pico-muted { color: #64748b; font-size: 12px; }
.pico-card { border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 12px;
  background: #fff; }
.pico-msg-error { color: #991b1b; background: #fee2e2; border-radius: 6px; padding: 6px 10px; }
.pico-msg-info { color: #166534; background: #dcfce7; border-radius: 6px; padding: 6px 10px; }
.pico-field-error { color: #b91c1c; font-size: 12px; }
.pico-changed { color: #b45309; font-weight: 700; }
.pico-info { display: inline-block; width: 14px; height: 14px; line-height: 14px;
  border: 1px solid #1d4ed8; border-radius: 50%; color: #1d4ed8; cursor: help;
  font: italic 700 10px Georgia, serif; text-align: center; vertical-align: 1px; }
.pico-unit { color: #475569; font-size: 12px; }
.pico-param > .pico-help { display: none; flex-basis: 100%; margin-left: 206px; color: #334155;
  background: #f1f5f9; border-radius: 4px; padding: 4px 8px; font-size: 12px;
  white-space: normal; }
.pico-param:hover > .pico-help, .pico-param:focus-within > .pico-help { display: block; }
.pico-row { align-items: center; gap: 6px; flex-wrap: wrap; }
.pico-toolbar { align-items: center; gap: 6px; flex-wrap: wrap; margin: 4px 0; }
.pico-table { border-collapse: collapse; width: 100%; font-size: 13px; }
.pico-table th { text-align: left; color: #475569; font-weight: 600; padding: 4px 8px;
  border-bottom: 1px solid #cbd5e1; white-space: nowrap; }
.pico-table td { padding: 4px 8px; border-bottom: 1px solid #f1f5f9; vertical-align: top;
  overflow-wrap: anywhere; }
.pico-table td.diff, .pico-table td .diff { background: #fef3c7; }
.pico-grid { gap: 0; width: 100%; align-items: center; }
.pico-grid > .widget-html, .pico-grid > .widget-checkbox, .pico-grid > button {
  border-bottom: 1px solid #f1f5f9; margin: 0; min-height: 30px; }
.pico-grid .pico-th { color: #475569; font-weight: 600; border-bottom: 1px solid #cbd5e1; }
.pico-link { background: none !important; box-shadow: none !important; color: #1d4ed8 !important;
  text-align: left !important; padding: 0 4px !important; overflow: hidden;
  text-overflow: ellipsis; }
.pico-link:hover { text-decoration: underline; }
.pico-log-scroll { display: block !important; overflow-y: auto !important; height: 320px;
  background: #0b1021; border-radius: 6px; padding: 6px 10px; }
.pico-log-hook { display: none !important; }
.pico-toast { position: fixed; bottom: 16px; right: 16px; z-index: 1000; max-width: 420px;
  background: #0f172a; color: #f8fafc; padding: 10px 14px; border-radius: 8px;
  box-shadow: 0 4px 16px rgba(0, 0, 0, .25); font: 14px system-ui, sans-serif; }
.pico-bar-ended .progress-bar, .pico-bar-ended .widget-progress .progress-bar {
  background-color: #94a3b8 !important; }
.pico-log-scroll pre, .pico-log pre { margin: 0; color: #e2e8f0; background: transparent;
  font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.pico-log { display: block !important; }
.pico-cells .bqplot text.dot_text { fill: #fff !important; stroke: #0f172a; stroke-width: 3px;
  paint-order: stroke; font: 700 12px system-ui, sans-serif; }
.pico-cell-list select { font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.pico-log .widget-html { margin: 0; }
.pico-gallery { flex-wrap: wrap; gap: 10px; }
.pico-figure { border: 1px solid #e2e8f0; border-radius: 6px; padding: 6px; width: 300px; }
.pico-figure img { max-width: 100%; height: auto; }
.pico-kpi { display: inline-block; margin-right: 18px; }
.pico-kpi b { display: block; font-size: 18px; }
.pico-notice { background: #fef9c3; border-left: 4px solid #ca8a04; padding: 6px 10px;
  margin: 6px 0; border-radius: 4px; }
.pico-section .p-Accordion-child, .pico-section .lm-Accordion-child { padding: 4px 8px; }
.pico a.pico-button { display: inline-block; padding: 0 12px; line-height: 28px;
  border-radius: 4px; background: #eef2f7; color: #1f2937; text-decoration: none;
  font-size: 13px; }
.pico button.pico-button { padding: 0 12px; line-height: 28px; border: 0; border-radius: 4px;
  background: #eef2f7; color: #1f2937; font-size: 13px; cursor: pointer; }
@media (max-width: 900px) {
  .pico-header { padding: 8px 10px; }
  .pico-figure { width: 100%; }
  .pico-form .widget-vbox > .pico-field-error { margin-left: 0; }
  .pico-param > .pico-help { margin-left: 0; }
}
"""


@functools.cache
def stylesheet() -> w.HTML:
    """One <style> widget shared by every view, so the look is defined once."""
    return w.HTML(f"<style>{CSS}</style>", layout=w.Layout(display="none"))


def styled(widget: w.Widget, *classes: str) -> w.Widget:
    """Add CSS classes and return the widget, so layouts read top to bottom."""
    for name in classes:
        widget.add_class(name)
    return widget


def badge(status: str) -> str:
    """A colour-coded status pill; unknown statuses get the neutral colours."""
    fg, bg = STATUS_COLOURS.get(status, STATUS_COLOURS["created"])
    return f'<span class="pico-badge" style="color:{fg};background:{bg}">{esc(status)}</span>'


def heading_html(text: str, level: int = 2) -> str:
    """A section title's HTML, escaped, for widgets that change their title."""
    return f'<div class="pico-h{level}">{esc(text)}</div>'


def heading(text: str, level: int = 2) -> w.HTML:
    """A section title."""
    return w.HTML(heading_html(text, level))


class MessageBar(w.HTML):
    """Where a view says what went wrong or what just happened, in words."""

    def error(self, exc: BaseException | str) -> None:
        """Show an error as a sentence; exceptions are rendered without tracebacks."""
        text = exc if isinstance(exc, str) else error_text(exc)
        self.value = f'<div class="pico-msg-error" role="alert">{esc(text)}</div>'

    def info(self, text: str) -> None:
        """Confirm what just happened."""
        self.value = f'<div class="pico-msg-info">{esc(text)}</div>'

    def clear(self) -> None:
        """Remove the message."""
        self.value = ""


class _Reporting(Protocol):
    """A view that shows its errors in a message bar."""

    messages: MessageBar


def guarded(method: Callable[Concatenate[V, P], R]) -> Callable[Concatenate[V, P], R | None]:
    """Run a button handler and turn any exception into a message, never a traceback."""

    @functools.wraps(method)
    def wrapper(self: V, *args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            self.messages.error(exc)
            return None

    return wrapper
