"""Execution: supervisors and the local, Celery and Slurm executors, behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.settings import Settings


class Executor(Protocol):
    """What Lab needs from whatever executes runs; records stay in the database either way."""

    def submit(self, run_id: int) -> None:
        """Hand a newly queued run over for execution."""
        ...

    def stop(self, run_id: int) -> None:
        """Make a running run's supervisor act on its stop request now."""
        ...

    def reconcile(self) -> list[int]:
        """Fail runs nobody reports on any more; return their ids."""
        ...

    def queue_state(self) -> dict[str, Any]:
        """Slots, runs running and queued, GPUs: for the resources view."""
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
