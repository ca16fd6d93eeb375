"""A supervisor away from the lab's disks: its run's log is shipped as it is written."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pico_nb.execution.supervisor import Supervisor

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.logstream import LogShipper
    from pico_nb.settings import Settings


class ShippingSupervisor(Supervisor):
    """The local supervisor's behaviour, with the log kept centrally before the run ends."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        run_id: int,
        wake: threading.Event,
        shipper: LogShipper,
        spool: Path,
    ) -> None:
        super().__init__(db, settings, run_id, wake)
        self.shipper, self.spool = shipper, spool

    def settle_log(self) -> None:
        """Ship the rest and keep it centrally; the spool copy is then not needed."""
        self.shipper.close()
        self.spool.unlink(missing_ok=True)

    def fail_to_start(self, exc: OSError) -> None:
        """Keep the 'could not start' log line centrally too."""
        self.settle_log()
        super().fail_to_start(exc)
