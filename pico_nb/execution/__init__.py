"""Execution: supervisors and the local, Celery and Slurm executors, behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pico_nb.db import Database
    from pico_nb.models import Run
    from pico_nb.params import PipelineSpec
    from pico_nb.schemas import MachineRecord, QueueRecord
    from pico_nb.settings import Settings


class Executor(Protocol):
    """What Lab needs from whatever executes runs; records stay in the database either way.

    The queue-side methods are the same for every executor (`queue_keeping.QueueKeeping`).
    """

    def lock_queue(self, session: Session) -> None:
        """Serialise Lab's change (a new run, a stop) with every claim in this transaction."""
        ...

    def provenance(self, spec: PipelineSpec, argv: list[str], username: str) -> dict[str, Any]:
        """What a new run records of where it came from."""
        ...

    def cancel_queued(self, run: Run, username: str) -> None:
        """A queued run leaves the queue."""
        ...

    def queue_position(self, session: Session, run: Run) -> int | None:
        """A queued run's place in line (1 = next), if the queue is ours to tell."""
        ...

    def submit(self, run_id: int) -> None:
        """Hand a newly queued run over for execution."""
        ...

    def stop(self, run_id: int) -> None:
        """Make a running run's supervisor act on its stop request now."""
        ...

    def reconcile(self) -> list[int]:
        """Fail runs nobody reports on any more; return their ids."""
        ...

    def queue_state(self) -> QueueRecord:
        """Slots, runs running and queued, GPUs: for the resources view."""
        ...

    def machines(self) -> list[MachineRecord]:
        """Where runs run, as those machines last measured or described themselves; every
        running run is named, and Lab keeps only those the member may see."""
        ...


def executor_for(db: Database, settings: Settings) -> Executor:
    """The executor the settings name; Celery is imported only when asked for."""
    if settings.executor == "celery":
        from pico_nb.execution.celery import CeleryExecutor

        return CeleryExecutor(db, settings)
    if settings.executor == "slurm":
        from pico_nb.execution.slurm import SlurmExecutor

        return SlurmExecutor(db, settings)
    from pico_nb.execution.local import LocalExecutor

    return LocalExecutor(db, settings)
