"""Run by hand: how long a pipeline's line takes to reach the dashboard page, and list build time.

1. Latency: a pipeline prints timestamped lines; Chromium shows the dashboard's run panel and
   notes when each line appears in the page. Prints p50/p95 (goal: p95 under 500 ms).
2. The experiment list's first page with 10,000 experiments, built in this process
   (goal: under 1 s).

    .venv/bin/python benchmarks/browser_latency.py [--lines 200] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright

from pico_nb.lab import Lab
from pico_nb.settings import load_settings
from pico_nb.widgets.app import start_background, stop_background

# The browser tests' Chromium launcher, so both drive the browser the same way.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chromium import launch

SPEC = """
name = "ticker"
title = "Latency ticker"
command = ["{python}", "{spec_dir}/ticker.py"]

[[params]]
name = "lines"
type = "int"
default = 100
minimum = 1
help = "Lines to print."

[[params]]
name = "interval"
type = "float"
default = 0.05
minimum = 0
help = "Seconds between lines."

[[params]]
name = "start_file"
type = "str"
default = ""
help = "Wait for this file before printing."
"""

TICKER = """
import os, sys, time
from pathlib import Path
from pico_nb.params import load_spec
_, _, p = load_spec(Path(__file__).with_name("ticker.toml")).parse_argv(sys.argv[1:])
while p["start_file"] and not os.path.exists(p["start_file"]):
    time.sleep(0.01)
for i in range(p["lines"]):
    print(f"tick {i} {time.time():.6f}", flush=True)
    time.sleep(p["interval"])
"""

# Record, in the page, when each tick line first shows up.
OBSERVE = """
() => {
  window.__seen = {};
  const log = document.querySelector('.pico-log');
  const scan = () => {
    const now = Date.now();
    for (const m of log.innerText.matchAll(/tick (\\d+) (\\d+\\.\\d+)/g)) {
      if (!(m[1] in window.__seen)) window.__seen[m[1]] = [now, parseFloat(m[2]) * 1000];
    }
  };
  new MutationObserver(scan).observe(log, {subtree: true, childList: true, characterData: true});
}
"""


def latency(root: Path, lines: int, interval: float) -> list[float]:
    """Milliseconds from print to page for each line."""
    (root / "ticker.toml").write_text(SPEC)
    (root / "ticker.py").write_text(textwrap.dedent(TICKER))
    movie = root / "movie"
    movie.mkdir()
    cv2.imwrite(str(movie / "frame_0.jpg"), np.zeros((16, 16), np.uint8))
    home = root / "home"
    settings = load_settings(
        home, data_roots=[str(root)], pipeline_spec=str(root / "ticker.toml"), heartbeat_seconds=1
    )
    lab = Lab(settings=settings)
    go = root / "go"
    exp = lab.create_experiment(
        "latency",
        str(movie),
        str(root / "out"),
        params={"lines": lines, "interval": interval, "start_file": str(go)},
    )
    run = lab.run_experiment(exp.id)
    env = {
        "PICO_NB_HOME": str(home),
        "PICO_NB_DATA_ROOTS": str(root),
        "PICO_NB_PIPELINE_SPEC": str(root / "ticker.toml"),
    }
    proc, url = start_background(18900 + int(time.time()) % 500, env)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}&experiment={exp.id}")
            page.wait_for_selector(".pico-run .pico-log", timeout=60_000)
            page.evaluate(OBSERVE)
            go.touch()
            lab.wait(run.id, timeout=lines * interval + 60)
            page.wait_for_function(f"Object.keys(window.__seen).length >= {lines}", timeout=30_000)
            seen = page.evaluate("window.__seen")
            browser.close()
    finally:
        stop_background(proc)
    return sorted(shown - printed for shown, printed in seen.values())


def list_build(root: Path, count: int = 10_000) -> float:
    """Seconds to build the list's first page with `count` experiments in the database."""
    from pico_nb.widgets.experiment_list import ExperimentList

    movie = root / "movie"
    settings = load_settings(root / "list-home", data_roots=[str(root)])
    lab = Lab(user="bench", settings=settings)
    spec_defaults = lab.spec.defaults()
    lab.create_experiment("seed", str(movie), str(root / "seed-out"), params=spec_defaults)
    db = sqlite3.connect(settings.home / "pico-nb.sqlite")
    (table,) = [
        n
        for (n,) in db.execute("select name from sqlite_master where type='table'")
        if n.startswith("experiment")
    ]
    cols = [c[1] for c in db.execute(f"pragma table_info({table})") if c[1] != "id"]
    copies = ", ".join(cols)
    names = ", ".join("name || ' ' || abs(random() % 100000)" if c == "name" else c for c in cols)
    for _ in range(count - 1):
        db.execute(f"insert into {table} ({copies}) select {names} from {table} limit 1")
    db.commit()
    db.close()
    start = time.perf_counter()
    view = ExperimentList(lab, refresh_seconds=3600)
    seconds = time.perf_counter() - start
    assert view.total == count, view.total
    view.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ms = latency(root, args.lines, args.interval)
        p50 = statistics.median(ms)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        print(f"print → page latency over {len(ms)} lines, one every {args.interval * 1e3:.0f} ms")
        print(f"  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (goal p95 < 500)")
        seconds = list_build(root)
        print(
            f"experiment list, first page of 10,000 built in {seconds * 1e3:.0f} ms (goal < 1000)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
