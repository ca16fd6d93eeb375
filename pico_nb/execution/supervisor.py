"""The detached process that owns one pipeline run: log, heartbeat, stop, and the final record.

Started as `python -m pico_nb.execution.supervisor_entry RUN_ID` by whoever claimed the run's
slot, in its own session, so closing a tab, a kernel or a terminal never touches the run. It
starts the pipeline first, from the launch plan in its environment, and only then loads the
database stack, so a run starts in tens of milliseconds rather than after a second of imports.

What keeps the record true under faults:

* the run ends when the pipeline's main process exits: the pipe is drained for at most
  ``DRAIN_SECONDS`` (a helper may hold it open), then the whole process group is killed;
* a stop is credited only if it reached a live pipeline, and it always ends in the group;
* a database outage is ridden out for ``db_outage_seconds`` while output keeps flowing to the
  log, and the final record waits for the database to come back;
* a log that cannot be written (a full disk) fails the run at once and stops the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pico_nb.execution.pipeline_process import (
    OutputCopier,
    Started,
    log_write_failure,
    process_start,
)
from pico_nb.execution.reports import Ledger, Report
from pico_nb.logs import LogWriter, failure_reason

if TYPE_CHECKING:
    from pico_nb.settings import Settings

PROGRESS_INTERVAL = 1.0
DRAIN_SECONDS = 3.0
"""How long output may still arrive after the pipeline's main process exited."""
SETTINGS_ENV = "PICO_NB_SUPERVISOR_SETTINGS"  # the launcher's settings, as JSON
PLAN_ENV = "PICO_NB_SUPERVISOR_PLAN"  # argv, log and output paths, GPUs, header lines


def describe_exit(
    returncode: int, stopped_by: str | None, killed_after_grace: float | None
) -> tuple[str, str, int | None, str | None]:
    """(status, reason, exit_code, signal) in words a person understands."""
    signame = None
    if returncode < 0:
        try:
            signame = signal.Signals(-returncode).name
        except ValueError:
            signame = f"signal {-returncode}"
    exit_code = returncode if returncode >= 0 else None
    if stopped_by:
        reason = f"stopped by {stopped_by}"
        if killed_after_grace is not None:
            reason += f" (killed with SIGKILL after {killed_after_grace:g} s grace)"
        return "cancelled", reason, exit_code, signame
    if signame == "SIGKILL":
        return "failed", "killed by SIGKILL — likely out of memory", None, signame
    if signame:
        return "failed", f"killed by {signame}", None, signame
    status = "completed" if returncode == 0 else "failed"
    return status, f"exit code {returncode}", returncode, None


def _is_outage(exc: Exception) -> bool:
    """A database (or pico service) error that passes when it is back, as opposed to a bug."""
    from sqlalchemy import exc as sa

    if isinstance(exc, ConnectionError):  # the service a job reports through (job_link)
        return True

    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.OperationalError | sa.InterfaceError)


class Supervisor:
    """Runs one pipeline process to its end and keeps the database told."""

    def __init__(
        self, settings: Settings, run_id: int, wake: threading.Event, ledger: Ledger
    ) -> None:
        self.settings, self.run_id, self.wake, self.ledger = settings, run_id, wake, ledger
        self.stopped_by: str | None = None
        self.term_at: float | None = None
        self.killed_after: float | None = None
        self.failure: str | None = None  # a reason that overrides the exit status
        self.outage_since: float | None = None

    def _update(self, report: Report, *, patient: bool) -> bool:
        """Record a report and hear of any stop request; a patient write waits out an outage.

        An impatient one (a heartbeat) is skipped during an outage and tried again next time;
        once the outage has lasted ``db_outage_seconds`` the run is failed with that reason.
        """
        delay = 0.2
        while True:
            try:
                stop_by = self.ledger.write(report)
            except Exception as exc:
                if not _is_outage(exc):
                    raise
                self._note_outage(exc)
                if not patient:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.outage_since is not None:
                print(f"{self.ledger.keeper} reachable again", file=sys.stderr, flush=True)
                self.outage_since = None
            self.stopped_by = self.stopped_by or stop_by
            return True

    def _note_outage(self, exc: Exception) -> None:
        """Say so in the supervisor's own output, and give up on the run once it lasts too long."""
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = now
            print(f"{self.ledger.keeper} unreachable, retrying: {exc}", file=sys.stderr, flush=True)
        lasted = now - self.outage_since
        if self.failure is None and lasted >= self.settings.db_outage_seconds:
            self.failure = f"lost contact with the {self.ledger.keeper} for {lasted:.0f} s"

    def _record_start(self, proc: subprocess.Popen[bytes]) -> None:
        """Tell the database which processes, by pid and start time, now own the run."""
        me, pipeline = os.getpid(), proc.pid
        processes: dict[str, float] = {"supervisor_pid": me, "pid": pipeline, "pgid": pipeline}
        starts = {"supervisor_start": process_start(me), "pipeline_start": process_start(pipeline)}
        processes.update({k: v for k, v in starts.items() if v is not None})
        self._update(Report(processes=processes), patient=True)

    def _report(self, writer: LogWriter) -> None:
        """Heartbeat with the latest progress, and pick up a stop request from any host."""
        progress = writer.progress
        beat = Report(
            heartbeat=True,
            stage=progress.stage or "",
            progress=progress.fraction,
            eta_seconds=progress.eta_seconds,
        )
        if self._update(beat, patient=False):
            self.check_peers()

    def check_peers(self) -> None:
        """Look after other runs' slots at each heartbeat: the executor's subclass knows how."""
        raise NotImplementedError

    @contextlib.contextmanager
    def outage_tolerated(self) -> Iterator[None]:
        """Slot keeping is best effort: a database outage here must not end the supervisor,
        the next heartbeat (or any Lab's reconcile) does it once the database is back."""
        try:
            yield
        except Exception as exc:
            if not _is_outage(exc):
                raise
            self._note_outage(exc)

    def _enforce_stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the whole group at once, SIGKILL once the grace period is over."""
        from pico_nb.execution import bookkeeping

        if not self.stopped_by or proc.poll() is not None:
            return
        now = time.monotonic()
        if self.term_at is None:
            self.term_at = now
            bookkeeping.signal_group(proc.pid, signal.SIGTERM)
        elif now - self.term_at >= self.settings.stop_grace_seconds and self.killed_after is None:
            self.killed_after = self.settings.stop_grace_seconds
            bookkeeping.signal_group(proc.pid, signal.SIGKILL)

    def supervise(
        self, proc: subprocess.Popen[bytes], writer: LogWriter, pump: OutputCopier
    ) -> int:
        """Heartbeat, report progress and enforce stops until the pipeline's main process ends."""
        from pico_nb.execution import bookkeeping

        last_beat = last_progress = 0.0
        seen_progress = None
        while proc.poll() is None:
            if pump.error is not None and self.failure is None:
                self.failure = log_write_failure(pump.error, writer.path)
            if self.failure is not None:  # the log or the database is gone: stop the run
                bookkeeping.signal_group(proc.pid, signal.SIGKILL)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
            now = time.monotonic()
            progress_due = (
                writer.progress != seen_progress and now - last_progress >= PROGRESS_INTERVAL
            )
            beat_due = now - last_beat >= self.settings.heartbeat_seconds
            if self.wake.is_set() or progress_due or beat_due:
                self.wake.clear()
                seen_progress = writer.progress
                self._report(writer)
                last_beat = last_progress = now
            self._enforce_stop(proc)
        returncode = proc.wait()
        pump.join(timeout=DRAIN_SECONDS)  # a helper may hold the pipe: drain, within bounds
        bookkeeping.signal_group(proc.pid, signal.SIGKILL)  # leftovers of the pipeline die with it
        pump.join(timeout=DRAIN_SECONDS)
        pump.halt.set()  # a helper that left the group keeps the pipe: stop reading it
        pump.join()
        return returncode

    def see_through(self, started: Started | OSError) -> None:
        """Own a started pipeline until it ends and is recorded, or record why it never ran."""
        if isinstance(started, OSError):
            self.fail_to_start(started)
            return
        proc, writer, pump = started
        self._record_start(proc)
        returncode = self.supervise(proc, writer, pump)
        self.conclude(returncode, writer, pump.error)

    def settle_log(self) -> None:
        """A local log is complete once its writer is closed; a remote one is shipped here."""

    def hand_on(self) -> None:
        """Let the next queued run have the slot once this one is recorded: per executor."""
        raise NotImplementedError

    def conclude(self, returncode: int, writer: LogWriter, write_error: OSError | None) -> None:
        """Write the final line and the final record, then hand the slot on."""
        stopped_by = self.stopped_by if self.term_at is not None else None  # it reached the run
        status, reason, exit_code, signame = describe_exit(
            returncode, stopped_by, self.killed_after
        )
        if write_error is not None and self.failure is None:
            self.failure = log_write_failure(write_error, writer.path)
        if self.failure is not None:
            status, reason = "failed", self.failure
        else:
            reason = failure_reason(status, reason, exit_code, writer.path)
        with contextlib.suppress(OSError):  # a full disk: the record still says why
            writer.feed(f"\n# finished: {status} ({reason})\n".encode())
        progress = writer.progress
        with contextlib.suppress(OSError):
            writer.close()
        self.settle_log()  # the whole log is kept before anyone is told the run has ended

        end = Report(
            stage=progress.stage or "",
            status=status,
            reason=reason,
            exit_code=exit_code,
            signal=signame,
        )
        self._update(end, patient=True)
        self.hand_on()

    def fail_to_start(self, exc: OSError) -> None:
        """Record why the pipeline never ran, and free the slot for the next run."""
        reason = f"could not start: {exc}"
        self._update(Report(status="failed", reason=reason), patient=True)
        self.hand_on()


def settings_from_env() -> Settings:
    """The settings the launching Lab used, handed to the supervisor through its environment."""
    from pico_nb.settings import Settings

    return Settings(**json.loads(os.environ[SETTINGS_ENV]))
