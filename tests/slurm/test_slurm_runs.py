"""Runs through the Slurm executor on a real one-node cluster: PostgreSQL holds the records,
Redis carries live logs, and every run is a batch job whose process is the run's supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pico_nb.lab import Lab
from pico_nb.schemas import RunRecord
from pico_nb.settings import Settings, load_settings
from pico_nb.widgets.resources import ResourcesView
from pico_nb.widgets.run_panel import RunPanel

from cluster import REDIS_URL, LiveFollow, flushed_redis, wait_for
from slurm_cluster import SlurmCluster
from support import TEST_PIPELINE, write_frames

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class World:
    """A submitting machine's settings against the test cluster, and its shared data folder."""

    def __init__(self, root: Path, cluster: SlurmCluster, database_url: str) -> None:
        self.root, self.cluster, self.database_url = root, cluster, database_url
        self.frames = write_frames(root / "frames")

    def settings(self, **overrides: Any) -> Settings:
        """The lab's settings: executor slurm, the cluster's slurm.conf, short timings."""
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "executor": "slurm",
            "slurm_conf": self.cluster.env["SLURM_CONF"],
            "log_stream_url": REDIS_URL,
            "data_roots": [str(self.root)],
            "pipeline_spec": str(TEST_PIPELINE.with_suffix(".toml")),
            "heartbeat_seconds": 0.5,
            "lost_after_seconds": 5.0,
            "stop_grace_seconds": 2.0,
        }
        values.update(overrides)
        return load_settings(self.root / "home", **values)

    def lab(self, user: str = "alice", **overrides: Any) -> Lab:
        return Lab(user=user, settings=self.settings(**overrides))

    def start(self, lab: Lab, name: str, **params: Any) -> RunRecord:
        """A new experiment on the shared frames, run at once."""
        out = self.root / "out" / f"{lab.username}-{name}"
        exp = lab.create_experiment(name, str(self.frames), str(out), params=params)
        return lab.run_experiment(exp.id)

    def settled(self, lab: Lab, run_id: int, status: str, timeout: float = 60) -> RunRecord:
        """Reconcile (as the service's timer does) until the run reaches `status`."""

        def reached() -> RunRecord | None:
            lab.reconcile()
            run = lab.get_run(run_id)
            return run if run.status == status else None

        return wait_for(reached, timeout, f"run {run_id} to be {status}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> Iterator[World]:
    """A 2-CPU node, and a lab that submits to it."""
    root = tmp_path_factory.mktemp("slurm-lab")
    root.chmod(0o755)
    flushed_redis(REDIS_URL)  # run ids restart in this database: no stream of an older run 1
    with SlurmCluster().start(tmp_path_factory.mktemp("slurm")) as cluster:
        yield World(root, cluster, pg_module_url)


def test_a_run_completes_with_its_log_followed_live(world: World) -> None:
    lab = world.lab()
    release = world.root / "release-follow"
    run = world.start(lab, "follow", lines=5, tqdm_steps=4, wait_file=str(release))
    assert run.status == "queued" and run.job_id and run.job_id.isdigit()
    assert run.reason == f"Slurm job {run.job_id}: submitted"
    follow = LiveFollow(lab, run.id)
    assert follow.cued.wait(60), [e.line for e in follow.events]
    live = lab.get_run(run.id)
    assert live.status == "running" and live.worker == f"slurm job {run.job_id}"
    release.touch()
    lines = follow.lines(60)
    assert lines[-1] == "# finished: completed (exit code 0)"
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {i}" for i in range(5)]
    assert f"({live.worker})" in lines[1]
    done = lab.get_run(run.id)
    assert (done.status, done.exit_code, done.progress) == ("completed", 0, 1.0)
    assert done.provenance["slurm_job"] == run.job_id
    assert world.cluster.wait_finished(str(run.job_id))["JobState"] == "COMPLETED"


def test_two_runs_fill_the_node_and_a_third_waits_with_slurms_reason(world: World) -> None:
    lab = world.lab("bob")
    release = world.root / "release-three"
    runs = [world.start(lab, f"three {i}", wait_file=str(release)) for i in range(3)]

    def two_running() -> list[RunRecord] | None:
        lab.reconcile()
        now = [lab.get_run(r.id) for r in runs]
        return now if [r.status for r in now].count("running") == 2 else None

    now = wait_for(two_running, 60, "two runs to start")
    waiting = next(r for r in now if r.status == "queued")
    (node,) = lab.machines()  # sinfo's node, with the runs squeue places on it
    assert (node.name, node.kind, node.state, node.cpus) == (
        world.cluster.node,
        "node",
        "allocated",
        2,
    )
    assert (node.cpus_busy, node.memory_total_mb, node.running) == (2, 2048, 2)
    assert sorted(node.runs) == sorted(r.id for r in now if r.status == "running")
    alice = world.lab("alice")
    assert alice.machines()[0].runs == []  # bob's runs are not named to alice
    jobs = {job.run_id: job for job in lab.queue().jobs}  # squeue on bob's own jobs only
    assert sorted(jobs) == [r.id for r in runs] and alice.queue().jobs == []
    assert (jobs[waiting.id].state, jobs[waiting.id].reason) == ("PENDING", "Resources")
    assert {jobs[r].node for r in node.runs} == {world.cluster.node}
    view = ResourcesView(lab, refresh_seconds=60)  # shows what the executor reported
    try:
        assert f"<b>{world.cluster.node}</b>" in view.machine.value
        assert "2 of 2 CPUs allocated" in view.machine.value
        row = f"<td>{waiting.job_id}</td><td>{waiting.id}</td><td>PENDING</td><td>Resources</td>"
        assert row in view.workers.value
    finally:
        view.close()
    assert waiting.reason == f"Slurm job {waiting.job_id}: PENDING (Resources)"
    shown = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "--user", "bob", "show", str(waiting.experiment_id)],
        env=_cli_env(world),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"Slurm job {waiting.job_id}: PENDING (Resources)" in shown.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "--user", "bob", "workers"],
        env=_cli_env(world),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]  # not "no workers have …"
    assert [world.cluster.node, "node", "allocated", "2/2", "allocated"] in [r[:5] for r in rows]
    assert [waiting.job_id, str(waiting.id), "PENDING", "Resources"] in [r[:4] for r in rows]
    panel = RunPanel(waiting.id, lab)  # the dashboard's and JupyterLab's run view
    try:
        wait_for(lambda: "PENDING" in panel.stage_label.value, 30, "the panel's queue line")
        assert (
            panel.stage_label.value == f"queued · Slurm job {waiting.job_id}: PENDING (Resources)"
        )
    finally:
        panel.close()
    release.touch()
    for r in runs:
        assert world.settled(lab, r.id, "completed").exit_code == 0


def test_stop_escalates_to_sigkill_after_the_grace(world: World) -> None:
    lab = world.lab()
    run = world.start(lab, "stubborn", ignore_term=1, wait_file=str(world.root / "never"))
    world.settled(lab, run.id, "running")
    wait_for(lambda: "waiting" in lab.read_log(run.id).text, 30, "the pipeline to wait")
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=60)
    assert done.status == "cancelled"
    assert done.reason == "stopped by alice (killed with SIGKILL after 2 s grace)"
    assert lab.read_log(run.id).text.rstrip().endswith(f"# finished: cancelled ({done.reason})")


def test_a_queued_run_stopped_leaves_slurms_queue(world: World) -> None:
    lab = world.lab()
    release = world.root / "release-queue"
    blockers = [world.start(lab, f"blocker {i}", wait_file=str(release)) for i in range(2)]
    queued = world.start(lab, "queued", wait_file=str(release))
    for b in blockers:
        world.settled(lab, b.id, "running")
    stopped = lab.stop_run(queued.id)
    assert (stopped.status, stopped.reason) == ("cancelled", "stopped by alice while queued")
    assert world.cluster.wait_finished(str(queued.job_id))["JobState"] == "CANCELLED"
    release.touch()
    for b in blockers:
        world.settled(lab, b.id, "completed")
    assert lab.get_run(queued.id).status == "cancelled"


def test_scancel_behind_our_back_is_recorded_as_such(world: World) -> None:
    lab = world.lab()
    run = world.start(lab, "scancelled", wait_file=str(world.root / "never"))
    world.settled(lab, run.id, "running")
    world.cluster.run("scancel", str(run.job_id))
    done = world.settled(lab, run.id, "failed")
    assert done.reason == "cancelled in Slurm (scancel), not through pico-nb"


def test_a_killed_supervisor_is_lost_within_the_heartbeat_window(world: World) -> None:
    lab = world.lab()
    run = world.start(lab, "orphan", wait_file=str(world.root / "never"))
    world.settled(lab, run.id, "running")
    with lab.db.read() as session:
        from pico_nb.models import Run

        pid = session.get(Run, run.id).supervisor_pid
    os.kill(pid, signal.SIGKILL)
    done = world.settled(lab, run.id, "failed", timeout=10)
    assert done.reason.startswith(f"lost: Slurm job {run.job_id} ended FAILED")


def test_a_silent_supervisor_of_a_running_job_gets_the_outage_allowance(world: World) -> None:
    """Slurm says the job runs, so its node may only have lost the database: it is cancelled
    once its supervisor would itself have given up, not after the bare heartbeat window."""
    from datetime import timedelta

    from pico_nb.models import Run, utcnow

    outage = 4.0
    lab = world.lab(db_outage_seconds=outage)
    run = world.start(lab, "silent", wait_file=str(world.root / "never"))
    world.settled(lab, run.id, "running")
    with lab.db.read() as session:
        pid = session.get(Run, run.id).supervisor_pid
    os.kill(pid, signal.SIGSTOP)  # reports no more, while Slurm still runs the job
    try:
        with lab.db.read() as session:
            allowance_ends = session.get(Run, run.id).heartbeat_at + timedelta(
                seconds=lab.settings.lost_after_seconds + outage
            )
        done = world.settled(lab, run.id, "failed", timeout=30)
        assert utcnow() >= allowance_ends  # still running through the bare 5 s window
        assert done.reason.startswith(f"lost: the supervisor of Slurm job {run.job_id} stopped")
        assert done.reason.endswith("job cancelled")
        assert world.cluster.wait_finished(str(run.job_id))["JobState"] == "CANCELLED"
    finally:
        world.cluster.run("scancel", "--signal=KILL", str(run.job_id), check=False)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_run_survives_the_process_that_submitted_it(world: World) -> None:
    lab = world.lab()
    exp = lab.create_experiment(
        "detached", str(world.frames), str(world.root / "out" / "detached"), params={"ticks": 3}
    )
    submitted = subprocess.run(
        [sys.executable, "-m", "pico_nb.cli", "--user", "alice", "run", str(exp.id), "--json"],
        env=_cli_env(world),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["id"]
    done = world.settled(world.lab(), run_id, "completed")
    assert "tick 2" in lab.read_log(run_id).text and done.job_id


def test_slurm_refusing_a_job_fails_the_run_with_slurms_words(world: World) -> None:
    """The node has no GPU, so a run needing one asks for a gres Slurm cannot give."""
    lab = world.lab()
    run = world.start(lab, "gpu", device="cuda")
    assert run.status == "failed"
    assert run.reason.startswith("Slurm refused the job: ")
    assert "gres" in run.reason.lower()


def test_an_unreachable_controller_keeps_runs_queued_until_it_answers(world: World) -> None:
    conf = world.root / "dead-slurm.conf"
    text = Path(world.cluster.env["SLURM_CONF"]).read_text()
    dead = [line for line in text.splitlines() if not line.startswith("SlurmctldPort=")]
    conf.write_text("\n".join([*dead, "SlurmctldPort=1"]) + "\n")
    cut_off = world.lab(slurm_conf=str(conf))
    run = world.start(cut_off, "patient")
    assert run.status == "queued" and run.job_id is None
    assert run.reason.startswith("waiting for Slurm, which does not answer")
    lab = world.lab()
    with lab.db.write() as session:  # as if the failed attempt was a while ago
        from pico_nb.models import Run

        session.get(Run, run.id).dispatched_at = None
    done = world.settled(lab, run.id, "completed")
    assert done.job_id is not None


@pytest.mark.slow
def test_a_run_over_its_time_limit_is_killed_by_slurm(world: World) -> None:
    lab = world.lab(slurm_time_limit="1")
    run = world.start(lab, "too long", ticks=600, tick_seconds=0.5)
    done = world.settled(lab, run.id, "failed", timeout=150)
    assert done.reason == "killed by Slurm: TIME LIMIT after 0:01:00"


def _cli_env(world: World) -> dict[str, str]:
    """The environment of a `pico-nb` command on the submit host, configured like the lab."""
    settings = world.settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_NB_")}
    env.update(
        PICO_NB_HOME=str(settings.home),
        PICO_NB_DATABASE_URL=settings.database_url,
        PICO_NB_EXECUTOR="slurm",
        PICO_NB_SLURM_CONF=settings.slurm_conf,
        PICO_NB_LOG_STREAM_URL=REDIS_URL,
        PICO_NB_DATA_ROOTS=str(world.root),
        PICO_NB_PIPELINE_SPEC=str(settings.pipeline_spec),
        PICO_NB_HEARTBEAT_SECONDS="0.5",
    )
    return env


def test_a_run_over_its_memory_is_out_of_memory(world: World) -> None:
    lab = world.lab(slurm_memory="150M")
    run = world.start(lab, "greedy", big_line_mb=400, wait_file=str(world.root / "never"))
    done = world.settled(lab, run.id, "failed")
    if world.cluster.cgroups:  # the kernel kills for the job's cgroup: the supervisor sees it
        assert done.reason == "out of memory (Slurm OOM)"
    else:  # proctrack/linuxproc polls memory and SIGKILLs the job's processes itself
        assert done.reason == "killed by SIGKILL — likely out of memory"


def test_a_job_slurm_forgot_is_lost_once_its_heartbeat_is_stale(world: World) -> None:
    """Slurm keeps ended jobs only for MinJobAge; a record still running past that is lost."""
    from datetime import timedelta

    from pico_nb.models import Run, utcnow

    lab = world.lab()
    run = world.start(lab, "forgotten", wait_file=str(world.root / "never"))
    world.settled(lab, run.id, "running")
    world.cluster.run("scancel", str(run.job_id))
    forgotten = world.start(lab, "forgotten 2", wait_file=str(world.root / "never"))
    world.settled(lab, forgotten.id, "running")
    with lab.db.write() as session:  # as if its job ended an hour ago, unreported
        row = session.get(Run, forgotten.id)
        real_job, supervisor = str(row.job_id), row.supervisor_pid
        os.kill(supervisor, signal.SIGSTOP)  # it reports no more
        row.job_id, row.heartbeat_at = "1", utcnow() - timedelta(hours=1)
    try:
        done = world.settled(lab, forgotten.id, "failed", timeout=10)
    finally:
        world.cluster.run("scancel", "--signal=KILL", real_job)
    assert done.reason == "lost: Slurm no longer knows job 1"
    assert world.settled(lab, run.id, "failed").reason.startswith("cancelled in Slurm")
