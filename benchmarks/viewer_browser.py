"""The cell viewer as a person uses it in Chromium, on a 1,000-cell × 20,000-frame run.

Prints, for that run and for a 100-cell run of the same length measured in the same session
as the baseline: (a) the time from the run's page being shown (its kernel started) to every
cell's marker drawn on the image; (b) the median time from a click on a marker to its trace
caption shown ("cell #k … SNR"), over --clicks clicks; (c) the median time from a pick in
the cell table to the marker's outline changing. Goals: markers < 5 s, click → trace < 500 ms (p50).

    .venv/bin/python benchmarks/viewer_browser.py [--cells 1000] [--frames 20000] [--clicks 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, expect, sync_playwright

from pico_nb.lab import Lab
from pico_nb.settings import load_settings
from pico_nb.widgets.app import start_background, stop_background

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from viewer import finished_run

from chromium import launch

WHITE = "rgb(255, 255, 255)"


def measure(page: Page, url: str, cells: int, clicks: int) -> dict[str, float]:
    """Seconds to draw the markers, and the medians of click → trace and pick → outline."""
    page.goto(url)
    expect(page.locator(".pico-detail")).to_be_visible(timeout=120_000)
    began = time.perf_counter()  # the page and its kernel are up: now the run's cells
    viewer = page.locator(".pico-cells")
    dots = viewer.locator(".bqplot .dot")
    expect(dots).to_have_count(cells, timeout=120_000)
    expect(dots.nth(cells - 1)).to_be_visible()
    drawn = time.perf_counter() - began
    caption = viewer.locator(".pico-trace-captions")
    rng = np.random.default_rng(5)
    to_trace, to_outline = [], []
    for k in rng.choice(cells, clicks, replace=False):
        began = time.perf_counter()
        dots.nth(int(k)).click(force=True)
        expect(caption).to_contain_text(f"cell #{k + 1} ", timeout=30_000)
        to_trace.append(time.perf_counter() - began)
    select = viewer.locator(".pico-cell-list select")
    for k in rng.choice(cells, clicks, replace=False):
        row = select.locator("option").filter(has_text=re.compile(rf"^#{k + 1}\s"))
        option = row.get_attribute("value")
        began = time.perf_counter()
        select.select_option(option)
        expect(dots.nth(int(k))).to_have_css("stroke", WHITE, timeout=30_000)
        to_outline.append(time.perf_counter() - began)
    return {
        "drawn": drawn,
        "trace": statistics.median(to_trace),
        "trace_max": max(to_trace),
        "outline": statistics.median(to_outline),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--baseline-cells", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--clicks", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        lab = Lab(settings=load_settings(home, data_roots=[str(root)]))
        runs = {}
        for cells in (args.baseline_cells, args.cells):
            (root / str(cells)).mkdir()
            run_id = finished_run(lab, root / str(cells), cells, args.frames)
            runs[cells] = (lab.get_run(run_id).experiment_id, run_id)
        env = {"PICO_NB_HOME": str(home), "PICO_NB_DATA_ROOTS": str(root)}
        proc, url = start_background(19400 + int(time.time()) % 500, env)
        figures = {}
        try:
            with sync_playwright() as p:
                browser = launch(p)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                for cells, (experiment, run) in runs.items():
                    address = f"{url}&experiment={experiment}&run={run}"
                    figures[cells] = measure(page, address, cells, args.clicks)
                browser.close()
        finally:
            stop_background(proc)
    base, big = figures[args.baseline_cells], figures[args.cells]
    print(f"{args.frames:,} frames per trace; load average {os.getloadavg()[0]:.2f}")
    for cells, f in figures.items():
        print(
            f"{cells:>5,} cells: markers drawn {f['drawn']:.2f} s; click → trace p50 "
            f"{f['trace'] * 1e3:.0f} ms (max {f['trace_max'] * 1e3:.0f}); table pick → "
            f"outline p50 {f['outline'] * 1e3:.0f} ms"
        )
    print(
        f"ratios {args.cells:,} / {args.baseline_cells:,} cells: markers "
        f"{big['drawn'] / base['drawn']:.2f}, click → trace {big['trace'] / base['trace']:.2f}, "
        f"pick → outline {big['outline'] / base['outline']:.2f} "
        "(goals: markers < 5 s, click → trace p50 < 500 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
