"""A test pipeline driven by its flags: prints, progress bars, stderr, waits, exit codes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pico_nb.params import load_spec


def main() -> int:
    data_path, out_path, p = load_spec(Path(__file__).with_suffix(".toml")).parse_argv(sys.argv[1:])
    if p["ignore_term"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"fake pipeline pid {os.getpid()} reading {data_path}", flush=True)
    if p["device"] == "cuda":
        print(f"cuda visible: {os.environ.get('CUDA_VISIBLE_DEVICES')}", flush=True)
    print("=======> loading <=======", flush=True)
    for i in range(max(p["lines"], p["stderr_lines"])):
        if i < p["lines"]:
            print(f"line {i}", flush=True)
        if i < p["stderr_lines"]:
            print(f"err {i}", file=sys.stderr, flush=True)
    if p["tqdm_steps"]:
        print("=======> motion correction <=======", flush=True)
        n = p["tqdm_steps"]
        for k in range(n + 1):
            pct = int(100 * k / n)
            sys.stdout.write(f"\rmotion correction: {pct:3d}%|{'#' * (pct // 10):<10}| {k}/{n}")
            sys.stdout.flush()
        sys.stdout.write("\n")
    if p["flood"]:
        out = sys.stdout.buffer
        out.write(b"".join(b"flood %d\n" % i for i in range(p["flood"])))
        out.flush()
    if p["big_line_mb"]:
        out = sys.stdout.buffer
        out.write(b"\xff\xfe" + b"x" * (p["big_line_mb"] << 20))
        out.write(b"\nafter big line\n")
        out.flush()
    if p["wait_file"]:
        print("waiting", flush=True)
        while not os.path.exists(p["wait_file"]):
            time.sleep(0.02)
    for i in range(p["ticks"]):
        print(f"tick {i} {time.time():.6f}", flush=True)
        time.sleep(p["tick_seconds"])
    Path(out_path, "done.txt").write_text("ok")
    if p["cells"]:
        from cell_results import write_results

        write_results(Path(out_path), p["cells"], p["cell_seed"])
    print("finished", flush=True)
    if p["error_line"]:
        print(f"error: {p['error_line']}", file=sys.stderr, flush=True)
    return p["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
