"""Where a run's log bytes are read from by offset: the interface, and a file on this machine.

A remote run's log (shipped to the database and streamed live) is another
:class:`LogSource`, in :mod:`pico_nb.logstream`; readers take either, or a plain path.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import FileIO
from pathlib import Path
from typing import Protocol

from pico_nb.contract.errors import PermissionDenied


class LogSource(Protocol):
    """Where a run's log bytes can be read by offset: a local file, or a remote run's store."""

    def read(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes from ``offset``; fewer (or none) at the end so far."""
        ...

    def size(self) -> int:
        """Bytes written so far."""
        ...

    def wait(self, offset: int) -> None:
        """Return when bytes past ``offset`` may have arrived, or after a short while."""
        ...

    def close(self) -> None:
        """Let go of what reading held open."""
        ...


class FileLog:
    """A log file on this machine, kept open between reads so following stays cheap."""

    def __init__(self, path: Path, poll: float = 0.05) -> None:
        self.path, self.poll = path, poll
        self._file: FileIO | None = None

    def read(self, offset: int, limit: int) -> bytes:
        if self._file is None:
            try:  # never through a link: the log is re-checked at every open
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:  # the supervisor has not created it yet
                return b""
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PermissionDenied("the run's log was replaced by a link") from None
                raise
            self._file = FileIO(fd, "rb")
        if offset >= os.fstat(self._file.fileno()).st_size:  # past the end: nothing yet
            return b""
        self._file.seek(offset)
        return self._file.read(limit) or b""

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait(self, offset: int) -> None:
        time.sleep(self.poll)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextmanager
def opened(log: Path | LogSource, poll: float = 0.05) -> Iterator[LogSource]:
    """A path becomes a FileLog closed afterwards; a caller's own source stays open."""
    if not isinstance(log, Path):
        yield log
        return
    source = FileLog(log, poll)
    try:
        yield source
    finally:
        source.close()
