"""Run by hand: LogWriter throughput against a plain file write, and follow latency.

Goals: feeding 1,000,000 lines in 64 KiB chunks costs at most 10% more than writing the same
bytes straight to a file (CPU time of this process, which a shared machine disturbs far less
than wall time); a follower sees a line within 100 ms (p95) of its being written; a line of
N bytes followed by a ``\r`` state costs time linear in N (the ns/byte column stays flat).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pico_nb.logs import LogWriter, follow

CHUNK = 1 << 16
LINES = 1_000_000
LATENCY_LINES = 1_000
LATENCY_RATE = 200.0

_WRITER = """
import sys, time
from pathlib import Path
from pico_nb.logs import LogWriter
with LogWriter(Path(sys.argv[1])) as log:
    for i in range({n}):
        log.feed(b"%.6f line %d\\n" % (time.time(), i))
        time.sleep({pause})
Path(sys.argv[2]).touch()
"""


def chunks() -> list[bytes]:
    """Pre-cut the output so both sides time only the writing, like the supervisor's reads."""
    data = b"".join(
        b"2026-11-28 01:45:%02d INFO frame %d registered\n" % (i % 60, i) for i in range(LINES)
    )
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def throughput(folder: Path, repeats: int = 5) -> None:
    """Print the write medians and their ratio; the two alternate so drift hits both alike."""
    data = chunks()

    def plain(path: Path) -> None:
        with open(path, "xb") as f:
            for chunk in data:
                f.write(chunk)
                f.flush()

    def writer(path: Path) -> None:
        with LogWriter(path) as log:
            for chunk in data:
                log.feed(chunk)

    def floor(path: Path) -> None:  # the least any \r-aware writer does: look for \r, write
        with open(path, "xb") as f:
            for chunk in data:
                if b"\r" not in chunk:
                    f.write(chunk)
                    f.flush()

    runs = {"plain": plain, "writer": writer, "floor": floor}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        for name in sorted(runs, reverse=bool(i % 2)):  # alternate the order: no one goes first
            path = folder / f"{name}.log"
            start = time.process_time()
            runs[name](path)
            times[name].append(time.process_time() - start)
            path.unlink()  # a fresh file each time, and no page cache piling up
    medians = {name: statistics.median(times[name]) for name in runs}
    megabytes = sum(map(len, data)) / 1e6
    print(
        f"{LINES:,} lines, {megabytes:.1f} MB in {len(data)} chunks of 64 KiB, median of {repeats}"
    )
    print(f"  plain file write      : {medians['plain'] * 1e3:8.1f} ms CPU")
    print(f"  LogWriter.feed        : {medians['writer'] * 1e3:8.1f} ms CPU")
    print(f"  ratio                 : {medians['writer'] / medians['plain']:8.3f}   (goal <= 1.10)")
    print(f"  floor: \\r check+write : {medians['floor'] / medians['plain']:8.3f}   (for scale)")


def long_lines(folder: Path, repeats: int = 5) -> None:
    """Print the CPU time of one read holding a long line and then a progress state."""
    print(f"a long line then a \\r state, in one read, median of {repeats}")
    for size in (100_000, 1_000_000, 20_000_000):
        data = b"x" * size + b"\n\r 1/2"
        times = []
        for i in range(repeats):
            path = folder / f"long{i}.log"
            start = time.process_time()
            with LogWriter(path) as log:
                log.feed(data)
            times.append(time.process_time() - start)
            path.unlink()
        took = statistics.median(times)
        print(f"  {size:>11,} bytes: {took * 1e3:8.2f} ms CPU  {took * 1e9 / size:6.2f} ns/byte")


def latency(folder: Path) -> None:
    """Print how long a follower takes to see lines a writer process writes at a steady rate."""
    path, finished = folder / "latency.log", folder / "latency.done"
    script = _WRITER.format(n=LATENCY_LINES, pause=1 / LATENCY_RATE)
    writer = subprocess.Popen([sys.executable, "-c", script, str(path), str(finished)])
    delays = [
        (time.time() - float(event.line.split()[0])) * 1e3
        for event in follow(path, done=finished.exists)
        if event.line
    ]
    writer.wait()
    q = statistics.quantiles(delays, n=100)
    print(f"follow latency over {len(delays)} lines at ~{LATENCY_RATE:.0f} lines/s")
    print(f"  p50 {q[49]:6.1f} ms   p95 {q[94]:6.1f} ms   (goal p95 < 100 ms)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        throughput(Path(tmp))
        long_lines(Path(tmp))
        latency(Path(tmp))


if __name__ == "__main__":
    main()
