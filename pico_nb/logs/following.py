r"""Following a run's log as it grows: line events and live-line (progress) events.

Each event carries the byte offset to resume from, so any number of viewers can attach at any
time, from the start or from the tail. A line's text is what follows its last ``\r``; the last
line, while it has no ``\n`` yet, is the live line and is reported as progress, not as a line
(the format is in :mod:`pico_nb.logs.writer`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pico_nb.logs.progress_parsing import Progress, ProgressParser
from pico_nb.logs.reading import READ_BLOCK, tail_offset, whole_chars
from pico_nb.logs.sources import LogSource, opened
from pico_nb.logs.writer import MAX_HELD


@dataclass(frozen=True)
class LogEvent:
    """One complete line, or (``line`` None) a new state of the live line, and where to resume."""

    line: str | None
    progress: Progress | None
    offset: int


def follow(
    log: Path | LogSource,
    offset: int = 0,
    *,
    done: Callable[[], bool],
    poll: float = 0.05,
    from_tail: int | None = None,
) -> Iterator[LogEvent]:
    """Yield lines and live progress as they land, until the run is over and its log read."""
    with opened(log, poll) as source:
        if from_tail is not None:
            offset = tail_offset(source, from_tail)
        lines = LineReader(offset)
        while True:
            finished = done()  # asked before reading, so nothing written before it is missed
            data = source.read(offset, READ_BLOCK)
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
            if len(raw) > MAX_HELD:
                raw = yield from self._cut(raw)
            yield self._line(raw, len(raw) + 1)
        self._buf = yield from self._cut(buf[end:])
        live = _visible(self._buf[: whole_chars(self._buf)])
        if self._buf and live != self._live:
            self._live = live
            progress = self._parser.feed(live) or replace(self._parser.current, text=live)
            yield LogEvent(None, progress, self.offset)

    def _cut(self, raw: bytes) -> Generator[LogEvent, None, bytes]:
        """Drop superseded states and report a line too long to hold in pieces; return the rest."""
        if len(raw) > MAX_HELD and (cr := raw.rfind(b"\r")) > 0:
            self.offset += cr
            raw = raw[cr:]
        while len(raw) > MAX_HELD:
            cut = whole_chars(raw[:MAX_HELD])
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
