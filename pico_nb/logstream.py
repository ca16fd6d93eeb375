"""Logs of runs on remote workers: live through a Redis stream, kept for good in the database.

A worker writes the run's log to a spool file on its own disk, as the local executor does, and
a :class:`LogShipper` copies the same bytes, in order, to two places:

* a Redis stream per run (``pico_nb:<lab identity>:log:<run id>``, so labs sharing one Redis
  never mix), one entry per write, whose entry id is ``<byte offset>-1``, so a reader can ask
  for "the bytes from offset N" directly. It is trimmed to what the database does not hold
  yet (plus one flush of slack) and capped at :data:`STREAM_ENTRIES` entries of at most
  :data:`ENTRY_BYTES`, so its size stays bounded; a finished run's stream expires after
  :data:`STREAM_TTL` seconds.
* the ``log_chunks`` table, every heartbeat and at the end: the complete log is there before
  the run is recorded as finished, so history never depends on the worker or on Redis.

:class:`RemoteLog` reads a run's log by byte offset from the database first and the stream
for the newest bytes, and blocks on the stream while it waits, so followers see lines within
milliseconds. Without Redis it reads the database alone, a heartbeat behind.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from pico_nb.models import LabIdentity, LogBytes

if TYPE_CHECKING:
    import redis

    from pico_nb.db import Database

log = logging.getLogger(__name__)

ENTRY_BYTES = 1 << 16
STREAM_ENTRIES = 512
STREAM_TTL = 600
_WAIT_MS = 250


def stream_key(db: Database, run_id: int) -> str:
    """The Redis key of a run's live log, named after the lab's database."""
    return f"pico_nb:{lab_identity(db)}:log:{run_id}"


@cache
def lab_identity(db: Database) -> str:
    """The random name the lab's database was given when it was made (it never changes)."""
    with db.read() as session:
        return session.scalar(select(LabIdentity.identity)) or "lab"


@cache
def connect(url: str) -> redis.Redis | None:
    """The process's Redis client for live logs (thread-safe, pooled), or None without one."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def _entry_id(offset: int) -> str:
    """Stream ids are byte offsets, so ids grow with the log and XRANGE seeks by offset."""
    return f"{offset}-1"


def _offset(entry_id: bytes) -> int:
    """The byte offset a stream entry starts at."""
    return int(entry_id.split(b"-", 1)[0])


def _pieces(entries: Iterable[tuple[object, object]] | None) -> list[tuple[int, bytes]]:
    """(start offset, bytes) of XRANGE entries, which come as bytes (no decode_responses)."""
    out = []
    for entry_id, fields in entries or ():
        data = fields.get(b"d") if isinstance(fields, dict) else None
        if isinstance(entry_id, bytes) and isinstance(data, bytes):
            out.append((_offset(entry_id), data))
    return out


def db_read(db: Database, run_id: int, offset: int, limit: int) -> bytes:
    """Contiguous bytes from ``offset`` out of the central chunks."""
    with db.read() as session:
        rows = session.execute(
            select(LogBytes.start, LogBytes.data)
            .where(LogBytes.run_id == run_id, LogBytes.stop > offset)
            .order_by(LogBytes.start)
            .limit(64)
        ).all()
    return _contiguous(rows, offset, limit)


def db_size(db: Database, run_id: int) -> int:
    """Bytes kept centrally so far."""
    with db.read() as session:
        return session.scalar(select(func.max(LogBytes.stop)).where(LogBytes.run_id == run_id)) or 0


def keep_spool(db: Database, run_id: int, spool: Path) -> None:
    """Keep centrally the bytes of a run's spool copy that the database does not hold yet.

    A worker that died left them only in its spool (and in a stream that may not survive);
    its next life calls this before it records the run as lost.
    """
    start = db_size(db, run_id)
    with open(spool, "rb") as file:
        file.seek(start)
        while data := file.read(STREAM_ENTRIES * ENTRY_BYTES):
            with db.write() as session:
                session.add(LogBytes(run_id=run_id, start=start, stop=start + len(data), data=data))
            start += len(data)


def keep_bytes(
    db: Database, client: redis.Redis | None, run_id: int, start: int, data: bytes
) -> int:
    """Keep bytes a job sent from ``start`` (the part not kept yet, so a retry is harmless)
    and wake the run's followers; the size now kept. A gap is not filled: the sender resends
    from the size it is told."""
    with db.write() as session:
        size = session.scalar(select(func.max(LogBytes.stop)).where(LogBytes.run_id == run_id)) or 0
        fresh = data[size - start :] if start <= size else b""
        if fresh:
            session.add(LogBytes(run_id=run_id, start=size, stop=size + len(fresh), data=fresh))
    if fresh and client is not None:
        with contextlib.suppress(Exception):  # Redis away: followers read the database
            client.xadd(
                stream_key(db, run_id),
                {"d": fresh[:ENTRY_BYTES]},
                id=_entry_id(size),
                maxlen=STREAM_ENTRIES,
                approximate=True,
            )
    return size + len(fresh)


def expire_streams(db: Database, client: redis.Redis | None, run_ids: list[int]) -> None:
    """Let the live logs of runs that ended without their worker expire like finished ones."""
    if client is None:
        return
    for run_id in run_ids:
        with contextlib.suppress(Exception):  # Redis away: nothing of it is left to expire
            client.expire(stream_key(db, run_id), STREAM_TTL)


def _contiguous(pieces: Any, offset: int, limit: int) -> bytes:
    """Join (start, data) pieces in order from ``offset``, stopping at a gap or the limit."""
    out: list[bytes] = []
    pos, left = offset, limit
    for start, data in pieces:
        if start > pos or left <= 0:
            break
        part = data[pos - start : pos - start + left]
        out.append(part)
        pos += len(part)
        left -= len(part)
    return b"".join(out)


class RemoteLog:
    """A remote run's log as a :class:`pico_nb.logs.LogSource`: database, then live stream."""

    def __init__(self, db: Database, client: redis.Redis | None, run_id: int) -> None:
        self.db, self.client, self.run_id = db, client, run_id
        self.key = stream_key(db, run_id)
        self._gap = False

    def read(self, offset: int, limit: int) -> bytes:
        data = db_read(self.db, self.run_id, offset, limit)
        if data or self.client is None:
            return data
        try:
            return self._stream_read(offset, limit)
        except Exception as exc:  # Redis away: the database alone still has the log
            log.debug("live log of run %s unavailable: %s", self.run_id, exc)
            return b""

    def _stream_read(self, offset: int, limit: int) -> bytes:
        """Bytes from the stream entry holding ``offset`` onwards."""
        assert self.client is not None
        before = _pieces(self.client.xrevrange(self.key, _entry_id(offset), "-", count=1))
        first = before[0][0] if before else offset
        pieces = _pieces(self.client.xrange(self.key, _entry_id(first), "+", count=64))
        data = _contiguous(pieces, offset, limit)
        # Entries past a hole the database has not filled yet: wait for its next flush.
        self._gap = not data and any(start > offset for start, _ in pieces)
        return data

    def size(self) -> int:
        size = db_size(self.db, self.run_id)
        if self.client is not None:
            with contextlib.suppress(Exception):
                last = _pieces(self.client.xrevrange(self.key, "+", "-", count=1))
                if last:
                    start, data = last[0]
                    size = max(size, start + len(data))
        return size

    def close(self) -> None:
        """Nothing to let go: the Redis connection belongs to the Lab."""

    def wait(self, offset: int) -> None:
        if self.client is None or self._gap:
            time.sleep(0.5 if self.client is None else 0.1)
            return
        try:  # ids above "<offset>-0" are entries starting at or after offset
            self.client.xread({self.key: f"{offset}-0"}, count=1, block=_WAIT_MS)
        except Exception:
            time.sleep(0.5)


class LogShipper:
    """Copy a run's log bytes to the live stream at once and to the database each heartbeat."""

    def __init__(
        self, db: Database, client: redis.Redis | None, run_id: int, flush_seconds: float
    ) -> None:
        self.db, self.client, self.run_id = db, client, run_id
        self.key = stream_key(db, run_id)
        self.flush_seconds = flush_seconds
        self._cond = threading.Condition()
        self._incoming: list[bytes] = []
        self._closing = False
        self._shipped = 0  # bytes sent to the stream (or past it, when Redis is away)
        self._pending: list[tuple[int, bytes]] = []  # shipped, not yet in the database
        self._trim_to = 0
        self._redis_ok = True
        self._thread = threading.Thread(target=self._loop, name=f"ship-{run_id}", daemon=True)
        self._thread.start()

    def append(self, data: bytes) -> None:
        """Take bytes the log writer just wrote; called on the output thread, never blocks."""
        with self._cond:
            self._incoming.append(data)
            self._cond.notify()

    def close(self, timeout: float = 60.0) -> None:
        """Ship and keep everything, then let the stream expire: the log is now central."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        self._flush(final=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.expire(self.key, STREAM_TTL)

    def _loop(self) -> None:
        """Ship as bytes arrive; keep them centrally every ``flush_seconds``."""
        flushed_at = time.monotonic()
        while True:
            with self._cond:
                if not self._incoming and not self._closing:
                    self._cond.wait(timeout=self.flush_seconds)
                batch, self._incoming = self._incoming, []
                closing = self._closing
            if batch:
                self._ship(b"".join(batch))
            if time.monotonic() - flushed_at >= self.flush_seconds:
                with contextlib.suppress(Exception):  # retried next time; close() insists
                    self._flush()
                flushed_at = time.monotonic()
            if closing and not batch:
                return

    def _ship(self, data: bytes) -> None:
        """Send to the stream in bounded entries and remember them for the database."""
        for at in range(0, len(data), ENTRY_BYTES):
            piece = data[at : at + ENTRY_BYTES]
            self._pending.append((self._shipped, piece))
            if self.client is not None:
                try:
                    self.client.xadd(
                        self.key,
                        {"d": piece},
                        id=_entry_id(self._shipped),
                        maxlen=STREAM_ENTRIES,
                        approximate=True,
                    )
                    self._redis_ok = True
                except Exception as exc:
                    if self._redis_ok:  # say it once; the database still gets every byte
                        log.warning("live log of run %s not streamed: %s", self.run_id, exc)
                    self._redis_ok = False
            self._shipped += len(piece)

    def _flush(self, final: bool = False) -> None:
        """Keep pending bytes centrally as one chunk; retry a few times at the end."""
        pending = self._pending
        if not pending:
            return
        start, data = pending[0][0], b"".join(p for _, p in pending)
        for attempt in range(5 if final else 1):
            try:
                with self.db.write() as session:
                    session.add(
                        LogBytes(run_id=self.run_id, start=start, stop=start + len(data), data=data)
                    )
                break
            except Exception:
                if attempt == (4 if final else 0):
                    raise
                time.sleep(1 + attempt)
        del pending[: len(pending)]
        if self.client is not None:  # readers behind the database's end read the database
            with contextlib.suppress(Exception):
                self.client.xtrim(self.key, minid=_entry_id(self._trim_to), approximate=False)
        self._trim_to = start + len(data)  # one flush of slack for readers just behind
