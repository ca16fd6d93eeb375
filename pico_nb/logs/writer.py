r"""Writing a run's log from the pipeline's pipe, with ``\r`` progress lines collapsed.

On-disk format
--------------
One file per run (named by :func:`pico_nb.logs.locations.log_path`), created exclusively and
never rewritten. It is a transcript of the run's merged stdout and stderr, so ``cat`` on a
terminal shows what the terminal showed:

* first the header lines the supervisor supplies (experiment, run, user, command), one per line;
* then the pipeline's bytes as they came (invalid UTF-8 kept as is), except that
  ``\r\n`` (and ``\r\r\n``...) is stored as ``\n``, and a line rewritten with ``\r`` (a tqdm
  bar) keeps only some of its states: while the line is live at most one state a second is
  written, and its final state always is. States stay separated by ``\r``, so such a line
  reads ``state\rstate\rfinal\n``; a ``\r`` is only written to mark earlier text superseded;
* when the writer is closed the file ends with ``\n``.

Readers take a line's text to be what follows its last ``\r``. While a run is live, the last
line may have no ``\n`` yet: that is the live line (usually the latest progress state), which
:func:`pico_nb.logs.following.follow` reports as a progress event, not as a line.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from pico_nb.file_modes import FILE_MODE, private_folder
from pico_nb.logs.progress_parsing import Progress, ProgressParser

COMMIT_INTERVAL = 1.0
"""Seconds between the states of a live ``\r`` line that reach the file."""

MAX_HELD = 1 << 16
"""Bytes of one line held in memory: past it a writer writes the line out and a follower cuts it."""
_MAX_PARSE = 1 << 12  # longer lines are not progress lines and are not parsed


class LogWriter:
    """Write one run's log from raw pipe chunks, collapsing ``\r`` lines (see the module doc)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        private_folder(path.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd = os.open(path, flags, FILE_MODE)
        self.path = path
        self._clock = clock
        self._parser = ProgressParser()
        self._held = b""  # newest state of the live line, not in the file yet; starts with \r
        self._crs = b""  # trailing \r not in the file yet: a \r\n may be on its way
        self._mid_line = False  # the file does not end with \n
        self._line = b""  # visible end of the unfinished line, for parsing its progress
        self._unparsed: tuple[bytes, bytes, int] | None = None  # a last line left for later
        self._committed_at = -math.inf
        self._closed = False
        self._on_write = on_write  # sees exactly the file's bytes, in order: a remote copy

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def progress(self) -> Progress:
        """The latest progress; a plain chunk's last line is parsed here, once, not per chunk."""
        self._settle()
        return self._parser.current

    def header(self, lines: list[str]) -> None:
        """Write the run's identity first, so a downloaded log explains itself."""
        self._write(["".join(" ".join(line.splitlines()) + "\n" for line in lines).encode()])

    def feed(self, data: bytes) -> None:
        """Take one read of the pipe and write it at once, so followers see it live."""
        if self._held or self._crs or b"\r" in data:
            self._write(self._collapse(self._held + self._crs + data))
        elif data:
            self._passed(data)  # scanned first, so the write copies it from the cache
            if (written := os.write(self._fd, data)) < len(data):
                self._write_rest(data, written)
            if self._on_write:
                self._on_write(data)

    def tick(self) -> None:
        """Write a held progress state once its second is up; call it when the pipe is quiet."""
        out: list[bytes] = []
        self._commit(out)
        self._write(out)

    def close(self) -> None:
        """Write the final state and end the last line, so readers see every line complete."""
        if self._closed:
            return
        out: list[bytes] = []
        self._commit(out, force=True)
        if self._mid_line:
            out.append(b"\n")
        try:
            self._write(out)
        finally:  # a full disk must not leave the file open
            os.close(self._fd)
            self._closed = True

    def _collapse(self, data: bytes) -> list[bytes]:
        """Keep each ``\r`` line's final state and hold back the newest state of the live one."""
        data = _crs_before_newlines(data)
        body = data.rstrip(b"\r")  # a \r supersedes nothing until text follows it
        data, self._crs, self._held = body, data[len(body) :], b""
        end = data.rfind(b"\n") + 1
        head, tail = data[:end], data[end:]
        out: list[bytes] = []
        if head:
            restart = head.find(b"\r", 0, head.find(b"\n")) >= 0
            if restart and self._mid_line:
                out.append(b"\r")
            out.extend(_drop_superseded(head))
            self._passed(head, head.rfind(b"\r"))
        cr = tail.rfind(b"\r")
        if cr < 0:
            out.append(tail)
            if tail:
                self._passed(tail)
        else:
            self._held = tail[cr:]
            self._line = tail[max(cr + 1, len(tail) - _MAX_PARSE - 1) :]
            if len(tail) - cr <= _MAX_PARSE:
                self._parse(self._line)
            self._commit(out, force=len(self._held) > MAX_HELD)
        return out

    def _commit(self, out: list[bytes], *, force: bool = False) -> None:
        """Put the held state in the file if a second has passed since the last one."""
        now = self._clock()
        if self._held and (force or now - self._committed_at >= COMMIT_INTERVAL):
            out.append(self._held if self._mid_line else self._held[1:])
            self._held = b""
            self._mid_line = True
            self._committed_at = now

    def _passed(self, data: bytes, last_cr: int = -1) -> None:
        """Track the line state and progress through written bytes without a loop per line."""
        end = data.rfind(b"\n") + 1
        if end:
            self._note(data, end, last_cr)
        tail = data[max(end, len(data) - _MAX_PARSE - 1) :]
        self._line = tail if end else (self._line + tail)[-_MAX_PARSE - 1 :]
        self._mid_line = bool(tail)

    def _note(self, data: bytes, end: int, last_cr: int) -> None:
        """Parse only lines that can move progress, in order; a plain chunk's last one waits."""
        if last_cr < 0 and data.find(b"<", 0, end) < 0 and b"<" not in self._line:
            self._unparsed = (self._line, data, end)
            return
        marks = {end - 1, last_cr, max(data.rfind(b"<==", 0, end), 0)}
        for start in sorted({data.rfind(b"\n", 0, at) + 1 for at in marks if at >= 0}):
            self._parse_line(data, start, self._line)

    def _settle(self) -> None:
        """Parse the last line left for later, before anything newer is parsed."""
        if self._unparsed:
            prefix, data, end = self._unparsed
            self._unparsed = None
            self._parse_line(data, data.rfind(b"\n", 0, end - 1) + 1, prefix)

    def _parse_line(self, data: bytes, start: int, prefix: bytes) -> None:
        """Parse the line at ``start`` (after ``prefix`` if it starts the chunk) if it is short."""
        stop = data.find(b"\n", start)
        prefix = b"" if start else prefix
        if (cr := data.rfind(b"\r", start, stop)) >= 0:  # only what follows it is on screen
            start, prefix = cr, b""
        if stop - start + len(prefix) <= _MAX_PARSE:
            self._parse(prefix + data[start:stop])

    def _parse(self, line: bytes) -> None:
        """Parse what is on screen, decoded leniently: a stray byte must not stop tracking."""
        self._settle()
        self._parser.feed(line.rpartition(b"\r")[2].decode(errors="replace"))

    def _write(self, pieces: list[bytes]) -> None:
        """Write all pieces in one system call, unbuffered, so a follower never waits."""
        if (written := os.writev(self._fd, pieces)) < sum(map(len, pieces)):
            self._write_rest(b"".join(pieces), written)
        if self._on_write and (data := b"".join(pieces)):
            self._on_write(data)

    def _write_rest(self, data: bytes, written: int) -> None:
        """Finish a short write (a full disk, a signal), which regular files rarely do."""
        rest = memoryview(data)[written:]
        while rest:
            rest = rest[os.write(self._fd, rest) :]


def _crs_before_newlines(data: bytes) -> bytes:
    """Store ``\r\n`` (and ``\r\r\n``...) as ``\n``, in one pass however many ``\r`` there are."""
    if b"\r\n" not in data:
        return data
    pieces, pos = [], 0
    while (cr := data.find(b"\r\n", pos)) >= 0:
        pieces.append(data[pos:cr].rstrip(b"\r"))
        pos = cr + 1  # keep the \n
    pieces.append(data[pos:])
    return b"".join(pieces)


def _drop_superseded(head: bytes) -> list[bytes]:
    """Of each complete line, keep only the text after its last ``\r``, in linear time.

    ``head`` ends with ``\n``. Each step jumps from one ``\r`` line to the next with ``find``,
    so lines without ``\r`` are copied in bulk and no byte is looked at twice.
    """
    pieces: list[bytes] = []
    pos = 0  # start of the text not yet copied
    cr = head.find(b"\r")
    while cr >= 0:
        nl = head.find(b"\n", cr)
        line_start = head.rfind(b"\n", pos, cr) + 1 or pos
        pieces.append(head[pos:line_start])
        pos = head.rfind(b"\r", cr, nl) + 1
        cr = head.find(b"\r", nl)
    pieces.append(head[pos:])
    return pieces
