"""Tell a member in the page when any run of theirs ends, whichever view the dashboard shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as w

from pico_nb.inputs import MAX_LIST_PAGE
from pico_nb.widgets.run_notice import ended_notice
from pico_nb.widgets.style import styled
from pico_nb.widgets.ticker import Ticker

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

REFRESH_SECONDS = 3.0


class RunWatcher(w.HTML):
    """Watches the member's own queued and running runs; an ended one becomes a notice."""

    def __init__(self, lab: LabAPI, refresh_seconds: float = REFRESH_SECONDS) -> None:
        super().__init__()
        styled(self, "pico-log-hook")
        self.lab = lab
        self.active = self._active()
        self._ticker = Ticker(refresh_seconds, self.check)

    def _active(self) -> dict[int, str]:
        """The member's active runs (latest run of each experiment), with experiment names."""
        found: dict[int, str] = {}
        for status in ("queued", "running"):
            for exp in self.lab.experiments(status=status, scope="mine", limit=MAX_LIST_PAGE):
                if exp.last_run is not None:
                    found[exp.last_run.id] = exp.name
        return found

    def check(self) -> None:
        """Announce runs that were active at the last look and have ended since."""
        try:
            now = self._active()
            ended = [self.lab.get_run(r) for r in self.active.keys() - now.keys()]
        except Exception:  # a service restarting: the next tick looks again, nothing is lost
            return
        notices = [ended_notice(run, self.active[run.id]) for run in ended if not run.active]
        if notices:
            self.value = "".join(notices)
        self.active = now

    def close(self) -> None:
        """Stop watching with the page."""
        self._ticker.stop()
        super().close()
