"""In Chromium: alice logs in through the hub, lands on her dashboard, creates, runs and follows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from pico_nb.hub.client import RemoteLab

from chromium import screenshot
from lab_server import PASSWORDS, Hub

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no hub cookies) at the dashboard's reference size."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    screenshot(tab, "last-page", "hub")
    context.close()


def field(page: Page, label: str) -> Locator:
    """The input of a dashboard form row, found by its label as a person finds it."""
    row = page.locator(".pico-form .pico-row").filter(has=page.get_by_text(label, exact=True))
    return row.locator("input, textarea").first


def log_in(page: Page, hub: Hub, user: str, password: str | None = None) -> None:
    """Fill the hub's own login form."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password or PASSWORDS[user])
    page.click("#login_submit")


def test_a_new_member_lands_on_an_empty_list_that_says_what_to_do(page: Page, hub: Hub) -> None:
    hub.add_member("fay", "fay-secret-44")
    log_in(page, hub, "fay", "fay-secret-44")
    page.wait_for_url(re.compile(r"/user/fay/voila/render/dashboard\.ipynb"), timeout=90_000)
    empty = page.locator(".pico-list .pico-muted").filter(has_text="No experiments yet")
    expect(empty).to_be_visible(timeout=90_000)
    expect(empty).to_contain_text("Click “New experiment” above to create your first")
    expect(page.get_by_role("link", name="JupyterLab")).to_have_attribute("href", "/user/fay/lab")
    screenshot(page, "01-hub-empty-list", "hub")


def test_alice_logs_in_runs_and_watches_live(page: Page, hub: Hub, tmp_path: Path) -> None:
    log_in(page, hub, "alice")
    page.wait_for_url(re.compile(r"/user/alice/voila/render/dashboard\.ipynb"), timeout=90_000)
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=90_000)

    gate = tmp_path / "gate"
    name = "Mouse <b>12</b> & day 3"
    page.get_by_role("button", name="New experiment").click()
    field(page, "Name").fill(name)
    field(page, "Input folder").fill(str(hub.data / "frames"))
    field(page, "Output folder").fill(str(hub.data / "out" / "browser"))
    page.get_by_text("Parameters", exact=True).click()
    field(page, "wait_file").fill(str(gate))
    field(page, "tqdm_steps").fill("10")
    page.get_by_role("button", name="Save & Run").click()

    log = page.locator(".pico-run .pico-log")
    expect(log).to_contain_text("waiting", timeout=60_000)
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    mine = [e for e in lab.experiments(scope="mine") if e.name == name]
    assert len(mine) == 1 and mine[0].owner == "alice"  # stored by the service, name as typed
    run = lab.runs(mine[0].id)[-1]
    assert run.status == "running"
    gate.write_text("go")  # the page learns the rest from the live log alone
    expect(log).to_contain_text("finished", timeout=30_000)
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("completed", timeout=30_000)
    expect(page.get_by_text(name).first).to_be_visible()  # HTML in a name shows as text
    assert lab.get_run(run.id).status == "completed"

    screenshot(page, "02-hub-run-completed", "hub")
    page.goto(f"{hub.url}/services/pico/")  # a browser session reaches the service by OAuth
    expect(page.locator("body")).to_contain_text("alice")
    assert json.loads(page.locator("body").inner_text())["username"] == "alice"


def test_member_sees_own_folders_links_and_run_addresses(page: Page, hub: Hub) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("bob"))
    exp = lab.create_experiment("bob's run", str(hub.data / "frames"), str(hub.data / "out" / "b"))
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
    log_in(page, hub, "bob")
    page.wait_for_url(re.compile(r"/user/bob/voila/render/dashboard\.ipynb"), timeout=90_000)
    expect(page.locator(".pico-dashboard")).to_be_visible(timeout=90_000)
    expect(page.get_by_role("link", name="JupyterLab")).to_have_attribute("href", "/user/bob/lab")
    expect(page.get_by_role("link", name="Log out")).to_be_visible()

    page.get_by_role("button", name="New experiment").click()
    expect(page.locator(".pico-form .pico-hint")).to_have_text(f"Your folders: {hub.data}")
    screenshot(page, "03-hub-form-own-folders", "hub")

    # A run's own address survives a reload under the hub, too.
    page.goto(page.url.split("?")[0] + f"?experiment={exp.id}&run={run.id}")
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("Run 1", timeout=90_000)
    page.reload()
    expect(page.locator(".pico-run .pico-h3")).to_contain_text("Run 1", timeout=90_000)
    expect(page).to_have_title(re.compile(r"^Run 1 · Experiment \d+ · PICO workbench"))
    screenshot(page, "04-hub-run-address-after-reload", "hub")

    page.get_by_role("link", name="Log out").click()
    page.wait_for_url(re.compile(r"/hub/(login|logout)"), timeout=30_000)
