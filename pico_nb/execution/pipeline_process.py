"""The pipeline's process: started in its own process group (never through a shell) with its
log open, and its merged output copied to the log from the first byte.

The supervisor starts the pipeline through here before it loads the database stack, so this
module imports only the standard library, `runas` and `logs`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pico_nb.execution.runas import pipeline_command
from pico_nb.logs import LogWriter

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20  # a roomy pipe: a chatty pipeline rarely waits for the log writer
QUIET_SECONDS = 0.5  # the output thread's longest wait before it looks at the clock again


def log_write_failure(exc: OSError, path: Path) -> str:
    """The reason a run failed because its log could not be written, naming the file."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on device while writing the log ({path})"
    return f"could not write the log ({path}): {exc.strerror or exc}"


class OutputCopier(threading.Thread):
    """Copies the pipeline's output to the log from the first byte, until told to halt.

    A write that fails (a full disk) ends the copying and is kept in ``error`` for the
    supervisor, which then stops the pipeline rather than let it block on a full pipe.
    """

    def __init__(self, proc: subprocess.Popen[bytes], writer: LogWriter) -> None:
        super().__init__(daemon=True)
        self.proc, self.writer = proc, writer
        self.halt = threading.Event()
        self.error: OSError | None = None

    def run(self) -> None:
        """Copy until the pipe closes, the supervisor says halt, or a write fails."""
        pipe = _output_pipe(self.proc)
        fd = pipe.fileno()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while not self.halt.is_set():
                    if not selector.select(timeout=QUIET_SECONDS):
                        self.writer.tick()  # a quiet pipe: let a held progress state land
                        continue
                    data = os.read(fd, READ_SIZE)
                    if not data:
                        break
                    self.writer.feed(data)
        except OSError as exc:
            self.error = exc
        finally:
            pipe.close()


Started = tuple[subprocess.Popen[bytes], LogWriter, OutputCopier]
"""The pipeline, its log writer and the thread copying its output."""


def _output_pipe(proc: subprocess.Popen[bytes]) -> IO[bytes]:
    """The pipeline's merged stdout and stderr, which spawn_pipeline always pipes."""
    if proc.stdout is None:
        raise RuntimeError(f"pipeline process {proc.pid} was started without an output pipe")
    return proc.stdout


def spawn_pipeline(argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The one place the pipeline process is created: own group, merged output, no shell."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        process_group=0,  # its own group, inside our session: see bookkeeping.reconcile
        cwd=cwd,
        env=env,
    )


def start_pipeline(
    plan: dict[str, Any], on_write: Callable[[bytes], None] | None = None
) -> tuple[subprocess.Popen[bytes], LogWriter]:
    """Open the log and start the pipeline in its own process group, never through a shell."""
    log = Path(plan["log_path"])
    try:
        writer = LogWriter(log, on_write=on_write)
    except OSError as exc:
        raise OSError(log_write_failure(exc, log)) from exc
    try:
        writer.header(plan["header"])
        environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv, env, cwd = pipeline_command(plan, environ)  # allow-listed env; as its owner
        proc = spawn_pipeline(argv, cwd, env)
        with contextlib.suppress(OSError):  # Linux only; the default 64 KiB works too
            fcntl.fcntl(_output_pipe(proc).fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            exc = OSError(log_write_failure(exc, log))
        with contextlib.suppress(OSError):
            writer.feed(f"# could not start: {exc}\n".encode())
        writer.close()
        raise exc from None
    return proc, writer


def launch(
    plan: dict[str, Any], on_write: Callable[[bytes], None] | None = None
) -> Started | OSError:
    """Start the pipeline and copy its output from the first byte, or say why it could not."""
    try:
        proc, writer = start_pipeline(plan, on_write)
    except OSError as exc:
        return exc
    pump = OutputCopier(proc, writer)
    pump.start()
    return proc, writer, pump


def process_start(pid: int) -> float | None:
    """When a process started: with its pid, what identifies it (pids are reused)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
