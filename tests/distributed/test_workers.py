"""Runs through real Celery workers: spread, fairness, live logs, stop, a dying worker, GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pico_nb import logstream
from pico_nb.models import LogBytes, Run
from pico_nb.schemas import RunRecord

from cluster import Cluster, LiveFollow, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_six_runs_from_two_users_spread_over_both_workers(cluster: Cluster) -> None:
    release = cluster.data / "release-six"
    labs = {user: cluster.lab(user) for user in ("alice", "bob")}
    runs = [
        (lab, lab.run_experiment(cluster.experiment(lab, f"six {i}", lines=40, wait_file=w)).id)
        for lab in labs.values()
        for i in range(3)
        for w in [str(release)]
    ]
    lab = labs["alice"]

    def running_now() -> list[RunRecord] | None:
        now = [r for lab_, rid in runs if (r := lab_.get_run(rid)).status == "running"]
        return now if len(now) == 2 else None

    running = wait_for(running_now, 30, "both workers to take a run")
    assert {r.worker for r in running} == {"w1", "w2"}
    listing = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "workers", "--json"],
        env=cluster.env(cluster.root / "submitter"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    shown = {w["name"]: w for w in json.loads(listing.stdout)}
    assert shown["w1"]["state"] == shown["w2"]["state"] == "online"
    assert shown["w1"]["slots"] == 1 and shown["w1"]["busy"] + shown["w2"]["busy"] == 2
    release.touch()
    for lab_, rid in runs:
        done = lab_.wait(rid, timeout=60)
        assert done.status == "completed", done.reason
        text = read_all(lab_, rid)
        assert [f"line {i}" for i in range(40)] == [
            line for line in text.splitlines() if line.startswith("line ")
        ]
        assert text.rstrip().endswith("# finished: completed (exit code 0)")
        assert f"on {done.host} ({done.worker})" in text.splitlines()[1]
        assert done.provenance["worker"] == done.worker and done.provenance["packages"]
    assert {lab.get_run(rid).worker for _, rid in runs[:3]} | {
        labs["bob"].get_run(rid).worker for _, rid in runs[3:]
    } == {"w1", "w2"}


def read_all(lab: object, run_id: int) -> str:
    """The whole log through Lab.read_log, page by page."""
    text, offset = "", 0
    while True:
        chunk = lab.read_log(run_id, offset, limit=4096)  # type: ignore[attr-defined]
        text += chunk.text
        if chunk.next_offset == offset:
            return text
        offset = chunk.next_offset


def test_one_users_queue_does_not_starve_another(cluster: Cluster) -> None:
    # users with no history yet, so "longest since their last start" is a tie they share
    carol, alice, bob = (cluster.lab(u) for u in ("carol", "dora", "eve"))
    hold_w1, hold_w2 = cluster.data / "hold-w1", cluster.data / "hold-w2"
    first = carol.run_experiment(cluster.experiment(carol, "hold 1", wait_file=str(hold_w1)))
    wait_for(lambda: carol.get_run(first.id).status == "running", 30, "the first hold")
    second = carol.run_experiment(cluster.experiment(carol, "hold 2", wait_file=str(hold_w2)))
    wait_for(lambda: carol.get_run(second.id).status == "running", 30, "the second hold")
    freed = carol.get_run(first.id).worker
    mine = [alice.run_experiment(cluster.experiment(alice, f"many {i}")).id for i in range(4)]
    theirs = bob.run_experiment(cluster.experiment(bob, "one")).id
    hold_w1.touch()  # one slot frees; the other stays held by carol
    for rid in mine:
        assert alice.wait(rid, timeout=60).status == "completed"
    assert bob.wait(theirs, timeout=60).status == "completed"
    order = sorted(
        [(alice.get_run(r).started_at, "dora") for r in mine]
        + [(bob.get_run(theirs).started_at, "eve")]
    )
    assert [who for _, who in order][:2] == ["dora", "eve"]  # turns, not first come first go
    assert {alice.get_run(r).worker for r in mine} == {freed}
    hold_w2.touch()
    assert carol.wait(second.id, timeout=30).status == "completed"


def test_follower_sees_live_lines_from_a_worker(cluster: Cluster) -> None:
    lab = cluster.lab("alice")
    release = cluster.data / "release-follow"
    exp = cluster.experiment(lab, "follow", lines=5, tqdm_steps=8, wait_file=str(release))
    run = lab.run_experiment(exp)
    follow = LiveFollow(lab, run.id)
    assert follow.cued.wait(30), [e.line for e in follow.events]
    assert lab.get_run(run.id).status == "running"  # seen live, not after the end
    release.touch()
    lines = follow.lines(30)
    assert lines[-1] == "# finished: completed (exit code 0)"
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {i}" for i in range(5)]
    assert any(e.progress == 1.0 and e.stage == "motion correction" for e in follow.events)
    done = lab.get_run(run.id)
    assert (done.stage, done.progress, done.exit_code) == ("motion correction", 1.0, 0)
    with lab.db.read() as session:  # kept centrally; the stream only expires
        chunks = session.query(LogBytes).filter_by(run_id=run.id).all()
    assert (
        b"".join(c.data for c in sorted(chunks, key=lambda c: c.start))
        .decode()
        .endswith("# finished: completed (exit code 0)\n")
    )
    client = logstream.connect(cluster.broker_url)
    assert 0 < client.ttl(logstream.stream_key(lab.db, run.id)) <= logstream.STREAM_TTL


def test_stop_a_run_on_a_worker(cluster: Cluster) -> None:
    lab = cluster.lab("bob")
    exp = cluster.experiment(lab, "stubborn", ignore_term=True, wait_file=str(cluster.data / "x"))
    run = lab.run_experiment(exp)
    wait_for(lambda: "waiting" in read_all(lab, run.id), 30, "the pipeline to start waiting")
    asked = time.monotonic()
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=30)
    assert done.status == "cancelled"
    assert done.reason == "stopped by bob (killed with SIGKILL after 1 s grace)"
    assert done.signal == "SIGKILL"
    assert time.monotonic() - asked < 10
    assert read_all(lab, run.id).rstrip().endswith(f"# finished: cancelled ({done.reason})")


def test_a_worker_killed_mid_run_loses_its_run_and_the_others_go_on(cluster: Cluster) -> None:
    cluster.start_worker("gpu1", "--gpus", "3")
    lab = cluster.lab("alice")
    release = cluster.data / "release-gpu"
    exp = cluster.experiment(lab, "on the gpu", device="cuda", wait_file=str(release))
    run = lab.run_experiment(exp)
    assert run.needs_gpu
    wait_for(lambda: "waiting" in read_all(lab, run.id), 30, "the GPU run to start")
    started = lab.get_run(run.id)
    assert started.worker == "gpu1" and started.gpus == "3"  # only a worker with a free GPU
    assert "cuda visible: 3" in read_all(lab, run.id)
    cluster.kill_worker("gpu1")
    killed = time.monotonic()
    other = lab.run_experiment(cluster.experiment(lab, "elsewhere", lines=2))
    assert lab.wait(other.id, timeout=30).status == "completed"
    lost = lab.wait(run.id, timeout=30)
    assert lost.status == "failed"
    assert lost.reason.startswith("lost: worker gpu1 stopped reporting at")
    assert time.monotonic() - killed < 3 + 10  # lost_after_seconds plus a few heartbeats
    # the run's last heartbeat may predate the worker's: the listing follows within seconds
    wait_for(
        lambda: {w.name: w.state for w in lab.workers()}["gpu1"] == "lost",
        10,
        "gpu1 to be listed as lost",
    )
    assert "waiting" in read_all(lab, run.id)  # what was shipped before the end is kept
    with lab.db.read() as session:
        assert session.get(Run, run.id).status == "failed"  # and it was not re-run


def test_gpu_runs_wait_for_a_gpu_worker(cluster: Cluster) -> None:
    lab = cluster.lab("bob")
    run = lab.run_experiment(cluster.experiment(lab, "needs gpu", device="cuda", exit_code=3))
    time.sleep(1.5)  # several worker heartbeats: nobody without a GPU may take it
    assert lab.get_run(run.id).status == "queued"
    cluster.start_worker("gpu2", "--gpus", "0,1")
    done = lab.wait(run.id, timeout=30)
    assert done.worker == "gpu2" and done.gpus in ("0", "1")
    assert (done.status, done.exit_code, done.reason) == ("failed", 3, "exit code 3")


def test_resources_view_lists_workers_and_only_your_runs(cluster: Cluster) -> None:
    from pico_nb.widgets.resources import ResourcesView

    alice, bob = cluster.lab("alice"), cluster.lab("bob")
    gate = cluster.data / "gate-view"
    mine = alice.run_experiment(cluster.experiment(alice, "viewed", wait_file=str(gate)))
    theirs = bob.run_experiment(cluster.experiment(bob, "<b>hidden</b>", wait_file=str(gate)))
    wait_for(
        lambda: alice.get_run(mine.id).status == bob.get_run(theirs.id).status == "running",
        30,
        "both runs to start",
    )
    view = ResourcesView(alice, refresh_seconds=60)
    try:
        html = view.workers.value
        assert "<b>w1</b>" in html and "<b>w2</b>" in html and "online" in html
        assert "1 of 1" in html
        assert f"<td>{mine.id}</td>" in html and f"<td>{theirs.id}</td>" not in html
        slots = sum(wk.slots for wk in alice.workers() if wk.state == "online")
        assert f"<b>2</b> running of <b>{slots}</b> slots" in view.queue.value
        machines = {m.name: m for m in alice.machines()}  # as each worker measured itself
        assert {"w1", "w2"} <= set(machines)
        assert all(m.kind == "worker" and m.cpus and m.memory_total_mb for m in machines.values())
        assert sum(m.running for m in machines.values()) == 2
        assert [rid for m in machines.values() for rid in m.runs] == [mine.id]
        assert "<b>w1</b>" in view.machine.value and "Memory" in view.machine.value
    finally:
        view.close()
        gate.touch()
    assert alice.wait(mine.id, timeout=30).status == "completed"
    assert bob.wait(theirs.id, timeout=30).status == "completed"


def test_a_worker_name_already_online_is_refused(cluster: Cluster) -> None:
    twin = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "worker", "--name", "w1"],
        env=cluster.env(cluster.root / "twin"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert twin.returncode == 1
    assert twin.stderr.strip().startswith("error: worker w1 is already online on ")
    assert "Traceback" not in twin.stderr
    states = {w.name: w.state for w in cluster.lab("alice").workers()}
    assert states["w1"] == "online"
    bad = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "worker", "--name", "no/slash", "--gpus", "a"],
        env=cluster.env(cluster.root / "twin"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: --gpus: must be GPU numbers")


def test_a_worker_whose_shared_settings_differ_refuses_to_start(cluster: Cluster) -> None:
    env = cluster.env(cluster.root / "worker-odd")
    env["PICO_NB_STOP_GRACE_SECONDS"], env["PICO_NB_MAX_RUNS_PER_USER"] = "7", "2"
    odd = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "worker", "--name", "odd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert odd.returncode == 1
    assert odd.stderr == (
        "error: worker odd refuses to start: max_runs_per_user is 2 here but unset on worker "
        "w1; stop_grace_seconds is 7.0 here but 1.0 on worker w1 (every worker must share "
        "these settings; to change them, stop every worker first)\n"
    )
    assert "odd" not in {w.name for w in cluster.lab("alice").workers()}
