"""Runs never lie: each fault that once left a wrong record, reproduced against real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from private_servers import PrivatePostgres, SmallDisk
from test_runs import experiment, log_text, pipeline_pid, wait_for_line

from pico_nb.contract.errors import Conflict
from pico_nb.execution import bookkeeping, local
from pico_nb.execution.worker import WorkerRuntime
from pico_nb.lab import Lab
from pico_nb.logstream import STREAM_TTL, stream_key
from pico_nb.models import LogBytes, Run, utcnow
from pico_nb.schemas import RunRecord
from pico_nb.settings import Settings

from cluster import REDIS_URL, flushed_redis, wait_for

LabFor = Callable[..., Lab]

HELPER_HOLDS_THE_PIPE = "(trap '' TERM; exec sleep 1000) & echo helper $! main $$; exec sleep 1000"


def helper_spec(tmp_path: Path) -> str:
    """A pipeline whose main process leaves a helper behind that ignores SIGTERM and keeps
    stdout open."""
    spec = tmp_path / "helper.toml"
    spec.write_text(
        f'name = "helper"\ncommand = {json.dumps(["sh", "-c", HELPER_HOLDS_THE_PIPE])}\n'
    )
    return str(spec)


def helper_pids(lab: Lab, run: RunRecord) -> tuple[int, int]:
    """(helper, main) as the pipeline printed them (the header's command line mentions them)."""
    for event in lab.follow_log(run.id):
        if event.line is not None and event.line.startswith("helper "):
            words = event.line.split()
            return int(words[1]), int(words[3])
    raise AssertionError(f"no helper line; log:\n{log_text(lab, run)}")


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def supervisor_of(lab: Lab, run_id: int) -> psutil.Process:
    """The run's recorded supervisor process."""
    with lab.db.read() as session:
        return psutil.Process(session.get(Run, run_id).supervisor_pid)


@pytest.mark.slow
def test_a_helper_holding_the_pipe_does_not_keep_a_killed_run_alive(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(pipeline_spec=helper_spec(tmp_path))
    run = lab.run_experiment(experiment(lab, frames, tmp_path))
    helper, main = helper_pids(lab, run)
    os.kill(main, signal.SIGKILL)
    done = lab.wait(run.id, timeout=60)
    assert (done.status, done.signal) == ("failed", "SIGKILL")
    assert done.reason == "killed by SIGKILL — likely out of memory"
    wait_for(lambda: gone(helper), 30, "the helper to be killed with its group")
    assert "# finished: failed (killed by SIGKILL" in log_text(lab, done)


@pytest.mark.slow
def test_a_stop_reaches_a_helper_holding_the_pipe(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(pipeline_spec=helper_spec(tmp_path))
    run = lab.run_experiment(experiment(lab, frames, tmp_path))
    helper, _main = helper_pids(lab, run)
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=60)
    assert (done.status, done.reason, done.signal) == ("cancelled", "stopped by alice", "SIGTERM")
    wait_for(lambda: gone(helper), 30, "the helper to be killed with its group")


@pytest.mark.slow
def test_a_stop_right_after_the_start_cancels_the_run(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(lost_after_seconds=2)
    for i in range(3):
        exp_id = experiment(lab, frames, tmp_path, f"e{i}", wait_file=str(tmp_path / "never"))
        run = lab.run_experiment(exp_id)
        lab.stop_run(run.id)  # within the supervisor's first milliseconds
        done = lab.wait(run.id, timeout=60)
        assert (done.status, done.reason) == ("cancelled", "stopped by alice"), done.reason


def test_a_live_stranger_with_the_supervisors_pid_is_not_taken_for_it(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(lost_after_seconds=1)
    never = str(tmp_path / "never")
    run = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=never))
    queued = lab.run_experiment(experiment(lab, frames, tmp_path, "b"))
    assert queued.status == "queued"
    wait_for_line(lab, run, "waiting")
    pipeline = psutil.Process(pipeline_pid(lab, run))
    wait_for(lambda: lab.get_run(run.id).pid, 30, "the supervisor to record the pipeline")
    supervisor = supervisor_of(lab, run.id)
    supervisor.kill()
    supervisor.wait(10)
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)  # started later
    try:
        with lab.db.write() as session:  # as after a reboot: the pid now names another process
            session.get(Run, run.id).supervisor_pid = stranger.pid
        done = lab.wait(run.id, timeout=30)
        assert done.status == "failed"
        assert done.reason.startswith("lost: supervisor stopped reporting at")
        assert stranger.poll() is None  # neither taken for the supervisor nor killed
        wait_for(lambda: gone(pipeline.pid), 30, "the run's own orphan to be killed")
        assert lab.wait(queued.id, timeout=60).status == "completed"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_follower_of_the_only_run_sees_it_lost_when_its_supervisor_dies(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(lost_after_seconds=1)
    run = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=str(tmp_path / "n")))
    lines = lab.follow_log(run.id)
    for event in lines:  # attached, and the pipeline is waiting
        if event.line is not None and "waiting" in event.line:
            break
    wait_for(lambda: lab.get_run(run.id).pid, 30, "the supervisor to record the pipeline")
    supervisor = supervisor_of(lab, run.id)
    supervisor.kill()  # no other supervisor is left to notice, and no one calls wait()
    supervisor.wait(10)
    finished = threading.Event()
    threading.Thread(target=lambda: (list(lines), finished.set()), daemon=True).start()
    assert finished.wait(30), "the follower still waits on a run nobody supervises"
    done = lab.get_run(run.id)
    assert done.status == "failed" and done.reason.startswith("lost: supervisor stopped")


def test_a_stop_racing_a_claim_stops_the_claimed_run(
    settings_for: Callable[..., Settings], pg_url: str, frames: Path, tmp_path: Path
) -> None:
    settings = settings_for(pg_url, max_concurrent_runs=1)
    lab = Lab(user="alice", settings=settings)
    gate = tmp_path / "gate"
    first = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=str(gate)))
    exp_b = experiment(lab, frames, tmp_path, "b", wait_file=str(tmp_path / "never"))
    second = lab.run_experiment(exp_b)
    assert second.status == "queued"
    stopped: list[RunRecord] = []
    stopper = threading.Thread(target=lambda: stopped.append(lab.stop_run(second.id)))
    with lab.db.write() as session:  # another process claims the run; the stop arrives meanwhile
        wider = settings.model_copy(update={"max_concurrent_runs": 2})
        plans = local._claim(session, wider)
        assert list(plans) == [second.id]
        session.flush()
        stopper.start()
        with psycopg.connect(pg_url, autocommit=True) as watcher:
            wait_for(
                lambda: watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"
                ).fetchone()[0],  # type: ignore[index]
                30,
                "the stop to wait for the claim's transaction",
            )
    stopper.join(30)
    assert stopped and stopped[0].status == "running"  # the claim stands, with the stop on it
    local._launch(lab.db, settings, second.id, plans[second.id])  # the claimer launches it
    done = lab.wait(second.id, timeout=60)
    assert (done.status, done.reason) == ("cancelled", "stopped by alice")
    gate.touch()
    assert lab.wait(first.id, timeout=60).status == "completed"


CLAIM_THEN_DIE = """
import os, signal, sys
from pico_nb.db import open_database
from pico_nb.execution import bookkeeping, local
from pico_nb.execution.worker import WorkerRuntime
from pico_nb.logstream import STREAM_TTL, stream_key
from pico_nb.settings import Settings
settings = Settings.model_validate_json(sys.argv[1])
with open_database(settings.effective_database_url).write() as session:
    print(list(local._claim(session, settings)), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the claim is committed; no supervisor was launched
"""


@pytest.mark.slow
def test_a_caller_killed_between_claim_and_launch_leaves_the_run_queued(
    settings_for: Callable[..., Settings], backend: str, frames: Path, tmp_path: Path
) -> None:
    settings = settings_for(backend, max_concurrent_runs=1, lost_after_seconds=1)
    lab = Lab(user="alice", settings=settings)
    gate = tmp_path / "gate"
    first = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=str(gate)))
    second = lab.run_experiment(experiment(lab, frames, tmp_path, "b", lines=5))
    wider = settings.model_copy(update={"max_concurrent_runs": 2})
    caller = subprocess.run(
        [sys.executable, "-c", CLAIM_THEN_DIE, wider.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert caller.returncode == -signal.SIGKILL and caller.stdout.strip() == f"[{second.id}]"
    assert lab.get_run(second.id).status == "running"
    back = wait_for(
        lambda: (lab.reconcile(), lab.get_run(second.id))[1].status == "queued",
        30,
        "the orphaned claim to go back to the queue",
    )
    assert back
    gate.touch()
    assert lab.wait(first.id, timeout=60).status == "completed"
    done = lab.wait(second.id, timeout=60)
    assert (done.status, done.reason) == ("completed", "exit code 0")
    assert log_text(lab, done).count("# run 1 by alice") == 1


@pytest.mark.slow
def test_a_dead_peer_is_found_and_its_slot_filled_with_nobody_looking(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(max_concurrent_runs=2, lost_after_seconds=1)
    gate, never = tmp_path / "gate", str(tmp_path / "never")
    alive = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=str(gate)))
    doomed = lab.run_experiment(experiment(lab, frames, tmp_path, "b", wait_file=never))
    waiting = lab.run_experiment(experiment(lab, frames, tmp_path, "c", lines=3))
    assert [r.status for r in (alive, doomed, waiting)] == ["running", "running", "queued"]
    wait_for_line(lab, doomed, "waiting")
    pipeline = psutil.Process(pipeline_pid(lab, doomed))
    supervisor = supervisor_of(lab, doomed.id)
    supervisor.kill()
    supervisor.wait(10)
    # No Lab call below reconciles: only the surviving supervisor can notice.
    wait_for(lambda: lab.get_run(waiting.id).status == "completed", 60, "the queued run to run")
    lost = lab.get_run(doomed.id)
    assert lost.status == "failed" and lost.reason.startswith("lost: supervisor stopped")
    wait_for(lambda: gone(pipeline.pid), 30, "the dead peer's orphan to be killed")
    gate.touch()
    assert lab.wait(alive.id, timeout=60).status == "completed"


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


def supervisor_output(settings: Settings, run_id: int) -> str:
    """What the run's supervisor said on its own output (a file, as it runs detached)."""
    path = settings.home / "logs" / "supervisors" / f"run_{run_id}.out"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.postgres
def test_a_database_outage_is_ridden_out_and_the_log_keeps_flowing(
    settings_for: Callable[..., Settings],
    private_pg: PrivatePostgres,
    frames: Path,
    tmp_path: Path,
) -> None:
    settings = settings_for(private_pg.url)
    lab = Lab(user="alice", settings=settings)
    gate = tmp_path / "gate"
    run = lab.run_experiment(experiment(lab, frames, tmp_path, wait_file=str(gate)))
    wait_for_line(lab, run, "waiting")
    wait_for(lambda: lab.get_run(run.id).pid, 30, "the supervisor to record the pipeline")
    private_pg.stop()
    wait_for(
        lambda: "database unreachable" in supervisor_output(settings, run.id),
        30,
        "a heartbeat to fail",
    )
    gate.touch()  # the pipeline goes on, and finishes, while the database is down
    log = Path(run.log_path)
    wait_for(lambda: "# finished: completed" in log.read_text(), 60, "the whole log, written")
    private_pg.start()
    done = lab.wait(run.id, timeout=60)
    assert (done.status, done.reason) == ("completed", "exit code 0")
    assert "database reachable again" in supervisor_output(settings, run.id)


@pytest.mark.postgres
def test_an_outage_longer_than_allowed_stops_the_run_and_says_so(
    settings_for: Callable[..., Settings],
    private_pg: PrivatePostgres,
    frames: Path,
    tmp_path: Path,
) -> None:
    settings = settings_for(private_pg.url, db_outage_seconds=2)
    lab = Lab(user="alice", settings=settings)
    run = lab.run_experiment(experiment(lab, frames, tmp_path, wait_file=str(tmp_path / "never")))
    wait_for_line(lab, run, "waiting")
    wait_for(lambda: lab.get_run(run.id).pid, 30, "the supervisor to record the pipeline")
    pipeline = psutil.Process(pipeline_pid(lab, run))
    private_pg.stop()
    wait_for(lambda: gone(pipeline.pid), 60, "the supervisor to stop the pipeline")
    private_pg.start()
    done = lab.wait(run.id, timeout=60)
    assert done.status == "failed"
    assert done.reason.startswith("lost contact with the database for "), done.reason
    assert f"# finished: failed ({done.reason})" in log_text(lab, done)


@pytest.fixture
def full_log_folder(home: Path) -> Iterator[Path]:
    """alice's log folder on a 3 MB disk of its own (the database stays on the big one)."""
    disk = SmallDisk(home / "logs" / "alice")
    try:
        yield disk.folder
    finally:
        disk.close()


def test_a_full_disk_fails_the_run_promptly_and_says_why(
    lab_for: LabFor, full_log_folder: Path, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for()
    run = lab.run_experiment(experiment(lab, frames, tmp_path, lines=0, flood=1_000_000))
    done = lab.wait(run.id, timeout=60)
    assert done.status == "failed"
    assert done.reason == f"no space left on device while writing the log ({run.log_path})"
    assert done.pid is not None and gone(done.pid)
    assert lab.queue().running == 0  # nothing hangs on to a slot
    again = experiment(lab, frames, tmp_path, "b")
    with pytest.raises(Conflict, match="no space left on device for the run's log "):
        lab.run_experiment(again)
    assert lab.runs(again) == []  # refused before anything was recorded


@pytest.mark.redis
def test_a_restarted_worker_keeps_the_log_tail_only_its_spool_had(
    settings_for: Callable[..., Settings], frames: Path, tmp_path: Path
) -> None:
    settings = settings_for("", executor="celery", broker_url=REDIS_URL)
    lab = Lab(user="alice", settings=settings)
    run = lab.run_experiment(experiment(lab, frames, tmp_path))
    client = flushed_redis(REDIS_URL)  # no worker here takes its token
    whole = b"# run 1 by alice\n" + b"".join(b"line %d\n" % i for i in range(51))
    shipped = whole[: whole.index(b"line 10\n")]
    with lab.db.write() as session:  # as a worker left it when it was killed mid-run
        row = session.get(Run, run.id)
        row.status, row.worker, row.host = "running", "w-restart", bookkeeping.HOST
        row.started_at = row.heartbeat_at = utcnow()
        session.add(LogBytes(run_id=run.id, start=0, stop=len(shipped), data=shipped))
    spool = settings.home / "spool" / f"run_{run.id}_1.log"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(whole)
    client.xadd(stream_key(lab.db, run.id), {"d": whole[len(shipped) :]}, id=f"{len(shipped)}-1")
    runtime = WorkerRuntime(lab.db, settings, "w-restart", 1, [])
    runtime.start()
    runtime.close()
    lost = lab.get_run(run.id)
    assert (lost.status, lost.reason) == ("failed", "lost: worker w-restart restarted while it ran")
    client.delete(stream_key(lab.db, run.id))  # Redis restarted: only the database is left
    assert lab.read_log(run.id, 0).text == whole.decode()
    assert not spool.exists()


@pytest.mark.redis
def test_a_lost_worker_runs_stream_expires(
    settings_for: Callable[..., Settings], frames: Path, tmp_path: Path
) -> None:
    settings = settings_for("", executor="celery", broker_url=REDIS_URL, lost_after_seconds=1)
    lab = Lab(user="alice", settings=settings)
    run = lab.run_experiment(experiment(lab, frames, tmp_path))
    client = flushed_redis(REDIS_URL)
    with lab.db.write() as session:  # a worker elsewhere that stopped reporting long ago
        row = session.get(Run, run.id)
        row.status, row.worker, row.host = "running", "w-gone", "another-host"
        row.started_at = row.heartbeat_at = utcnow() - timedelta(minutes=5)
    client.xadd(stream_key(lab.db, run.id), {"d": b"line\n"}, id="0-1")
    assert lab.reconcile() == [run.id]
    assert 0 < client.ttl(stream_key(lab.db, run.id)) <= STREAM_TTL
