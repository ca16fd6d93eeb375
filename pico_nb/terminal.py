"""A run as a terminal shows it: its name, and its log printed live (shared by CLI and demo)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pico_nb.schemas import RunRecord

if TYPE_CHECKING:
    from pico_nb.lab import Lab


def run_name(run: RunRecord) -> str:
    """'exp 3 run 2': runs are numbered within their experiment, as every view shows them."""
    return f"exp {run.experiment_id} run {run.number}"


def follow(lab: Lab, run: RunRecord, from_tail: int | None = None) -> int:
    """Print a run's log live, progress in place on a terminal; Ctrl-C only detaches."""
    tty = sys.stdout.isatty()
    shown_progress = ""
    try:
        for event in lab.follow_log(run.id, from_tail=from_tail):
            if event.line is not None:
                if shown_progress and tty:
                    sys.stdout.write("\r\x1b[K")
                    shown_progress = ""
                sys.stdout.write(event.line + "\n")
            elif tty and event.progress_text and event.progress_text != shown_progress:
                shown_progress = event.progress_text
                sys.stdout.write("\r\x1b[K" + shown_progress[:200])
            sys.stdout.flush()
    except KeyboardInterrupt:
        print(
            f"\ndetached; exp {run.experiment_id} run {run.number} goes on "
            f"(pico-nb logs {run.experiment_id} --follow)"
        )
        return 130
    if shown_progress and tty:
        sys.stdout.write("\n")
    final = lab.wait(run.id)
    print(f"{run_name(final)} {final.status}: {final.reason or ''}".rstrip())
    return 0 if final.status == "completed" else 1
