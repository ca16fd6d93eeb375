"""The run panel's progress in Chromium, on the built-in pipeline: "stage k of n" with the
time left for the whole run while it runs, green when it completes, grey when it is stopped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pico_nb.lab import Lab

from support import DEMO_SIZE, demo_movie

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STAGE = re.compile(r"^stage (\d+) of (\d+): \S.*")


def stage_of(page: Page):
    return page.locator(".pico-run .pico-muted").filter(has_text=re.compile(r"stage \d+ of"))


def bar_colour(page: Page) -> str:
    return page.locator(".pico-run .progress-bar").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )


def test_stage_k_of_n_time_left_and_the_bar_at_the_end(
    page: Page, served_builtin, tmp_path: Path, screenshot
) -> None:
    lab: Lab = served_builtin.lab
    movie = demo_movie(tmp_path / "movie", frames=1500)
    params = {"crop_parameter": [0, 0, DEMO_SIZE, DEMO_SIZE], "fr": 10}
    exp = lab.create_experiment("stages", str(movie), str(tmp_path / "out"), params=params)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{served_builtin.url}&experiment={exp.id}")  # the analyst's way: open, click Run
    expect(page.locator(".pico-detail")).to_contain_text("stages", timeout=120_000)
    page.get_by_role("button", name=re.compile(r"^[\ue000-\uf8ff]?\s*Run$")).click()
    label = stage_of(page)
    expect(label).to_contain_text("left in all", timeout=120_000)  # the whole run's time left
    k, n = map(int, re.search(r"stage (\d+) of (\d+)", label.inner_text()).groups())  # type: ignore[union-attr]
    assert 1 <= k <= n and n >= 5, (k, n)
    (run,) = lab.runs(exp.id)
    screenshot("15-run-stage-k-of-n")
    assert lab.wait(run.id, timeout=300).status == "completed"
    expect(label).to_have_text(re.compile(rf"^last stage: stage {n} of {n}: "), timeout=30_000)
    expect(label).not_to_contain_text("left")
    assert bar_colour(page) != "rgb(148, 163, 184)"  # completed: the success colour, not grey

    again = lab.run_experiment(exp.id)  # a run stopped part way keeps a grey, partial bar
    for event in lab.follow_log(again.id):  # stopped once its third stage has begun
        if event.stage and "(stage 3 of" in event.stage:
            break
    lab.stop_run(again.id)
    assert lab.wait(again.id, timeout=60).status == "cancelled"
    page.goto(f"{served_builtin.url}&experiment={exp.id}&run={again.id}")
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("cancelled", timeout=30_000)
    expect(page.locator(".pico-run .progress-bar").first).to_have_css(
        "background-color", "rgb(148, 163, 184)"
    )
    width = page.locator(".pico-run .progress-bar").first.evaluate("e => e.style.width")
    assert width != "100%", width  # how far it got, not a full bar
    expect(stage_of(page)).to_have_text(re.compile(r"^last stage: stage \d+ of \d+: "))
    screenshot("16-run-stopped-neutral-bar")
