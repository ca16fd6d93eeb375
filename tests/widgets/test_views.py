"""Detail, list, results, compare and resources views against a real Lab."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from pico_nb.lab import Lab
from pico_nb.widgets.compare import CompareView
from pico_nb.widgets.dashboard import Dashboard
from pico_nb.widgets.detail import ExperimentDetail
from pico_nb.widgets.experiment_list import ExperimentList
from pico_nb.widgets.notifications import NotificationsView
from pico_nb.widgets.resources import ResourcesView
from pico_nb.widgets.results import ResultsView
from pico_nb.widgets.run_panel import BLOCK_LINES, MAX_LINES, RunPanel
from pico_nb.widgets.run_watch import RunWatcher


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a background update (threads, runs) without fixed sleeps."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_list_filters_pages_and_opens(lab: Lab, make_experiment) -> None:
    for i in range(30):
        make_experiment(f"trial {i:02d}" if i % 3 else f"<b>special</b> {i}")
    view = ExperimentList(lab, refresh_seconds=60)
    try:
        assert view.total == 30 and view.pager.value.startswith("1–25 of 30")
        view.next_button.click()
        assert view.page == 1 and "26–30" in view.pager.value
        view.search.value = "special"
        assert view.total == 10 and view.page == 0
        names = [r.name.description for r in view.rows if r.name.layout.display is None]
        assert all("<b>special</b>" in n for n in names)
        view.search.value = ""
        view.sort.value = "name"
        view.descending.value = False
        first = view.rows[0]
        assert first.name.description == "<b>special</b> 0"
        opened = []
        view.on_open(opened.append)
        first.name.click()
        assert opened == [first.experiment_id]
        view.status.value = "running"
        assert view.total == 0 and "No experiments" in view.empty.value
    finally:
        view.close()


def test_list_refreshes_itself(lab: Lab, make_experiment) -> None:
    exp = make_experiment("auto", wait_file="")
    view = ExperimentList(lab, refresh_seconds=0.2)
    try:
        assert "created" in view.rows[0].cells[0].value
        run = lab.run_experiment(exp.id)
        lab.wait(run.id, timeout=30)
        until(lambda: "completed" in view.rows[0].cells[0].value)
        assert view.rows[0].cells[1].value == "1"
    finally:
        view.close()


def test_list_compare_selection(lab: Lab, make_experiment) -> None:
    a, b = make_experiment("a"), make_experiment("b", lines=9)
    view = ExperimentList(lab, refresh_seconds=60)
    picked = []
    view.on_compare(picked.append)
    for row in view.rows[:2]:
        row.pick.value = True
    assert not view.compare_button.disabled
    view.compare_button.click()
    assert picked == [sorted([a.id, b.id])]
    view.close()
    compare = CompareView(picked[0], lab)
    assert "lines" in compare.table.value and "output_path" in compare.table.value
    assert "exit_code" not in compare.table.value
    compare.compare([a.id])
    assert "at least two" in compare.messages.value
    compare.ids.value = f"{a.id}, {'9' * 5000}"  # typed: a number no id can be
    compare.compare_typed()
    assert "experiment_id" in compare.messages.value and "Traceback" not in compare.messages.value


def test_detail_runs_stops_and_shows_history(lab: Lab, make_experiment, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    exp = make_experiment("<script>x</script>", wait_file=str(gate), lines=2)
    view = ExperimentDetail(exp.id, lab)
    try:
        assert "&lt;script&gt;" in view.header.value and "<script>" not in view.header.value
        assert "wait_file" in view.params.value and "lines" in view.params.value
        assert "Not run yet" in view.history.value
        view.buttons["Run"].click()
        until(lambda: view.panel is not None and "waiting" in view.panel.log_view.lines)
        assert view.buttons["Run"].disabled and "Stop" not in view.buttons  # the panel's only
        assert not view.panel.stop_button.disabled
        # A stop sent before the supervisor has reported once can kill it (a core race, reported).
        until(lambda: lab.get_run(view.panel.run_id).pid is not None)
        view.panel.stop_button.click()
        until(lambda: view.panel.status == "cancelled")
        until(lambda: "cancelled" in view.history.value)
        gate.touch()
        view.buttons["Run"].click()
        until(lambda: view.panel.status == "completed")
        until(lambda: view.history.value.count("<tr>") == 3)
        assert "Run 2" in view.run_picker.label
    finally:
        view.close()


def test_a_queued_run_says_it_is_queued_and_where(
    lab: Lab, make_experiment, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = lab.run_experiment(make_experiment("holds the slot", wait_file=str(gate)).id)
    view = ExperimentDetail(make_experiment("waits").id, lab)
    try:
        view.buttons["Run"].click()
        message = view.messages.value
        assert "run 1 is queued, number 1 in line" in message and "started" not in message
    finally:
        gate.touch()
        lab.wait(first.id, timeout=60)
        view.close()


def test_the_dashboard_tells_its_member_when_any_run_of_theirs_ends(
    lab: Lab, make_experiment, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run = lab.run_experiment(make_experiment("watched <b>", wait_file=str(gate)).id)
    watcher = RunWatcher(lab, refresh_seconds=0.1)
    try:
        assert run.id in watcher.active and watcher.value == ""
        gate.touch()
        lab.wait(run.id, timeout=60)
        until(lambda: "data-title=" in watcher.value)
        assert "Run 1 of “watched &lt;b&gt;” completed" in watcher.value  # escaped
        assert "exit code 0" in watcher.value and watcher.active == {}
    finally:
        watcher.close()


def test_detail_clone_highlights_parent_and_delete(lab: Lab, make_experiment) -> None:
    exp = make_experiment("parent", lines=5)
    clone = lab.clone_experiment(exp.id, "child", params={"lines": 6})
    view = ExperimentDetail(clone.id, lab)
    assert "parent: parent" in view.params.value and 'class="diff"' in view.params.value
    view.buttons["Clone"].click()
    assert view.editor.children and view.editor.children[0].mode == "clone"
    deleted = []
    view.on_deleted(deleted.append)
    view.buttons["Delete"].click()
    yes = view.confirm.children[2]
    yes.click()
    assert deleted == [clone.id] and lab.count_experiments() == 1


def write_results(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(64 * 64).reshape(64, 64) % 255).astype(np.uint8)
    cv2.imwrite(str(out / "mean.png"), pixels)
    summary = {
        "frames": 1000,
        "size": [256, 256],
        "neurons": 42,
        "total_seconds": 75.2,
        "previews": {"images": [{"title": "mean <image>", "path": "mean.png"}]},
    }
    (out / "summary.json").write_text(json.dumps(summary))


def test_results_gallery_and_plain_files(lab: Lab, make_experiment) -> None:
    exp = make_experiment("r")
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=30)
    view = ResultsView(run.id, lab)
    assert "done.txt" in view.files.value and not view.gallery.children
    write_results(Path(run.output_path))
    view.refresh()
    assert "42" in view.numbers.value and "1m 15s" in view.numbers.value
    assert "256 × 256" in view.numbers.value
    figure = view.gallery.children[0]
    assert bytes(figure.children[0].value).startswith(b"\x89PNG")
    caption, opener = figure.children[1].children
    assert "mean &lt;image&gt;" in caption.value
    opener.click()
    assert view.full_size.children[1].children[0].value == figure.children[0].value


def test_results_offer_the_pipelines_cell_size_advice_as_a_clone(lab: Lab, make_experiment) -> None:
    exp = make_experiment("small cells", lines=2)
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=30)
    summary = {"frames": 3, "suggestions": {"params": {"lines": 7}, "why": "minArea <rejected>"}}
    (Path(run.output_path) / "summary.json").write_text(json.dumps(summary))
    view = ResultsView(run.id, lab)
    notice, toolbar = view.advice.children
    assert "minArea &lt;rejected&gt;" in notice.value and "lines 7" in notice.value
    toolbar.children[0].click()
    clone = lab.get_experiment(int(view.messages.value.split("experiment ")[1].split(",")[0]))
    assert clone.parent_id == exp.id and clone.params["lines"] == 7
    assert clone.name == "small cells (suggested cell size)"
    assert (
        clone.output_path.endswith("-suggested-1")
        and lab.get_experiment(exp.id).params == exp.params
    )
    (Path(run.output_path) / "summary.json").write_text(json.dumps({"frames": 3}))
    view.refresh()
    assert view.advice.children == ()  # no advice, no notice


def test_resources_degrade_without_gpus(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    view = ResourcesView(lab, refresh_seconds=60)
    try:
        assert "CPU" in view.machine.value and "Memory" in view.machine.value
        assert "No NVIDIA GPU tools on this machine (nvidia-smi not found)." in view.gpus.value
        assert "running of <b>1</b> slots" in view.queue.value
    finally:
        view.close()


def test_resources_show_each_gpu_that_nvidia_smi_reports(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    smi = tools / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho '0, Tesla <T4>, 37, 1024, 15360'\necho '1, A100, 0, 0, 40960'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    view = ResourcesView(lab, refresh_seconds=60)
    try:
        assert "GPU 0 · Tesla &lt;T4&gt;" in view.gpus.value
        assert "37% busy · 1024 of 15360 MiB" in view.gpus.value
        assert "GPU 1 · A100" in view.gpus.value
    finally:
        view.close()


def test_detail_follows_a_run_started_elsewhere(lab: Lab, make_experiment) -> None:
    exp = make_experiment("elsewhere", lines=2)
    view = ExperimentDetail(exp.id, lab, refresh_seconds=0.2)
    try:
        assert view.panel is None
        run = lab.run_experiment(exp.id)  # as the CLI or another tab would
        until(lambda: view.panel is not None and view.panel.run_id == run.id)
        until(lambda: view.panel.status == "completed")
        until(lambda: "line 1" in view.panel.log_view.lines)
    finally:
        view.close()


def test_run_panel_keeps_a_bounded_tail(lab: Lab, make_experiment) -> None:
    exp = make_experiment("flood", flood=6000)
    run = lab.run_experiment(exp.id)
    panel = RunPanel(run.id, lab)
    try:
        until(lambda: panel.status == "completed" and not panel.following)
        lines = panel.log_view.lines
        assert len(lines) <= MAX_LINES and "finished" in lines
        assert "flood 5999" in lines and "flood 0" not in lines
        assert len(panel.log_view._inner.children) <= MAX_LINES // BLOCK_LINES
    finally:
        panel.close()
    again = RunPanel(run.id, lab)  # attaching later replays the finished run
    until(lambda: not again.following)
    assert again.log_view.lines[-1000:] == lines[-1000:]
    again.close()


def test_admin_scopes(settings_for, make_experiment, lab: Lab) -> None:
    make_experiment("alice's")
    Lab.operator(user="root", settings=settings_for("")).add_user("boss", None, is_admin=True)
    boss = Lab(user="boss", settings=settings_for(""))
    view = ExperimentList(boss, refresh_seconds=60)
    try:
        assert [v for _, v in view.scope.options] == ["mine", "shared", "all"]
        assert view.total == 1
        view.scope.value = "mine"
        assert view.total == 0 and "No experiments" in view.empty.value
    finally:
        view.close()
    assert [v for _, v in ExperimentList(lab, 60).scope.options][-1] == "visible"


def test_dashboard_navigation(lab: Lab, frames: Path, tmp_path: Path) -> None:
    board = Dashboard(lab)
    try:
        assert board.content.children == (board.list_view,)
        board.nav.value = "New experiment"
        assert board.content.children == (board.form,) and not board.list_view.active
        board.form.name.box.value = "from the dashboard"
        board.form.input_path.box.value = str(frames)
        board.form.output_path.box.value = str(tmp_path / "out")
        board.form.save_button.click()
        assert board.detail is not None and board.nav.value is None  # no tab: all are clickable
        assert "saved experiment" in board.detail.messages.value
        board.detail.buttons["Clone"].click()
        assert board.content.children[1] is board.form and board.form.mode == "clone"
        board.form.cancel_button.click()
        assert board.detail is not None and board.detail.experiment_id == board.form.experiment_id
        board.back.click()
        assert board.content.children == (board.list_view,) and board.list_view.active
        assert "from the dashboard" in board.list_view.rows[0].name.description
    finally:
        board.close()
    assert board.list_view._ticker._stopped.is_set()


@pytest.mark.slow
def test_two_runs_of_one_experiment_compare_from_its_page_and_keep_their_address(
    lab: Lab, make_experiment
) -> None:
    exp = make_experiment("re-run", lines=2)
    first = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
    board = Dashboard(lab, routing=True)
    try:
        detail = board.open_experiment(exp.id)
        detail.buttons["Compare runs"].click()
        assert "two finished runs" in detail.messages.value  # one run: nothing to compare yet
        second = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
        detail.buttons["Compare runs"].click()
        assert board.nav.value == "Compare"
        table = board.compare_view.run_table.value
        assert "re-run · run 1" in table and "re-run · run 2" in table
        runs = f"{first.id},{second.id}"
        assert f"&quot;runs&quot;: &quot;{runs}&quot;" in board.router.value
        board.open_route("view=list")
        board.open_route(f"view=compare&runs={runs}")  # a reload lands on the same comparison
        assert "re-run · run 2" in board.compare_view.run_table.value
        third = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
        board.open_route(f"view=compare&runs={runs}")
        board.compare_view.run_pickers.children[1].value = third.id  # another run, by hand
        assert "re-run · run 3" in board.compare_view.run_table.value
        picked = f"{first.id},{third.id}"
        assert f"&quot;runs&quot;: &quot;{picked}&quot;" in board.router.value
        assert "data-push" not in board.router.value  # a choice replaces the address
        board.open_route(f"view=compare&runs={picked}")  # and a reload keeps that choice
        assert [p.value for p in board.compare_view.run_pickers.children] == [first.id, third.id]
    finally:
        board.close()


@pytest.mark.slow
def test_compared_experiments_keep_the_runs_picked_for_them(lab: Lab, make_experiment) -> None:
    a, b = make_experiment("a"), make_experiment("b", lines=9)
    a1, a2, b1 = (lab.wait(lab.run_experiment(e.id).id, timeout=60) for e in (a, a, b))
    board = Dashboard(lab, routing=True)
    try:
        board.compare([a.id, b.id])
        pickers = board.compare_view.run_pickers.children
        assert [p.value for p in pickers] == [a2.id, b1.id]  # each one's latest finished run
        pickers[0].value = a1.id
        assert f"&quot;compare&quot;: &quot;{a.id},{b.id}&quot;" in board.router.value
        assert f"&quot;runs&quot;: &quot;{a1.id},{b1.id}&quot;" in board.router.value
        board.open_route("view=list")
        board.open_route(f"view=compare&compare={a.id},{b.id}&runs={a1.id},{b1.id}")  # reload
        view = board.compare_view
        assert [p.value for p in view.run_pickers.children] == [a1.id, b1.id]
        assert "lines" in view.table.value  # the experiments' differences are still shown
        board.open_route(f"view=compare&compare={a.id},{b.id}&runs={b1.id},{a1.id}")
        assert [p.value for p in view.run_pickers.children] == [a2.id, b1.id]  # not theirs
    finally:
        board.close()


@pytest.mark.slow
def test_dashboard_routes(lab: Lab, make_experiment) -> None:
    exp = make_experiment("routed")
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=60)
    board = Dashboard(lab, routing=True)
    try:
        board.open_route(f"experiment={exp.id}&run={run.id}&token=abc")
        assert board.detail is not None and board.detail.run_id == run.id
        assert f"&quot;run&quot;: &quot;{run.id}&quot;" in board.router.value
        assert "Run 1 · Experiment" in board.router.value
        board.nav.value = "Experiments"  # the tab works from a sub-page
        assert board.content.children == (board.list_view,)
        board.open_route("view=list&status=completed&search=rout")
        assert board.list_view.status.value == "completed"
        assert board.list_view.search.value == "rout"
        assert "&quot;status&quot;: &quot;completed&quot;" in board.router.value
        board.open_route("view=notifications")
        assert board.content.children == (board.notifications,)
        board.open_route("experiment=999999")
        assert "does not exist" in board.detail.messages.value
    finally:
        board.close()
    assert (
        Dashboard(lab).router.value == ""
    )  # in a JupyterLab cell the page's address is left alone


def test_notification_settings_view(lab: Lab) -> None:
    view = NotificationsView(lab)
    assert view.email.box.disabled  # no mail server configured in tests
    view.webhook.box.value = "ftp://example.org/x"
    view.save_button.click()
    assert "https://" in view.webhook.error and "Not saved" in view.messages.value
    view.webhook.box.value = "https://hooks.example.org/services/SECRET"
    view.save_button.click()
    assert "webhook: https://hooks.example.org/…" in view.current.value
    assert "SECRET" not in view.current.value and view.webhook.box.value == ""
