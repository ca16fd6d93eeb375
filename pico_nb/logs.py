r"""Run logs: where a run's log lives, writing it from the pipeline's pipe, reading it back.

On-disk format
--------------
One file per run, ``<home>/logs/<user>/exp_<id>_run_<n>_<YYYYmmddTHHMMSSZ>.log``, created
exclusively and never rewritten. It is a transcript of the run's merged stdout and stderr, so
``cat`` on a terminal shows what the terminal showed:

* first the header lines the supervisor supplies (experiment, run, user, command), one per line;
* then the pipeline's bytes as they came (invalid UTF-8 kept as is), except that
  ``\r\n`` (and ``\r\r\n``...) is stored as ``\n``, and a line rewritten with ``\r`` (a tqdm
  bar) keeps only some of its states: while the line is live at most one state a second is
  written, and its final state always is. States stay separated by ``\r``, so such a line
  reads ``state\rstate\rfinal\n``; a ``\r`` is only written to mark earlier text superseded;
* when the writer is closed the file ends with ``\n``.

Readers take a line's text to be what follows its last ``\r``. While a run is live, the last
line may have no ``\n`` yet: that is the live line (usually the latest progress state), which
:func:`follow` reports as a progress event, not as a line.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from hashlib import sha256
from io import FileIO
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from pico_nb.errors import PermissionDenied
from pico_nb.file_modes import FILE_MODE, private_folder

COMMIT_INTERVAL = 1.0
"""Seconds between the states of a live ``\r`` line that reach the file."""

MIN_FREE_BYTES = 1 << 20
"""Free space a log folder needs before a run is started there."""
_MAX_HELD = 1 << 16  # bytes of one line kept in memory by a writer or a follower
_MAX_PARSE = 1 << 12  # longer lines are not progress lines and are not parsed
_READ_BLOCK = 1 << 20

_BANNER = re.compile(r"={3,}>\s*(?P<stage>.*?)\s*<={3,}")
_BAR = re.compile(r"(?P<pct>\d+(?:\.\d+)?)%\|")
_COUNT = re.compile(
    r"(?<![\w./])(?P<k>\d+(?:\.\d+)?[kMGTPEZY]?)/(?P<n>\d+(?:\.\d+)?[kMGTPEZY]?)(?![\w/])"
)
_LEFT = re.compile(r"<(?P<left>\d+(?::\d\d){1,2})\b")
_RATE = re.compile(r",\s*(?P<rate>\d+(?:\.\d+)?)(?P<unit>[^\s,\]/]*)/(?P<per>[^\s,\]]+)\]")
_SCALE = {s: 1000.0**i for i, s in enumerate("kMGTPEZY", start=1)}


@dataclass(frozen=True)
class Progress:
    """What a run reports about how far it is; every field may be unknown."""

    stage: str | None
    fraction: float | None
    eta_seconds: float | None
    text: str


@dataclass(frozen=True)
class LogEvent:
    """One complete line, or (``line`` None) a new state of the live line, and where to resume."""

    line: str | None
    progress: Progress | None
    offset: int


def log_path(home: Path, user: str, experiment_id: int, run_number: int, when: datetime) -> Path:
    """Name the log by run and start time so a re-run never lands on an earlier run's file."""
    if when.tzinfo is None:
        raise ValueError("the log's start time must be timezone-aware")
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"exp_{experiment_id}_run_{run_number}_{stamp}.log"
    return log_folder(home, user) / name


def log_folder(home: Path, user: str) -> Path:
    """The folder of one user's run logs."""
    return home / "logs" / _path_component(user)


def has_room(folder: Path) -> bool:
    """Whether a run's log can start there: on a full disk its first line would already fail."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free >= MIN_FREE_BYTES


def _path_component(name: str) -> str:
    """Escape reversibly, so two users never share a folder and no name climbs out of logs/."""
    if not name:
        raise ValueError("a user name is needed for the log folder")
    safe = quote(name, safe="")
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > 200:
        safe = f"{safe[:180]}-{sha256(name.encode()).hexdigest()[:16]}"
    return safe


class ProgressParser:
    """Turn stage banners, tqdm bars and k/N counters into a Progress, remembering the stage."""

    def __init__(self) -> None:
        self.current = Progress(None, None, None, "")

    def feed(self, line: str) -> Progress | None:
        """Return the new progress if the line reports any; other lines leave it as it was."""
        if "/" not in line and "<" not in line and "%" not in line:
            return None
        text = line.strip()
        if banner := _BANNER.search(text):
            found = Progress(banner["stage"], None, None, text)
        elif measured := _measure(text):
            found = Progress(self.current.stage, *measured, text)
        else:
            return None
        self.current = found
        return found


def _measure(text: str) -> tuple[float, float | None] | None:
    """Read fraction and ETA from a tqdm bar, or the fraction from a plain k/N counter."""
    bar = _BAR.search(text)
    count = _COUNT.search(text, bar.end() if bar else 0)
    done, total = (_number(count["k"]), _number(count["n"])) if count else (0.0, 0.0)
    if bar is None:
        return (done / total, None) if 0 <= done <= total and total > 0 else None
    fraction = done / total if 0 <= done <= total and total > 0 else float(bar["pct"]) / 100
    return min(fraction, 1.0), _eta(text, total - done)


def _eta(text: str, remaining: float) -> float | None:
    """Prefer tqdm's own remaining time; else work it out from the rate."""
    if left := _LEFT.search(text):
        return float(sum(int(part) * 60**i for i, part in enumerate(reversed(left[1].split(":")))))
    rate = _RATE.search(text)
    if rate is None or remaining <= 0 or float(rate["rate"]) <= 0:
        return None
    if rate["per"] == "s":
        return remaining / float(rate["rate"])
    return remaining * float(rate["rate"]) if rate["unit"] == "s" else None


def _number(value: str) -> float:
    """Undo tqdm's unit scaling (``1.2k``) so scaled counters give the right fraction."""
    return float(value[:-1]) * _SCALE[value[-1]] if value[-1] in _SCALE else float(value)


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
            self._commit(out, force=len(self._held) > _MAX_HELD)
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
def _opened(log: Path | LogSource, poll: float = 0.05) -> Iterator[LogSource]:
    """A path becomes a FileLog closed afterwards; a caller's own source stays open."""
    if not isinstance(log, Path):
        yield log
        return
    source = FileLog(log, poll)
    try:
        yield source
    finally:
        source.close()


def read_log(log: Path | LogSource, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
    """Return text from a byte offset and where to go on; a split character waits for later."""
    if limit < 4:
        raise ValueError("limit must hold a whole UTF-8 character (4 bytes)")
    with _opened(log) as source:
        data = source.read(offset, limit)
    data = data[: _whole_chars(data)]
    return data.decode(errors="replace"), offset + len(data)


def _whole_chars(data: bytes) -> int:
    """Length without a trailing incomplete UTF-8 sequence, so it is decoded whole next time."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4 if byte < 0xF8 else 1
            return len(data) - back if back < need else len(data)
    return len(data)


def tail_offset(log: Path | LogSource, lines: int) -> int:
    """Find where the last ``lines`` lines start, reading backwards so a big log costs little."""
    with _opened(log) as source:
        size = source.size()
        partial = size > 0 and source.read(size - 1, 1) != b"\n"
        wanted = max(lines, int(partial))
        pos = size - 1  # the last byte ends the last line; it starts none
        while wanted and pos > 0:
            start = max(0, pos - _READ_BLOCK)
            block = source.read(start, pos - start)
            found = len(block)
            while wanted and (found := block.rfind(b"\n", 0, found)) >= 0:
                wanted -= 1
            if not wanted:
                return start + found + 1
            pos = start
        return 0 if wanted else size


def follow(
    log: Path | LogSource,
    offset: int = 0,
    *,
    done: Callable[[], bool],
    poll: float = 0.05,
    from_tail: int | None = None,
) -> Iterator[LogEvent]:
    """Yield lines and live progress as they land, until the run is over and its log read."""
    with _opened(log, poll) as source:
        if from_tail is not None:
            offset = tail_offset(source, from_tail)
        lines = LineReader(offset)
        while True:
            finished = done()  # asked before reading, so nothing written before it is missed
            data = source.read(offset, _READ_BLOCK)
            if data:
                offset += len(data)
                yield from lines.feed(data)
            elif finished:
                yield from lines.end()
                return
            else:
                source.wait(offset)


def _visible(raw: bytes) -> str:
    """What is left on screen of a line: the text after its last ``\r``."""
    return raw.rstrip(b"\r").rpartition(b"\r")[2].decode(errors="replace")


class LineReader:
    """Cut a growing log into line events and live-line events, each with its resume offset."""

    def __init__(self, offset: int) -> None:
        self.offset = offset  # where the bytes not yet reported as lines start
        self._buf = b""
        self._live: str | None = None
        self._parser = ProgressParser()

    def feed(self, data: bytes) -> Iterator[LogEvent]:
        """Report the complete lines, then the live line if it changed."""
        buf = self._buf + data
        end = buf.rfind(b"\n") + 1
        for raw in buf[:end].split(b"\n")[:-1]:
            if len(raw) > _MAX_HELD:
                raw = yield from self._cut(raw)
            yield self._line(raw, len(raw) + 1)
        self._buf = yield from self._cut(buf[end:])
        live = _visible(self._buf[: _whole_chars(self._buf)])
        if self._buf and live != self._live:
            self._live = live
            progress = self._parser.feed(live) or replace(self._parser.current, text=live)
            yield LogEvent(None, progress, self.offset)

    def _cut(self, raw: bytes) -> Generator[LogEvent, None, bytes]:
        """Drop superseded states and report a line too long to hold in pieces; return the rest."""
        if len(raw) > _MAX_HELD and (cr := raw.rfind(b"\r")) > 0:
            self.offset += cr
            raw = raw[cr:]
        while len(raw) > _MAX_HELD:
            cut = _whole_chars(raw[:_MAX_HELD])
            yield self._line(raw[:cut], cut)
            raw = raw[cut:]
        return raw

    def end(self) -> Iterator[LogEvent]:
        """Report a last line the pipeline never ended (its supervisor died mid-line)."""
        if self._buf:
            yield self._line(self._buf, len(self._buf))
            self._buf = b""

    def _line(self, raw: bytes, size: int) -> LogEvent:
        """Make a line event and move the resume offset past it."""
        self.offset += size
        self._live = None
        text = _visible(raw)
        return LogEvent(text, self._parser.feed(text), self.offset)


ERROR_TAIL = 64 << 10
"""Bytes at the end of a failed run's log searched for the pipeline's own last error line."""
_ERROR_LINE = re.compile(r"^(?:error:\s*(?P<said>.+)|(?P<exc>[A-Za-z_.]*(?:Error|Exception): .+))$")


def last_error_line(path: Path) -> str | None:
    """The pipeline's last `error: …` (or Python exception) line, so a reason can name it."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - ERROR_TAIL))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        match = _ERROR_LINE.match(line.rsplit("\r", 1)[-1].strip())
        if match:
            return (match["said"] or match["exc"]).strip()[:300]
    return None


def failure_reason(status: str, reason: str, exit_code: int | None, path: Path) -> str:
    """'exit code 2' becomes 'exit code 2: crop_parameter: …' when the pipeline said why."""
    if status != "failed" or not exit_code:
        return reason
    said = last_error_line(path)
    return f"{reason}: {said}" if said else reason
