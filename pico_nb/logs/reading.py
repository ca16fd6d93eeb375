"""Reading a run's log back: text from a byte offset, and where its last lines start.

Offsets are byte offsets into the file (or source) as written, so a reader can stop anywhere
and resume there; text is cut only between whole UTF-8 characters.
"""

from __future__ import annotations

from pathlib import Path

from pico_nb.logs.sources import LogSource, opened

READ_BLOCK = 1 << 20
"""Bytes asked of a source at once, by a backwards search or a follower."""


def read_log(log: Path | LogSource, offset: int = 0, limit: int = 1 << 20) -> tuple[str, int]:
    """Return text from a byte offset and where to go on; a split character waits for later."""
    if limit < 4:
        raise ValueError("limit must hold a whole UTF-8 character (4 bytes)")
    with opened(log) as source:
        data = source.read(offset, limit)
    data = data[: whole_chars(data)]
    return data.decode(errors="replace"), offset + len(data)


def whole_chars(data: bytes) -> int:
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
    with opened(log) as source:
        size = source.size()
        partial = size > 0 and source.read(size - 1, 1) != b"\n"
        wanted = max(lines, int(partial))
        pos = size - 1  # the last byte ends the last line; it starts none
        while wanted and pos > 0:
            start = max(0, pos - READ_BLOCK)
            block = source.read(start, pos - start)
            found = len(block)
            while wanted and (found := block.rfind(b"\n", 0, found)) >= 0:
                wanted -= 1
            if not wanted:
                return start + found + 1
            pos = start
        return 0 if wanted else size
