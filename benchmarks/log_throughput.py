"""Run by hand: LogWriter throughput against a plain file write, and follow latency.

Goals: feeding 1,000,000 lines in 64 KiB chunks costs at most 10% more than writing the same
bytes straight to a file; a follower sees a line within 100 ms (p95) of its being written.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def median_seconds(run: Callable[[Path], None], folder: Path, repeats: int = 5) -> float:
    """Time a fresh file each repeat, since logs are never overwritten."""
    times = []
    for i in range(repeats):
        path = folder / f"{run.__name__}_{i}.log"
        start = time.perf_counter()
        run(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(folder: Path) -> None:
    """Print the write medians and their ratio."""
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

    plain_s, writer_s = median_seconds(plain, folder), median_seconds(writer, folder)
    megabytes = sum(map(len, data)) / 1e6
    print(f"{LINES:,} lines, {megabytes:.1f} MB in {len(data)} chunks of 64 KiB, median of 5")
    print(f"  plain file write : {plain_s * 1e3:8.1f} ms")
    print(f"  LogWriter.feed   : {writer_s * 1e3:8.1f} ms")
    print(f"  ratio            : {writer_s / plain_s:8.3f}   (goal <= 1.10)")


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
        latency(Path(tmp))


if __name__ == "__main__":
    main()
