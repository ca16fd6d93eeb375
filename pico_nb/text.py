"""Text for people: escaped HTML, local times with their zone, human durations and sizes."""

from __future__ import annotations

import html
from datetime import datetime

from pico_nb.contract.errors import PicoError, ValidationError


def esc(value: object) -> str:
    """Escape anything users or logs wrote before it goes into HTML."""
    return html.escape(str(value), quote=True)


def local_time(ts: datetime | None) -> str:
    """Stored times are UTC; people read them in their own zone, with the zone named."""
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if ts else "—"


def duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 12s: how long, at a glance."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def size(count: int) -> str:
    """File sizes in the unit a person expects."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def value_text(value: object) -> str:
    """Parameter values as a person writes them: true, 100, 0, 0, 256, 256."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value)
    return str(value)


def error_text(exc: BaseException) -> str:
    """What went wrong in a sentence, never a traceback."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{field}: {rule}" for field, rule in exc.errors.items())
    if isinstance(exc, PicoError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}): {exc}"
