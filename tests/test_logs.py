"""Run logs: layout, writing with collapsed progress, reading from offsets, following, progress."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pico_nb.logs import (
    LogEvent,
    LogWriter,
    Progress,
    ProgressParser,
    follow,
    log_path,
    read_log,
    tail_offset,
)

CHUNK = 1 << 16

FOLLOWER = """
import sys
from pathlib import Path
from pico_nb.logs import follow
log, finished = Path(sys.argv[1]), Path(sys.argv[2])
for event in follow(log, done=finished.exists, poll=0.01):
    if event.line is not None:
        print(event.line, flush=True)
"""

PIPELINE_CHILD = """
import sys, time
from pico_nb.pipeline.progress import Progress, banner
banner("motion correction")
with Progress("motion correction", 200, stream=sys.stderr) as bar:
    for _ in range(200):
        time.sleep(0.005)  # the pace of real work, so the bar is redrawn some ten times
        bar.update()
print("done ✓", flush=True)
"""


class Clock:
    """A clock the test moves by hand, so an hour of progress takes no time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines_of(path: Path, **kwargs: object) -> list[str]:
    """Every complete line a finished log shows to a reader."""
    return [e.line for e in follow(path, done=lambda: True, **kwargs) if e.line is not None]


def write_log(path: Path, pieces: list[bytes], clock: Clock | None = None) -> LogWriter:
    """Feed the pieces as separate pipe reads and close, as the supervisor does."""
    with LogWriter(path, clock=clock or Clock()) as log:
        for piece in pieces:
            log.feed(piece)
    return log


# --- where logs live -----------------------------------------------------------------------


def test_log_path_is_per_user_per_run_and_in_utc(tmp_path: Path) -> None:
    when = datetime(2026, 11, 28, 2, 45, tzinfo=timezone(timedelta(hours=1)))
    path = log_path(tmp_path, "alice", 12, 3, when)
    assert path == tmp_path / "logs" / "alice" / "exp_12_run_3_20261128T014500Z.log"


def test_log_path_makes_any_user_name_one_safe_distinct_folder(tmp_path: Path) -> None:
    when = datetime(2026, 11, 28, tzinfo=UTC)
    names = ["../../etc", "a b", "a_b", "a/b", "..", ".hidden", "Ünïcode", "x" * 300]
    folders = [log_path(tmp_path, name, 1, 1, when).parent for name in names]
    assert len(set(folders)) == len(names)
    for folder in folders:
        assert folder.parent == tmp_path / "logs"
        assert not folder.name.startswith(".")
        assert len(folder.name) <= 200
    with pytest.raises(ValueError):
        log_path(tmp_path, "", 1, 1, when)
    with pytest.raises(ValueError):
        log_path(tmp_path, "alice", 1, 1, datetime(2026, 11, 28))


def test_a_log_is_never_overwritten(tmp_path: Path) -> None:
    path = log_path(tmp_path, "alice", 1, 1, datetime(2026, 11, 28, tzinfo=UTC))
    write_log(path, [b"first run\n"])
    with pytest.raises(FileExistsError):
        LogWriter(path)
    assert path.read_bytes() == b"first run\n"


# --- writing -------------------------------------------------------------------------------


def test_header_comes_first_then_output_in_order(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with LogWriter(path) as log:
        log.header(["experiment: 12 (V1 mouse)", "run: 3", "user: alice", "command: pico\n-x"])
        log.feed(b"one\ntw")
        log.feed(b"o\nthree")
    assert path.read_bytes() == (
        b"experiment: 12 (V1 mouse)\nrun: 3\nuser: alice\ncommand: pico -x\none\ntwo\nthree\n"
    )


def test_an_hour_of_tqdm_at_10_hz_stays_small_and_keeps_its_final_state(tmp_path: Path) -> None:
    path, clock = tmp_path / "run.log", Clock()
    total = 36_000

    def bar(i: int) -> bytes:
        left = (total - i) // 10
        return (
            f"\rmotion correction: {100 * i // total:3d}%|{'█' * (10 * i // total):10}| "
            f"{i}/{total} [{i // 600:02d}:{i // 10 % 60:02d}<{left // 60:02d}:{left % 60:02d}, "
            f"10.0frames/s]"
        ).encode()

    with LogWriter(path, clock=clock) as log:
        log.feed(b"=======> motion correction <=======\n")
        for i in range(total):
            log.feed(bar(i))
            clock.now += 0.1
        log.feed(bar(total) + b"\n")
        assert log.progress.stage == "motion correction"
        assert log.progress.fraction == 1.0
    raw = sum(len(bar(i)) for i in range(total))
    data = path.read_bytes()
    assert data.count(b"\r") <= total // 10 + 1  # one state a second at most
    assert len(data) < raw / 9
    assert lines_of(path) == ["=======> motion correction <=======", bar(total)[1:].decode()]


def test_a_progress_state_waits_out_its_second_then_is_written(tmp_path: Path) -> None:
    path, clock = tmp_path / "run.log", Clock()
    log = LogWriter(path, clock=clock)
    log.feed(b"\r 10%|#         | 1/10")
    log.feed(b"\r 20%|##        | 2/10")
    assert path.read_bytes() == b" 10%|#         | 1/10"
    assert log.progress.fraction == 0.2
    clock.now = 0.5
    log.tick()
    assert path.read_bytes() == b" 10%|#         | 1/10"
    clock.now = 1.0
    log.tick()
    assert path.read_bytes() == b" 10%|#         | 1/10\r 20%|##        | 2/10"
    log.feed(b"\r 30%|###       | 3/10")
    log.close()
    assert path.read_bytes().endswith(b"\r 30%|###       | 3/10\n")


@pytest.mark.parametrize(
    "data",
    [
        b"plain line\nsecond line\n",
        b"crlf line\r\nnext\r\r\nlast\r",
        b"\r 10%|#   | 1/10\r 20%|##  | 2/10\r100%|####| 10/10\ndone\n",
        "µs → 日本 😀\n".encode() + b"bad \xff\xfe byte\n\xe6\x97",
        b"abc\rX\r\n\r\rtail\rstate",
        b"=====> stage one <=====\n 3/4 frames\nno newline at the end",
    ],
)
def test_chunk_boundaries_anywhere_give_the_same_log(tmp_path: Path, data: bytes) -> None:
    write_log(tmp_path / "whole.log", [data])
    expected = lines_of(tmp_path / "whole.log")
    for cut in range(len(data) + 1):
        path = tmp_path / f"cut_{cut}.log"
        write_log(path, [data[:cut], data[cut:]])
        assert lines_of(path) == expected, cut
    for cut in range(0, len(data) + 1, 3):
        path = tmp_path / f"bytes_{cut}.log"
        write_log(path, [data[:cut], *(data[i : i + 1] for i in range(cut, len(data)))])
        assert lines_of(path) == expected, cut


def test_a_million_lines_are_written_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    data = b"".join(b"frame %d registered\n" % i for i in range(1_000_000))
    write_log(path, [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)])
    assert path.read_bytes() == data
    lines = lines_of(path)
    assert len(lines) == 1_000_000
    assert lines[0] == "frame 0 registered"
    assert lines[-1] == "frame 999999 registered"


def test_a_10_mb_line_with_bad_utf8_uses_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    chunk = (b"\xff\xfe" + "é".encode() + b"x" * 97) * (CHUNK // 100)
    count = 10_000_000 // len(chunk) + 1
    tracemalloc.start()
    try:
        with LogWriter(path) as log:
            for _ in range(count):
                log.feed(chunk)
            log.feed(b"\n\r" + chunk)  # a live state this long is written in pieces too
            for _ in range(count):
                log.feed(chunk)
        writer_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        longest = accents = replaced = 0
        for event in follow(path, done=lambda: True):
            longest = max(longest, len(event.line or ""))
            accents += (event.line or "").count("é")
            replaced += (event.line or "").count("�")
        reader_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert writer_peak < 1_000_000
    assert reader_peak < 5_000_000
    assert path.stat().st_size == 2 * count * len(chunk) + len(chunk) + 2
    assert longest <= CHUNK  # a line this long is shown in pieces
    assert accents == (2 * count + 1) * (CHUNK // 100)
    assert replaced >= accents


BIG_LINE_THEN_CR = """
import sys
from pathlib import Path
from pico_nb.logs import LogWriter
big = b"x" * (20 << 20)
with LogWriter(Path(sys.argv[1])) as log:
    log.feed(big + b"\\n\\r 1/2")  # one read: the line, then a progress state
    log.feed(big)  # a line of 20 MB still open when its first \\r arrives
    log.feed(b"\\r" + big + b"\\r 2/2\\r\\r\\n")
print(log.progress.fraction)
"""


def test_a_20_mb_line_followed_by_cr_is_collapsed_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    # A child process, so a scan that does not end fails the test rather than hanging it.
    child = subprocess.run(
        [sys.executable, "-c", BIG_LINE_THEN_CR, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "1.0"
    big = b"x" * (20 << 20)
    assert path.read_bytes() == big + b"\n 1/2" + big + b"\r 2/2\n"  # superseded: dropped
    assert lines_of(path)[-1] == " 2/2"


# --- reading -------------------------------------------------------------------------------


def test_read_log_round_trips_offsets_without_splitting_characters(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    text = "".join(f"line {i}: µ日😀é\n" for i in range(200))
    path.write_text(text, encoding="utf-8")
    for limit in (4, 5, 7, 64, 1 << 20):
        pieces, offset = [], 0
        while True:
            piece, offset = read_log(path, offset, limit)
            if not piece:
                break
            assert "�" not in piece
            pieces.append(piece)
        assert "".join(pieces) == text
        assert offset == path.stat().st_size


def test_read_log_waits_for_the_rest_of_a_character(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"ab\xf0\x9f")
    assert read_log(path) == ("ab", 2)
    assert read_log(path, 2) == ("", 2)
    with path.open("ab") as f:
        f.write(b"\x98\x80\n")
    assert read_log(path, 2) == ("😀\n", 7)
    assert read_log(tmp_path / "missing.log", 5) == ("", 5)


def test_follow_reports_the_live_progress_line_then_the_line(tmp_path: Path) -> None:
    path, clock = tmp_path / "run.log", Clock()
    finished = False
    log = LogWriter(path, clock=clock)
    log.header(["run: 1"])
    log.feed(b"=======> registration <=======\n\r 10%|#  | 1/10 [00:01<00:09, 1.0it/s]")
    events = follow(path, done=lambda: finished, poll=0.001)
    assert next(events) == LogEvent("run: 1", None, 7)
    banner = next(events)
    assert banner.line == "=======> registration <======="
    assert banner.progress == Progress("registration", None, None, banner.line)
    live = next(events)
    assert live.line is None and live.offset == banner.offset
    assert live.progress == Progress("registration", 0.1, 9.0, live.progress.text)
    clock.now = 1
    log.feed(b"\r 20%|## | 2/10 [00:02<00:08, 1.0it/s]")
    assert next(events).progress.fraction == 0.2
    log.feed(b"\n")
    log.close()
    finished = True
    last = next(events)
    assert last.line == " 20%|## | 2/10 [00:02<00:08, 1.0it/s]"
    assert last.progress.eta_seconds == 8
    assert last.offset == path.stat().st_size
    assert list(events) == []


def test_follow_from_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    write_log(path, [b"".join(b"line %d\n" % i for i in range(100_000))])
    assert lines_of(path, from_tail=3) == ["line 99997", "line 99998", "line 99999"]
    assert lines_of(path, from_tail=0) == []
    assert len(lines_of(path, from_tail=200_000)) == 100_000
    path.with_name("partial.log").write_bytes(b"a\nb\nc")
    assert tail_offset(path.with_name("partial.log"), 0) == 4
    assert tail_offset(path.with_name("partial.log"), 2) == 2
    assert tail_offset(tmp_path / "missing.log", 5) == 0


def test_a_follower_resumes_from_any_offset_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    write_log(path, [b"one\ntwo\nthree\n"])
    second = list(follow(path, done=lambda: True))[1]
    assert lines_of(path, offset=second.offset) == ["three"]


def test_three_followers_in_other_processes_each_get_every_line_in_order(tmp_path: Path) -> None:
    path, finished = tmp_path / "run.log", tmp_path / "finished"
    followers = [
        subprocess.Popen(
            [sys.executable, "-c", FOLLOWER, str(path), str(finished)],
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        for _ in range(3)
    ]
    rng = random.Random(7)
    expected = [f"line {i} {'é' * rng.randrange(30)}" for i in range(20_000)]
    data = "".join(f"{line}\n" for line in expected).encode()
    with LogWriter(path) as log:
        log.header(["attached"])
        for follower in followers:  # every follower is reading before the output starts
            assert follower.stdout.readline() == "attached\n"
        offset = 0
        while offset < len(data):
            step = rng.randrange(1, 5000)
            log.feed(data[offset : offset + step])
            offset += step
    finished.touch()
    for follower in followers:
        out, _ = follower.communicate(timeout=60)
        assert follower.returncode == 0
        assert out.splitlines() == expected


def test_the_pipelines_own_bars_are_logged_collapsed(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    child = subprocess.Popen(
        [sys.executable, "-c", PIPELINE_CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    started = time.monotonic()
    with LogWriter(path) as log:
        while data := os.read(child.stdout.fileno(), CHUNK):
            log.feed(data)
    seconds = time.monotonic() - started
    assert child.wait() == 0
    child.stdout.close()
    banner, bar, done = lines_of(path)
    assert (banner, done) == ("=======> motion correction <=======", "done ✓")
    assert re.fullmatch(r"motion correction: 100%\|█{10}\| 200/200 \[00:0\d<00:00, .*/s\]", bar)
    assert log.progress == Progress("motion correction", 1.0, 0.0, bar)
    assert path.read_bytes().count(b"\r") <= seconds + 1  # one state a second at most


# --- progress ------------------------------------------------------------------------------


def test_progress_from_banners_bars_and_counters() -> None:
    parser = ProgressParser()
    assert parser.feed("loading 12 files") is None
    assert parser.feed("=======> motion correction <=======") == Progress(
        "motion correction", None, None, "=======> motion correction <======="
    )
    bar = "motion correction:  42%|████▏     | 840/2000 [00:03<00:04, 250.1frames/s]"
    assert parser.feed(bar) == Progress("motion correction", 0.42, 4.0, bar)
    assert parser.feed("see /data/run_3/out.tif, 2026/11/28") is None
    assert parser.feed("[INFO] registered 5/20 sessions").fraction == 0.25
    assert parser.feed("=====> roi detection <=====").fraction is None
    assert parser.current.stage == "roi detection"


@pytest.mark.parametrize(
    ("bar", "fraction", "eta"),
    [
        ("  0%|          | 0/2000 [00:00<?, ?frames/s]", 0.0, None),
        ("x:  50%|#####     | 1.00k/2.00k [01:00:03<1:02:03, 2.5s/it]", 0.5, 3723.0),
        ("x:  50%|#####     | 1000/2000 [00:40, 25.0it/s]", 0.5, 40.0),
        ("x:  50%|#####     | 1000/2000 [00:40, 2.00s/it]", 0.5, 2000.0),
        ("x:  73%|#######   ", 0.73, None),
        ("100%|##########| 10/10 [00:01<00:00,  9.9it/s]", 1.0, 0.0),
    ],
)
def test_progress_from_tqdm_variants(bar: str, fraction: float, eta: float | None) -> None:
    progress = ProgressParser().feed(bar)
    assert progress is not None
    assert progress.fraction == pytest.approx(fraction)
    assert progress.eta_seconds == eta


def test_the_writer_tracks_progress_inside_big_chunks(tmp_path: Path) -> None:
    noise = b"".join(b"frame %d\n" % i for i in range(5000))
    with LogWriter(tmp_path / "run.log") as log:
        log.feed(noise + b"=======> roi detection <=======\n" + noise)
        assert log.progress.stage == "roi detection"
        log.feed(noise[:-3])
        log.feed(noise[-3:] + b"=======> spike inf")
        log.feed(b"erence <=======\n" + b"extracted 3/4 traces\n" + noise)
        assert log.progress.stage == "spike inference"
        log.feed(noise[:98] + b"extracted 4/4 traces\n")
        assert log.progress == Progress("spike inference", 1.0, None, "extracted 4/4 traces")
