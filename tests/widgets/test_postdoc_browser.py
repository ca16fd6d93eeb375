"""What a postdoc sees in Chromium at 1400×900: forms that explain and never change values,
a log that follows, addresses that survive a reload, queue places and end-of-run notices."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from pico_nb.contract.spec import builtin_spec
from pico_nb.lab import Lab

from chromium import AT_BOTTOM
from support import write_frames

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SIZE = {"width": 1400, "height": 900}


def open_app(page: Page, url: str) -> None:
    page.set_viewport_size(SIZE)
    page.goto(url)
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=60_000)


def address(url: str, **route: object) -> str:
    """The dashboard's address (with its token) plus a route."""
    extra = "&".join(f"{k}={v}" for k, v in route.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


def text_field(page: Page, label: str):
    row = page.locator(".pico-form .pico-row").filter(has=page.get_by_text(label, exact=True))
    return row.locator("input, textarea").first


def param_row(page: Page, name: str):
    return page.locator(".pico-form .pico-param").filter(has=page.get_by_text(name, exact=True))


def test_form_explains_every_field_and_never_changes_values(
    page: Page, served_builtin, tmp_path: Path, screenshot
) -> None:
    movie = write_frames(tmp_path / "movie", count=5, size=(24, 32))
    spec = builtin_spec()
    served = served_builtin
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlsplit(r.url).hostname or r.url.split(":")[0]))
    open_app(page, served.url)
    icon = page.locator(".pico-dashboard .fa").first  # the bundled icon font, not a CDN's
    assert "Font Awesome" in icon.evaluate("e => getComputedStyle(e).fontFamily")
    page.get_by_role("button", name="New experiment").click()
    expect(page).to_have_title(re.compile("^New experiment · PICO workbench"))
    text_field(page, "Name").fill("trap")
    text_field(page, "Input folder").fill(str(movie))
    text_field(page, "Output folder").fill(str(tmp_path / "out"))
    for group in spec.groups():
        page.locator(".pico-form").get_by_text(group, exact=True).click()

    # Help on focus for every parameter of the spec, readable, with its ⓘ.
    for param in spec.params:
        row = param_row(page, param.name)
        expect(row.locator(".pico-info")).to_have_attribute("title", param.help)
        row.locator("input, select").first.focus()
        help_box = row.locator(".pico-help")
        expect(help_box).to_be_visible()
        expect(help_box).to_contain_text(param.help[:60])
        help_box.scroll_into_view_if_needed()
        expect(help_box).to_be_in_viewport()
        if param.unit:
            expect(row.locator(".pico-unit")).to_have_text(param.unit)
    page.locator(".pico-form .pico-h2").click()  # focus leaves the form
    expect(param_row(page, "cons").locator(".pico-help")).to_be_hidden()
    param_row(page, "cons").locator(".pico-info").hover()
    expect(param_row(page, "cons").locator(".pico-help")).to_be_visible()

    # Out-of-range input stays as typed and is explained; the error goes when fixed.
    fr = param_row(page, "fr")
    fr.locator("input").fill("-5")
    fr.locator("input").press("Tab")
    expect(fr.locator(".pico-field-error")).to_have_text("must be at least 1")
    expect(fr.locator("input")).to_have_value("-5")
    mask = param_row(page, "thresh_mask")
    mask.locator("input").fill("7")
    mask.locator("input").press("Tab")
    expect(mask.locator(".pico-field-error")).to_have_text("must be at most 1")
    expect(mask.locator("input")).to_have_value("7")
    screenshot("10-form-out-of-range")
    fr.locator("input").fill("12")
    fr.locator("input").press("Tab")
    mask.locator("input").fill("0.5")
    mask.locator("input").press("Tab")
    expect(fr.locator(".pico-field-error")).to_have_text("")
    expect(mask.locator(".pico-field-error")).to_have_text("")

    # The crop trap: refused at Save with a suggestion, fixed with one click.
    crop = param_row(page, "crop_parameter")
    for box, value in zip(crop.locator("input").all(), ("153", "303", "1000", "1000"), strict=True):
        box.fill(value)
        box.press("Tab")
    page.get_by_role("button", name=re.compile(r"Save$")).first.click()
    error = crop.locator(".pico-field-error")
    expect(error).to_contain_text("outside the input's 24×32 frame")
    expect(error).to_contain_text("suggested: 0 0 24 32 (the whole frame)")
    expect(error).to_be_in_viewport()
    assert served.lab.count_experiments() == 0
    screenshot("11-form-crop-refused")
    crop.get_by_role("button", name="Use whole frame").click()
    for box, value in zip(crop.locator("input").all(), ("0", "0", "24", "32"), strict=True):
        expect(box).to_have_value(value)
    expect(error).to_have_text("")
    page.get_by_role("button", name=re.compile(r"Save$")).first.click()
    expect(page.locator(".pico-detail")).to_be_visible()
    saved = served.lab.experiments()[0]
    assert saved.params["crop_parameter"] == [0, 0, 24, 32] and saved.params["fr"] == 12
    assert hosts <= {"127.0.0.1", "data"}, hosts  # works offline: no CDN, nothing fetched


def test_run_view_follows_the_log_queues_notifies_and_survives_reload(
    page: Page, served, frames: Path, screenshot
) -> None:
    lab: Lab = served.lab
    gate = served.data / "gate"
    page.context.grant_permissions(["notifications"])
    page.add_init_script(
        "window.picoNotes=[];const N=window.Notification;"
        "window.Notification=function(t,o){window.picoNotes.push(t+' | '+o.body);"
        "return new N(t,o)};"
        "Object.assign(window.Notification,{permission:'granted',"
        "requestPermission:()=>Promise.resolve('granted')})"
    )
    long_log = lab.create_experiment(
        "long log",
        str(frames),
        str(served.data / "a"),
        params={"lines": 400, "wait_file": str(gate)},
    )
    waiting = lab.create_experiment("waits", str(frames), str(served.data / "b"))
    later = lab.create_experiment("waits too", str(frames), str(served.data / "c"))
    first = lab.run_experiment(long_log.id)
    second, third = lab.run_experiment(waiting.id), lab.run_experiment(later.id)

    # A queued run says where it stands and what it waits for.
    open_app(page, address(served.url, experiment=later.id))
    stage = page.locator(".pico-run .pico-muted").filter(has_text="queued ·")
    expect(stage).to_have_text("queued · 2nd in line · waiting for a free slot (1 of 1 used)")
    expect(stage).to_be_in_viewport()
    screenshot("12-run-queued")

    # The running run's own address; a reload stays there.
    open_app(page, address(served.url, experiment=long_log.id, run=first.id))
    log = page.locator(".pico-run .pico-log-scroll")
    expect(page.locator(".pico-run .pico-log")).to_contain_text("waiting", timeout=60_000)
    page.reload()
    expect(page.locator(".pico-detail .pico-h2")).to_contain_text("long log")
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("Run 1")
    expect(page).to_have_title(re.compile(r"^Run 1 · Experiment \d+ · PICO workbench"))
    assert f"run={first.id}" in page.url and f"experiment={long_log.id}" in page.url
    expect(page.locator(".pico-run .pico-log")).to_contain_text("waiting", timeout=60_000)
    page.wait_for_function(f"({AT_BOTTOM})(document.querySelector('.pico-log-scroll'))")
    expect(log).to_be_in_viewport()

    # Scrolled up, the view stays put while lines arrive; "Jump to latest" follows again.
    log.hover()
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("document.querySelector('.pico-log-scroll').scrollTop < 5")
    gate.touch()
    expect(page.locator(".pico-run .pico-log")).to_contain_text("# finished: completed")
    assert log.evaluate("s => s.scrollTop") < 5
    screenshot("13-run-scrolled-up")
    page.get_by_role("button", name="Jump to latest ↓").click()
    page.wait_for_function(f"({AT_BOTTOM})(document.querySelector('.pico-log-scroll'))")

    # The watched run ended: a browser notification and a notice in the page.
    page.wait_for_function("window.picoNotes.length > 0")
    assert page.evaluate("window.picoNotes")[0] == "Run 1 of “long log” completed | exit code 0"
    expect(page.locator(".pico-toast")).to_contain_text("Run 1 of “long log” completed")
    expect(page.locator(".pico-toast")).to_be_in_viewport()
    toast = page.locator(".pico-toast").bounding_box()
    bar = page.locator(".pico-header").bounding_box()
    assert toast and bar and toast["y"] > bar["y"] + bar["height"]  # it hides no header link
    screenshot("14-run-finished-notified")

    # Back and forward work: list, then the experiment again.
    page.get_by_role("button", name="Experiments", exact=True).click()  # the tab, on a sub-page
    expect(page.locator(".pico-list")).to_be_visible()
    expect(page).to_have_title(re.compile("^Experiments · PICO workbench"))
    page.go_back()
    expect(page.locator(".pico-detail .pico-h2")).to_contain_text("long log", timeout=60_000)
    lab.wait(second.id, timeout=60)
    lab.wait(third.id, timeout=60)
