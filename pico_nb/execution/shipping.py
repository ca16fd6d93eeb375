"""A supervisor away from the lab's disks: its run's log is shipped as it is written."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pico_nb.execution.supervisor import Supervisor

if TYPE_CHECKING:
    from pico_nb.execution.reports import Ledger
    from pico_nb.settings import Settings


class Shipper(Protocol):
    """Copies a run's log bytes, as they are written, to where the lab keeps logs."""

    def append(self, data: bytes) -> None:
        """Take bytes just written; never blocks the output thread."""
        ...

    def close(self) -> None:
        """Ship and keep everything still pending: the log is complete centrally."""
        ...


class ShippingSupervisor(Supervisor):
    """The local supervisor's behaviour, with the log kept centrally before the run ends."""

    def __init__(
        self,
        settings: Settings,
        run_id: int,
        wake: threading.Event,
        ledger: Ledger,
        shipper: Shipper,
        spool: Path,
    ) -> None:
        super().__init__(settings, run_id, wake, ledger)
        self.shipper, self.spool = shipper, spool

    def settle_log(self) -> None:
        """Ship the rest and keep it centrally; the spool copy is then not needed."""
        self.shipper.close()
        self.spool.unlink(missing_ok=True)

    def fail_to_start(self, exc: OSError) -> None:
        """Keep the 'could not start' log line centrally too."""
        self.settle_log()
        super().fail_to_start(exc)
