"""Reports of Slurm jobs that run as the run's owner: the service takes them for the database.

These are not a member's calls: the pico service makes them for a job that proves itself with
its run's token (see :mod:`pico_nb.execution.job_desk`), so only the operator's Lab takes them.
"""

from __future__ import annotations

from typing import Any

from pico_nb.contract.errors import PermissionDenied
from pico_nb.execution import job_desk
from pico_nb.execution.job_link import RUN_TOKEN_HEADER
from pico_nb.lab.core import LabCore

__all__ = ["RUN_TOKEN_HEADER", "JobsMixin"]


class JobsMixin(LabCore):
    """What a member's batch job may tell the lab about its own run."""

    def _require_operator(self) -> None:
        """Only the service, holding the database, relays a job's reports."""
        if not self._operator:
            raise PermissionDenied("only the pico service takes a job's reports")

    def job_claim(
        self, run_id: int, token: str, job_id: str, node: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Start the run for this job; its launch plan, or None if there is nothing to do."""
        self._require_operator()
        return job_desk.claim(self.db, self.settings, run_id, token, job_id, node)

    def job_report(self, run_id: int, token: str, report: dict[str, Any]) -> str | None:
        """Record a heartbeat, the processes or the end; who asked for a stop, if anyone."""
        self._require_operator()
        return job_desk.report(self.db, run_id, token, report)

    def job_log(self, run_id: int, token: str, start: int, data: bytes) -> int:
        """Keep log bytes from ``start``; the size kept, from which the job sends next."""
        self._require_operator()
        return job_desk.keep_log(self.db, self.settings, run_id, token, start, data)
