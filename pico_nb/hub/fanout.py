"""Live logs for many viewers: each followed run is watched once and fanned out on the loop.

However many people watch a run, the pico service reads its log once. A :class:`Feed` holds
the run's log source and how far it has been read; :class:`Fanout` wakes a feed when its log
grows — one ``stat`` of each followed local log every :data:`TICK_SECONDS`, and one thread
blocking on the Redis streams of every followed run on a worker — and asks the database once
every :data:`STATUS_SECONDS` which followed runs are still going, for all of them in one
query. New bytes go to every :class:`Follower` of the run, which cuts them into lines from its
own offset; a follower that joins behind the live edge (replaying from the start) reads its
own way up to it at the pace its viewer takes the lines. A run nobody follows costs nothing;
a silent one costs a ``stat`` per tick.

Back-pressure: a follower holds at most :data:`FOLLOWER_BUFFER` bytes of events not yet sent;
past that it is told to resume from the offset after the last event its viewer got (the client
reconnects from there), so a slow viewer cannot grow the service's memory. Each member may
have ``max_streams_per_user`` streams open at once; one more is refused with a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from pico_nb import logs, logstream
from pico_nb.contract.errors import PicoError
from pico_nb.lab import Lab, log_line
from pico_nb.schemas import LogLine, RunRecord

log = logging.getLogger("pico_nb.hub.fanout")

TICK_SECONDS = 0.05
STATUS_SECONDS = 0.5
READ_BLOCK = 1 << 18
FOLLOWER_BUFFER = 1 << 20
REDIS_BLOCK_MS = 100  # short, so a newly followed run is in the next read at once
_EVENT_OVERHEAD = 64  # bytes an event takes besides its text, for the buffer's bound


class TooManyStreams(PicoError):
    """A member already follows as many live logs as one member may."""

    status = 429


class Follower:
    """One viewer's place in a run's log and the events waiting to be sent to it."""

    def __init__(self, feed: Feed, offset: int) -> None:
        self.feed = feed
        self.consumed = offset  # log bytes already cut into events
        self.resume_at = offset  # where the viewer resumes after the last event it was sent
        self.overflowed = False
        self.gone = False  # the viewer closed the stream
        self.ready = asyncio.Event()
        self._reader = logs.LineReader(offset)
        self._pending: deque[LogLine] = deque()
        self._pending_bytes = 0

    @property
    def behind(self) -> bool:
        """The feed has read bytes this follower has not seen: it reads them itself."""
        return self.consumed < self.feed.end

    def offer(self, start: int, data: bytes) -> None:
        """Take the feed's new bytes where they continue this follower's log; always wake it."""
        skip = self.consumed - start
        if 0 <= skip < len(data):
            self.take(data[skip:])
        self.ready.set()

    def take(self, data: bytes) -> None:
        """Cut bytes into events to send; a follower past its buffer keeps none."""
        if self.overflowed:
            return
        self.consumed += len(data)
        for event in self._reader.feed(data):
            self._add(log_line(event))

    def end(self) -> None:
        """Report a last line the run never ended, once its log is read to the end."""
        for event in self._reader.end():
            self._add(log_line(event))

    def drain(self) -> list[LogLine]:
        """The events to send now; the viewer resumes after the last of them."""
        items = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if items:
            self.resume_at = items[-1].offset
        return items

    def _add(self, line: LogLine) -> None:
        """Queue an event, dropping them all once the viewer is too far behind to keep up."""
        self._pending.append(line)
        self._pending_bytes += len(line.line or "") + len(line.progress_text or "")
        self._pending_bytes += _EVENT_OVERHEAD
        if self._pending_bytes > FOLLOWER_BUFFER:
            self.overflowed = True
            self._pending.clear()


class Feed:
    """One followed run: its log source, how far the log has been read, and its followers."""

    def __init__(self, run_id: int, active: bool) -> None:
        self.run_id = run_id
        self.active = active
        self.end = 0
        self.followers: set[Follower] = set()
        self.joining = 0  # followers waiting for it to open
        self.lock = asyncio.Lock()  # one read of the source at a time
        self.source: logs.LogSource | None = None
        self.opened: asyncio.Future[None] | None = None

    @property
    def path(self) -> str | None:
        """The local log file, watched by its size; None for a run on a worker."""
        return str(self.source.path) if isinstance(self.source, logs.FileLog) else None

    @property
    def stream(self) -> str | None:
        """The Redis stream carrying a worker's run live, if there is one."""
        source = self.source
        if isinstance(source, logstream.RemoteLog) and source.client is not None:
            return source.key
        return None


class Fanout:
    """Every followed run of this service, watched once each, with its followers."""

    def __init__(self, operator: Lab, pool: Executor) -> None:
        self.operator = operator
        self.pool = pool
        self.per_member = operator.settings.max_streams_per_user
        self.feeds: dict[int, Feed] = {}
        self.streams: Counter[str] = Counter()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopping = threading.Event()
        self._checking = False

    # ------------------------------------------------------------------ following

    @contextlib.asynccontextmanager
    async def follow(
        self, lab: Lab, run: RunRecord, offset: int, from_tail: int | None
    ) -> AsyncIterator[Follower]:
        """A follower of the run from ``offset`` (or the last ``from_tail`` lines), counted
        against its member's limit while it is open."""
        member = lab.username
        if self.streams[member] >= self.per_member:
            raise TooManyStreams(
                f"{member} already follows {self.streams[member]} live logs, the most one member "
                "may; close a log view or wait for a run to end"
            )
        self.streams[member] += 1
        feed = self._join(lab, run)
        follower: Follower | None = None
        try:
            try:  # a feed with someone joining is never forgotten, so none joins a closed one
                assert feed.opened is not None
                await asyncio.shield(feed.opened)
                if from_tail is not None:
                    offset = await self._locked_read(feed, logs.tail_offset, feed.source, from_tail)
                follower = Follower(feed, offset)
                feed.followers.add(follower)
            finally:
                feed.joining -= 1
            yield follower
        finally:
            if follower is not None:
                feed.followers.discard(follower)
            if not feed.followers and not feed.joining:
                self._forget(feed)
            self.streams[member] -= 1
            if not self.streams[member]:
                del self.streams[member]

    async def catch_up(self, follower: Follower) -> bool:
        """Read the next block of the log for a follower behind the live edge; False if the
        source had nothing yet (a worker's log the database has not caught up with)."""
        feed = follower.feed
        async with feed.lock:
            data = await self._read(feed, follower.consumed)
        follower.take(data)
        return bool(data)

    def _join(self, lab: Lab, run: RunRecord) -> Feed:
        """The run's feed, opened once however many followers arrive together."""
        feed = self.feeds.get(run.id)
        if feed is None:
            feed = self.feeds[run.id] = Feed(run.id, run.active)
            feed.opened = asyncio.ensure_future(self._open(lab, feed))
        feed.joining += 1
        return feed

    async def _open(self, lab: Lab, feed: Feed) -> None:
        """Open the log where its run writes it; the live edge starts at its current end."""
        try:
            feed.source = await self._in_pool(lab.log_source, feed.run_id)
            feed.end = await self._in_pool(feed.source.size)
        except BaseException:
            if self.feeds.get(feed.run_id) is feed:
                del self.feeds[feed.run_id]
            raise

    def _forget(self, feed: Feed) -> None:
        """Stop watching a run nobody follows; its source closes after any read in flight."""
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

        async def close() -> None:
            async with feed.lock:
                if feed.source is not None:
                    feed.source.close()

        self._spawn(close())

    async def _read(self, feed: Feed, offset: int) -> bytes:
        """A block of the log: a local file on the loop (a copy from the page cache, quicker
        than a trip to a thread), a worker's run from the database or Redis in the pool."""
        assert feed.source is not None
        if feed.path:
            return feed.source.read(offset, READ_BLOCK)
        return bytes(await self._in_pool(feed.source.read, offset, READ_BLOCK))

    async def _locked_read(self, feed: Feed, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking read of the feed's source, off the loop and one at a time."""
        async with feed.lock:
            return await self._in_pool(fn, *args)

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking database and Redis calls stay off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # ------------------------------------------------------------------- watching

    async def _pump(self, feed: Feed) -> None:
        """Read what the run's log gained and hand it to every follower."""
        async with feed.lock:
            while feed.source is not None and feed.followers:
                data = await self._read(feed, feed.end)
                if not data:
                    return
                start, feed.end = feed.end, feed.end + len(data)
                for follower in list(feed.followers):
                    follower.offer(start, data)

    async def _finish(self, feed: Feed) -> None:
        """The run ended: read its log to the end, then let each follower finish."""
        await self._pump(feed)
        feed.active = False
        for follower in list(feed.followers):
            follower.ready.set()

    def _watched(self) -> list[Feed]:
        """Feeds of runs still going, with their source open."""
        return [f for f in list(self.feeds.values()) if f.active and f.source is not None]

    async def watch(self) -> None:
        """Until stopped: check local logs' sizes every tick, run statuses every few ticks."""
        ticks_per_status = round(STATUS_SECONDS / TICK_SECONDS)
        tick = 0
        while not self._stopping.is_set():
            await asyncio.sleep(TICK_SECONDS)
            tick += 1
            for feed in self._watched():
                if feed.path and not feed.lock.locked() and _size(feed.path) > feed.end:
                    self._spawn(self._pump(feed))
            if tick % ticks_per_status == 0 and not self._checking:
                self._checking = True
                self._spawn(self._check_status())

    async def _check_status(self) -> None:
        """One query for every followed run: ended ones finish; workers' logs are read too,
        in case their live stream is away."""
        feeds = self._watched()
        try:
            ids = [f.run_id for f in feeds]
            active = await self._in_pool(self.operator.active_runs, ids) if ids else set()
        except Exception as exc:  # the database is away: ask again next time
            log.warning("could not read the status of followed runs: %s", exc)
            return
        finally:
            self._checking = False
        for feed in feeds:
            if feed.run_id not in active:
                self._spawn(self._finish(feed))
            elif feed.path is None and not feed.lock.locked():
                self._spawn(self._pump(feed))

    def _watch_streams(self, loop: asyncio.AbstractEventLoop) -> None:
        """A thread blocking on the live streams of every followed run on a worker at once."""
        client = logstream.connect(self.operator.settings.effective_log_stream_url)
        while client is not None and not self._stopping.is_set():
            feeds = {f.stream: f for f in self._watched() if f.stream}
            if not feeds:
                self._stopping.wait(TICK_SECONDS * 4)
                continue
            try:  # ids above "<end>-0" are entries at or past what each feed has read
                found = client.xread(
                    {key: f"{feed.end}-0" for key, feed in feeds.items()}, block=REDIS_BLOCK_MS
                )
            except Exception as exc:
                log.debug("live log streams unavailable: %s", exc)
                self._stopping.wait(0.5)
                continue
            # RESP2, as logstream.connect makes the client: [[key, entries], ...]; None if idle
            streams = found if isinstance(found, list) else []
            grown = [feeds[key.decode()] for key, _ in streams]
            if grown:  # wait for the reads, so the same entries do not wake us again
                pumps = asyncio.run_coroutine_threadsafe(self._pump_all(grown), loop)
                with contextlib.suppress(Exception):
                    pumps.result(timeout=10)

    async def _pump_all(self, feeds: list[Feed]) -> None:
        """Read every grown feed; one failing does not stop the others."""
        await asyncio.gather(*(self._pump(f) for f in feeds), return_exceptions=True)

    def start(self) -> None:
        """Start watching on the running loop (and a thread for workers' live streams)."""
        self._spawn(self.watch())
        loop = asyncio.get_running_loop()
        streams = threading.Thread(
            target=self._watch_streams, args=(loop,), name="log-streams", daemon=True
        )
        streams.start()

    def stop(self) -> None:
        """Stop watching; open streams end with the service."""
        self._stopping.set()

    def _spawn(self, work: Awaitable[Any]) -> None:
        """Run work in the background, keeping it referenced and its failure logged."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        """Forget a finished background task, logging it if it failed."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("following logs failed", exc_info=task.exception())


def _size(path: str) -> int:
    """A log's size; 0 until the supervisor has created it."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
