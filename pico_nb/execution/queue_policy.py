"""The one queue policy every executor that queues runs itself claims by.

Fair round robin between members, first in first out within one: the next run to start is
the oldest queued run (by queued_at, then id) of the member with the fewest runs running;
a tie goes to the member whose last run started longest ago (or who never started one), then to the
member whose oldest queued run is oldest. A member at the per-user cap waits. So one member's
fifty queued runs never starve another's one. The local executor claims by it for every free
slot, a Celery worker for its one free slot; Slurm keeps its own queue and fair share.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pico_nb.models import Run, utcnow

NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class Line:
    """The queue as the policy sees it, updated as runs are taken from it."""

    waiting: dict[int, list[int]]  # member → their queued run ids, oldest first
    running: Counter[int]  # member → runs running
    last_start: dict[int, datetime] = field(default_factory=dict)

    def take(self, cap: int | None) -> int | None:
        """The next run by the policy, removed from the line and counted as running."""
        users = [
            u for u, ids in self.waiting.items() if ids and (cap is None or self.running[u] < cap)
        ]
        if not users:
            return None
        user = min(
            users,
            key=lambda u: (self.running[u], self.last_start.get(u, NEVER), self.waiting[u][0]),
        )
        self.running[user] += 1
        self.last_start[user] = utcnow()
        return self.waiting[user].pop(0)


def read_line(session: Session, needs_gpu: bool | None = None) -> Line:
    """The queued runs (of one kind, if given), who runs what, and when each member last started."""
    queued = select(Run.user_id, Run.id).where(Run.status == "queued")
    if needs_gpu is not None:
        queued = queued.where(Run.needs_gpu == needs_gpu)
    waiting: dict[int, list[int]] = {}
    for user_id, run_id in session.execute(queued.order_by(Run.queued_at, Run.id)):
        waiting.setdefault(user_id, []).append(run_id)
    running = Counter(
        dict(
            session.execute(
                select(Run.user_id, func.count(Run.id))
                .where(Run.status == "running")
                .group_by(Run.user_id)
            ).all()
        )
    )
    last_start = {
        user_id: started
        for user_id, started in session.execute(
            select(Run.user_id, func.max(Run.started_at))
            .where(Run.user_id.in_(waiting))
            .group_by(Run.user_id)
        )
        if started is not None
    }
    return Line(waiting, running, last_start)


def position(session: Session, run_id: int) -> int | None:
    """Where a queued run stands in the policy's order (1 = next), were slots to free one by one."""
    line = read_line(session)
    for place in range(1, sum(len(ids) for ids in line.waiting.values()) + 1):
        if line.take(None) == run_id:
            return place
    return None
