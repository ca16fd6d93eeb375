"""Why a failed run failed, in the pipeline's own words, read from the end of its log."""

from __future__ import annotations

import os
import re
from pathlib import Path

ERROR_TAIL = 64 << 10
"""Bytes at the end of a failed run's log searched for the pipeline's own last error line."""
_ERROR_LINE = re.compile(r"^(?:error:\s*(?P<said>.+)|(?P<exc>[A-Za-z_.]*(?:Error|Exception): .+))$")


def last_error_line(path: Path) -> str | None:
    """The pipeline's last `error: …` (or Python exception) line, so a reason can name it."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - ERROR_TAIL))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        match = _ERROR_LINE.match(line.rsplit("\r", 1)[-1].strip())
        if match:
            return (match["said"] or match["exc"]).strip()[:300]
    return None


def failure_reason(status: str, reason: str, exit_code: int | None, path: Path) -> str:
    """'exit code 2' becomes 'exit code 2: crop_parameter: …' when the pipeline said why."""
    if status != "failed" or not exit_code:
        return reason
    said = last_error_line(path)
    return f"{reason}: {said}" if said else reason
