"""The detached process that owns one pipeline run: log, heartbeat, stop, and the final record.

Started as `python -m pico_nb.execution.supervisor RUN_ID` by whoever claimed the run's slot,
in its own session, so closing a tab, a kernel or a terminal never touches the run. It starts
the pipeline first, from the launch plan in its environment, and only then loads the database
stack, so a run starts in tens of milliseconds rather than after a second of imports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico_nb.logs import LogWriter, failure_reason

if TYPE_CHECKING:
    from pico_nb.db import Database
    from pico_nb.settings import Settings

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20  # a roomy pipe: a chatty pipeline rarely waits for the log writer
PROGRESS_INTERVAL = 1.0
WAKE = threading.Event()
"""Set by SIGTERM: a Lab on this host asks us to look for a stop request now."""
SETTINGS_ENV = "PICO_NB_SUPERVISOR_SETTINGS"  # the launcher's settings, as JSON
PLAN_ENV = "PICO_NB_SUPERVISOR_PLAN"  # argv, log and output paths, GPUs, header lines
_PRIVATE_ENV = (SETTINGS_ENV, PLAN_ENV)


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


Started = tuple[subprocess.Popen[bytes], LogWriter, threading.Thread]
"""The pipeline, its log writer and the thread copying its output."""


def start_pipeline(
    plan: dict[str, Any], on_write: Callable[[bytes], None] | None = None
) -> tuple[subprocess.Popen[bytes], LogWriter]:
    """Open the log and start the pipeline in its own process group, never through a shell."""
    writer = LogWriter(Path(plan["log_path"]), on_write=on_write)
    writer.header(plan["header"])
    try:
        Path(plan["output_path"]).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        if plan["gpus"] is not None:  # "" hides a GPU machine's GPUs from a CPU run
            env["CUDA_VISIBLE_DEVICES"] = plan["gpus"]
        proc = subprocess.Popen(
            plan["argv"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # its own group, inside our session: see local.reconcile
            cwd=plan["output_path"],
            env=env,
        )
        with contextlib.suppress(OSError):  # Linux only; the default 64 KiB works too
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore
    except OSError as exc:
        writer.feed(f"# could not start: {exc}\n".encode())
        writer.close()
        raise
    return proc, writer


def launch(
    plan: dict[str, Any], on_write: Callable[[bytes], None] | None = None
) -> Started | OSError:
    """Start the pipeline and copy its output from the first byte, or say why it could not."""
    try:
        proc, writer = start_pipeline(plan, on_write)
    except OSError as exc:
        return exc
    pump = threading.Thread(target=copy_output, args=(proc, writer), daemon=True)
    pump.start()
    return proc, writer, pump


def copy_output(proc: subprocess.Popen[bytes], writer: LogWriter) -> None:
    """Copy the pipeline's output to the log from the first byte, on a thread of its own."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if not selector.select(timeout=0.5):
                writer.tick()  # a quiet pipe: let a held progress state reach the file
                continue
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            writer.feed(data)
    proc.stdout.close()


class Supervisor:
    """Runs one pipeline process to its end and keeps the database told."""

    def __init__(
        self, db: Database, settings: Settings, run_id: int, wake: threading.Event = WAKE
    ) -> None:
        self.db, self.settings, self.run_id, self.wake = db, settings, run_id, wake
        self.stopped_by: str | None = None
        self.term_at: float | None = None
        self.killed_after: float | None = None

    def _record_start(self, proc: subprocess.Popen[bytes]) -> None:
        """Tell the database which processes now own the run."""
        from pico_nb.models import Run

        with self.db.write() as session:
            run = session.get(Run, self.run_id)
            run.supervisor_pid, run.pid, run.pgid = os.getpid(), proc.pid, proc.pid

    def _report(self, writer: LogWriter) -> None:
        """Heartbeat with the latest progress, and pick up a stop request from any host."""
        from pico_nb.models import Run, utcnow

        progress = writer.progress
        with self.db.write() as session:
            run = session.get(Run, self.run_id)
            run.heartbeat_at = utcnow()
            if progress.stage:
                run.stage = progress.stage[:200]
            run.progress = progress.fraction
            run.eta_seconds = progress.eta_seconds
            self.stopped_by = self.stopped_by or run.stop_requested_by

    def _enforce_stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the whole group at once, SIGKILL once the grace period is over."""
        from pico_nb.execution import local

        if not self.stopped_by or proc.poll() is not None:
            return
        now = time.monotonic()
        if self.term_at is None:
            self.term_at = now
            local.signal_group(proc.pid, signal.SIGTERM)
        elif now - self.term_at >= self.settings.stop_grace_seconds and self.killed_after is None:
            self.killed_after = self.settings.stop_grace_seconds
            local.signal_group(proc.pid, signal.SIGKILL)

    def supervise(
        self, proc: subprocess.Popen[bytes], writer: LogWriter, pump: threading.Thread
    ) -> int:
        """Heartbeat, report progress and enforce stops until the pipeline ends and is logged."""
        last_beat = last_progress = 0.0
        seen_progress = None
        while pump.is_alive() or proc.poll() is None:
            pump.join(timeout=0.2)
            if not pump.is_alive():  # output closed; the pipeline may still be exiting
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
        return proc.wait()

    def see_through(self, started: Started | OSError) -> None:
        """Own a started pipeline until it ends and is recorded, or record why it never ran."""
        from pico_nb.execution import local

        if isinstance(started, OSError):
            self.fail_to_start(started)
            return
        proc, writer, pump = started
        self._record_start(proc)
        returncode = self.supervise(proc, writer, pump)
        local.signal_group(proc.pid, signal.SIGKILL)  # leftovers of the pipeline die with it
        self.conclude(returncode, writer)

    def settle_log(self) -> None:
        """A local log is complete once its writer is closed; a remote one is shipped here."""

    def hand_on(self) -> None:
        """Let the next queued run have the slot: locally, whoever frees it claims it."""
        from pico_nb.execution import local

        local.dispatch(self.db, self.settings)

    def conclude(self, returncode: int, writer: LogWriter) -> None:
        """Write the final line and the final record, then hand the slot on."""
        from pico_nb.execution import local
        from pico_nb.models import Run, utcnow

        status, reason, exit_code, signame = describe_exit(
            returncode, self.stopped_by, self.killed_after
        )
        reason = failure_reason(status, reason, exit_code, writer.path)
        writer.feed(f"\n# finished: {status} ({reason})\n".encode())
        progress = writer.progress
        writer.close()
        self.settle_log()  # the whole log is kept before anyone is told the run has ended
        with self.db.write() as session:
            run = session.get(Run, self.run_id)
            if progress.stage:
                run.stage = progress.stage[:200]
            if status == "completed":
                run.progress = 1.0
            local.finish(
                run, status, reason, exit_code=exit_code, signal=signame, heartbeat_at=utcnow()
            )
        self.hand_on()

    def fail_to_start(self, exc: OSError) -> None:
        """Record why the pipeline never ran, and free the slot for the next run."""
        from pico_nb.execution import local
        from pico_nb.models import Run

        with self.db.write() as session:
            local.finish(session.get(Run, self.run_id), "failed", f"could not start: {exc}")
        self.hand_on()


def main(argv: list[str] | None = None) -> int:
    """Start the pipeline at once, then load the database stack and supervise it to the end."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: WAKE.set())  # before anything else
    started = launch(json.loads(os.environ[PLAN_ENV]))  # output flows while the stack loads
    from pico_nb.db import open_database
    from pico_nb.execution import local

    settings = local.settings_from_env()
    supervisor = Supervisor(open_database(settings.effective_database_url), settings, int(args[0]))
    supervisor.see_through(started)
    return 1 if isinstance(started, OSError) else 0


if __name__ == "__main__":
    sys.exit(main())
