"""What every executor does alike when Lab changes the queue: the lock a new run or a stop
takes against claims, a new run's provenance, a queued run's cancel, and its place in line.
The executors inherit it, so Lab reaches all of it through the `Executor` interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pico_nb.execution import bookkeeping, queue_policy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from pico_nb.models import Run
    from pico_nb.params import PipelineSpec


class QueueKeeping:
    """The queue-side half of an executor, the same for local, Celery and Slurm."""

    def lock_queue(self, session: Session) -> None:
        """Serialise Lab's change (a new run, a stop) with every claim in this transaction."""
        bookkeeping.lock_queue(session)

    def provenance(self, spec: PipelineSpec, argv: list[str], username: str) -> dict[str, Any]:
        """What a new run records of where it came from; its worker adds its own machine."""
        return bookkeeping.provenance(spec, argv, username)

    def cancel_queued(self, run: Run, username: str) -> None:
        """A queued run leaves the queue, closed the way every ending is."""
        bookkeeping.finish(run, "cancelled", f"stopped by {username} while queued")

    def queue_position(self, session: Session, run: Run) -> int | None:
        """A queued run's place in the policy's line (1 = next); None once it is not queued."""
        return queue_policy.position(session, run.id) if run.status == "queued" else None
