"""End to end in Chromium against a live dashboard: create, validate, run, reload, stop, results."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_app(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=60_000)


def field(page: Page, label: str):
    """The input of a form row found by its label, as a person finds it."""
    row = page.locator(".pico-form .pico-row").filter(has=page.get_by_text(label, exact=True))
    return row.locator("input, textarea").first


def button(page: Page, label: str):
    """A button by its whole label; an icon glyph may come first in its accessible name."""
    return page.get_by_role("button", name=re.compile(rf"^[\ue000-\uf8ff]?\s*{re.escape(label)}$"))


def write_preview(out: Path) -> None:
    """What the pipeline leaves for the gallery: summary.json naming a PNG."""
    out.mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.arange(160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(out / "mean.png"), ramp)
    summary = {
        "frames": 3,
        "neurons": 7,
        "total_seconds": 4.5,
        "previews": {"images": [{"title": "mean image", "path": "mean.png"}]},
    }
    (out / "summary.json").write_text(json.dumps(summary))


def compare_both(page: Page) -> None:
    """From a detail view back to the list, tick both experiments and compare them."""
    page.get_by_role("button", name="All experiments").click()
    rows = page.locator(".pico-list .widget-checkbox input")
    expect(rows).to_have_count(2)
    rows.nth(0).check()
    rows.nth(1).check()
    page.get_by_role("button", name="Compare selected (2)").click()


def test_analyst_day(page: Page, served, screenshot) -> None:
    gate = served.data / "gate"
    out = served.data / "results"
    open_app(page, served.url)
    screenshot("01-list-empty")
    base = served.url.split("?")[0]
    for surface in ("voila/files/dashboard.ipynb", "api/contents", "api/kernels", "lab"):
        assert page.request.get(base + surface).status in (403, 404, 405), surface

    page.get_by_role("button", name="New experiment").click()
    field(page, "Name").fill("Mouse 12 <day 3>")
    field(page, "Input folder").fill(str(served.data / "input"))
    page.get_by_role("button", name="Detect frames").click()
    expect(page.locator(".pico-form")).to_contain_text("3 frames · jpeg sequence")
    field(page, "Output folder").fill("/etc/not-a-data-root")
    page.get_by_text("Parameters", exact=True).click()
    field(page, "wait_file").fill(str(gate))
    field(page, "tqdm_steps").fill("20")
    button(page, "Save").click()
    expect(
        page.locator(".pico-form .pico-field-error").filter(has_text="data roots")
    ).to_be_visible()
    expect(page.locator(".pico-msg-error")).to_contain_text("Not saved")
    assert served.lab.count_experiments() == 0
    screenshot("02-form-error")
    page.set_viewport_size({"width": 800, "height": 800})
    screenshot("02-form-800px")
    page.set_viewport_size({"width": 1280, "height": 800})

    field(page, "Output folder").fill(str(out))
    page.get_by_role("button", name="Save & Run").click()
    run_panel = page.locator(".pico-run")
    expect(run_panel.locator(".pico-log")).to_contain_text("waiting", timeout=30_000)
    expect(run_panel).to_contain_text("motion correction · 100%")
    expect(run_panel.locator(".progress-bar")).to_have_attribute("style", re.compile("100%"))
    exp = served.lab.experiments()[0]
    assert exp.name == "Mouse 12 <day 3>" and exp.params["tqdm_steps"] == 20
    stop = button(page, "Stop")  # one Stop on the page while the run runs: the run panel's
    expect(stop).to_have_count(1)
    expect(run_panel.get_by_role("button", name=re.compile(r"Stop$"))).to_be_visible()
    screenshot("03-detail-running")

    page.reload()  # the address names the experiment and run: the reload stays on them
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=60_000)
    expect(page.locator(".pico-detail .pico-h2")).to_contain_text("Mouse 12 <day 3>")
    expect(page.locator(".pico-log")).to_contain_text("fake pipeline pid")
    expect(page.locator(".pico-log")).to_contain_text("waiting")
    page.locator(".pico-run").get_by_role("button", name="Stop").click()
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("cancelled", timeout=30_000)

    button(page, "Run").click()
    expect(page.locator(".pico-history tr")).to_have_count(3)
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("Run 2")
    expect(page.locator(".pico-run .pico-log")).to_contain_text("waiting", timeout=30_000)
    run = served.lab.runs(exp.id)[-1]
    assert run.number == 2 and run.output_path == str(out / "run-0002")
    write_preview(Path(run.output_path))  # what a pipeline leaves in the run's own folder
    gate.touch()
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("completed", timeout=30_000)
    expect(button(page, "Stop")).to_have_count(0)  # an ended run offers nothing to stop
    expect(page.locator(".pico-history tr")).to_have_count(3)
    expect(page.locator(".pico-history")).to_contain_text("cancelled")
    expect(page.locator(".pico-figure img")).to_be_visible()
    expect(page.locator(".pico-results")).to_contain_text("neurons found")
    screenshot("04-detail-results")
    with page.expect_download() as download:
        page.get_by_text("Download log").click()
    log = Path(download.value.path()).read_text()
    assert "fake pipeline pid" in log and "finished: completed" in log
    page.locator(".pico-results summary").filter(has_text="Output files").click()
    with page.expect_download() as download:
        page.locator(".pico-results a").filter(has_text="done.txt").click()
    assert Path(download.value.path()).read_text() == "ok"
    button(page, "Copy").click()
    expect(button(page, "Copied")).to_be_visible()
    assert "finished" in page.evaluate("navigator.clipboard.readText()")
    page.set_viewport_size({"width": 800, "height": 900})
    screenshot("05-detail-800px")
    page.set_viewport_size({"width": 1280, "height": 800})

    other = served.lab.clone_experiment(
        exp.id,
        "Mouse 12 (more lines)",
        params={"lines": 40},
        output_path=str(served.data / "results2"),
    )
    compare_both(page)
    compare = page.locator(".pico-compare table").first
    expect(compare).to_contain_text("lines")
    expect(compare).to_contain_text(other.name)
    screenshot("06-compare")
    page.get_by_role("button", name="Resources").click()
    expect(page.locator(".pico-resources")).to_contain_text("Memory")
    screenshot("07-resources")
    page.get_by_role("button", name="Notifications").click()
    notices = page.locator(".pico-notifications")
    expect(notices).to_contain_text("An open dashboard shows a notice when any run of yours ends")
    expect(notices.get_by_placeholder("https://hooks.slack.com/services/…")).to_be_visible()
    screenshot("07-notifications")
    button(page, "Experiments").click()
    expect(page.locator(".pico-list")).to_contain_text("completed")
    screenshot("08-list")

    assert served.kernels() == 1  # the reload released the first page's kernel
    page.goto("about:blank")  # leaving the page releases its kernel (Voila's unload beacon)
    deadline = time.monotonic() + 20
    while served.kernels():
        assert time.monotonic() < deadline, "the left page's kernel is still running"
        time.sleep(0.1)


def test_cells_curation_and_compare_in_the_dashboard(page: Page, served, screenshot) -> None:
    """Click a cell, see its trace, reject it, reload, and compare two runs' cells."""
    from pico_nb import cells

    lab = served.lab
    inputs = str(served.data / "input")
    first = lab.create_experiment("Cells A", inputs, str(served.data / "a"), params={"cells": 12})
    second = lab.clone_experiment(
        first.id, "Cells B", params={"cell_seed": 1}, output_path=str(served.data / "b")
    )
    runs = []
    for exp in (first, second):
        run = lab.run_experiment(exp.id)
        assert lab.wait(run.id, timeout=120).status == "completed"
        runs.append(lab.get_run(run.id))
    open_app(page, served.url)
    page.get_by_role("button", name="Cells A").click()
    viewer = page.locator(".pico-cells")
    expect(viewer).to_contain_text("Cells (12)", timeout=30_000)
    dots = viewer.locator(".bqplot .dot")
    expect(dots).to_have_count(12)
    dots.nth(2).click(force=True)
    caption = viewer.locator(".pico-trace-captions")
    expect(caption).to_contain_text("cell #3")
    expect(caption).to_contain_text("SNR")
    expect(viewer.locator(".pico-traces")).to_contain_text("time (s)")
    screenshot("09-cell-trace")
    page.set_viewport_size({"width": 800, "height": 900})
    box = viewer.locator(".bqplot").first.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 800  # the image fits a narrow window
    screenshot("09-cell-trace-800px")
    page.set_viewport_size({"width": 1280, "height": 800})
    button(page, "Reject").click()
    expect(caption).to_contain_text("rejected")
    button(page, "Save").click()
    expect(viewer.locator(".pico-curation-status")).to_contain_text("11 of 12 cells accepted")
    expect(viewer.locator(".pico-curation-status")).to_contain_text("saved by")
    assert lab.curation(runs[0].id).rejected == [3]

    page.reload()  # the address keeps the view: the same experiment, its cells shown again
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=60_000)
    expect(page.locator(".pico-detail")).to_contain_text("Cells A", timeout=30_000)
    listed = page.locator(".pico-cell-list option").filter(has_text="#3 ")
    expect(listed).to_contain_text("rejected", timeout=30_000)
    fifth = page.locator(".pico-cell-list option").filter(has_text="#5 ")
    page.locator(".pico-cell-list select").select_option(fifth.get_attribute("value"))
    expect(caption).to_contain_text("cell #5")
    marked = viewer.locator(".bqplot .dot").nth(4)  # a pick in the list marks it on the image
    expect(marked).to_have_css("stroke", "rgb(255, 255, 255)")
    expect(viewer.locator(".bqplot .dot").nth(0)).to_have_css("opacity", "0.45")
    compare_both(page)
    table = page.locator(".pico-run-compare")
    expect(table).to_contain_text("cells accepted")
    expect(table.locator("tr").filter(has_text="cells accepted")).to_contain_text("11")
    on_disk = cells.match(
        cells.open_run(Path(runs[0].output_path)), cells.open_run(Path(runs[1].output_path))
    )
    match = page.locator(".pico-match")
    expect(match.locator(".pico-matched")).to_have_text(str(len(on_disk.pairs)))
    expect(match.locator(".pico-only-a")).to_have_text(str(on_disk.only_a))
    expect(match.locator(".pico-only-b")).to_have_text(str(on_disk.only_b))
    expect(page.locator(".pico-overlay")).to_be_visible()
    screenshot("10-compare-runs")


def test_each_run_of_one_experiment_shows_its_own_results(page: Page, served, screenshot) -> None:
    """Run, change a parameter, run again: picking Run 1 then Run 2 shows each run's numbers,
    as its own folder on disk holds them (run 2 did not overwrite run 1)."""
    from pico_nb import cells

    lab = served.lab
    exp = lab.create_experiment(
        "Two runs", str(served.data / "input"), str(served.data / "two"), params={"cells": 12}
    )
    runs = []
    for count in (12, 5):
        lab.update_experiment(exp.id, params={"cells": count})
        run = lab.run_experiment(exp.id)
        assert lab.wait(run.id, timeout=120).status == "completed"
        runs.append(lab.get_run(run.id))
    assert [Path(r.output_path).name for r in runs] == ["run-0001", "run-0002"]

    open_app(page, served.url)
    page.get_by_role("button", name="Two runs").click()
    picker = page.locator(".pico-detail .widget-dropdown").filter(has_text="Show").locator("select")
    for run in runs:
        folder = Path(run.output_path)
        on_disk = cells.open_run(folder)
        summary = json.loads((folder / "summary.json").read_text())
        picker.select_option(label=f"Run {run.number}")
        expect(page.locator(".pico-run .pico-h3")).to_contain_text(f"Run {run.number}")
        numbers = page.locator(".pico-results .pico-kpi")
        expect(numbers.filter(has_text="neurons found")).to_contain_text(str(summary["neurons"]))
        expect(page.locator(".pico-cells")).to_contain_text(f"Cells ({on_disk.count})")
        expect(page.locator(".pico-cells .bqplot .dot")).to_have_count(on_disk.count)
        hint = page.locator(".pico-traces").get_by_text("Click a cell on the image or pick it")
        expect(hint).to_be_visible()  # the empty trace plot says how to fill it
        screenshot(f"19-results-run-{run.number}")
    assert [cells.open_run(Path(r.output_path)).count for r in runs] == [12, 5]
