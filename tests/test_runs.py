"""Runs as real detached processes: lifecycle, logs, stop, crash recovery, queue and slots."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pico_nb.contract.errors import Conflict
from pico_nb.execution.runas import ALLOWED_ENV
from pico_nb.lab import Lab
from pico_nb.schemas import QueueRecord, RunRecord

LabFor = Callable[..., Lab]


def experiment(lab: Lab, frames: Path, tmp_path: Path, name: str = "exp", **params: object) -> int:
    out = tmp_path / "out" / f"{lab.username}-{name}"
    return lab.create_experiment(name, str(frames), str(out), params=params).id


def log_text(lab: Lab, run: RunRecord) -> str:
    return Path(lab.get_run(run.id).log_path).read_text(errors="replace")


def wait_for_line(lab: Lab, run: RunRecord, needle: str) -> None:
    """Follow the log until a line appears: an event, not a sleep."""
    for event in lab.follow_log(run.id):
        if event.line is not None and needle in event.line:
            return
    raise AssertionError(f"{needle!r} never appeared; log:\n{log_text(lab, run)}")


def pipeline_pid(lab: Lab, run: RunRecord) -> int:
    """The pipeline's pid as it printed it, known as soon as its first line is in the log."""
    for line in log_text(lab, run).splitlines():
        if line.startswith("fake pipeline pid "):
            return int(line.split()[3])
    raise AssertionError("the pipeline has not started")


def test_completed_run_keeps_log_and_record(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    exp_id = experiment(lab, frames, tmp_path, lines=3, stderr_lines=2)
    run = lab.run_experiment(exp_id)
    assert run.number == 1 and run.status in ("queued", "running")
    assert run.argv[-4:] == ["--big_line_mb", "0", "--device", "cpu"]
    assert run.provenance["packages"]["python"] and run.provenance["user"] == "alice"
    done = lab.wait(run.id, timeout=60)
    assert (done.status, done.exit_code, done.reason) == ("completed", 0, "exit code 0")
    assert done.started_at and done.finished_at and done.finished_at >= done.started_at
    text = log_text(lab, done)
    assert text.startswith("# experiment")
    assert "# run 1 by alice" in text and "# command:" in text
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body.index("line 0") < body.index("err 0") < body.index("line 1") < body.index("err 1")
    assert "finished" in body
    assert lab.get_experiment(exp_id).status == "completed"
    assert (Path(done.output_path) / "done.txt").read_text() == "ok"


@pytest.mark.slow
def test_rerun_keeps_history(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    exp_id = experiment(lab, frames, tmp_path, exit_code=3)
    first = lab.wait(lab.run_experiment(exp_id).id, timeout=60)
    assert (first.status, first.exit_code, first.reason) == ("failed", 3, "exit code 3")
    lab.update_experiment(exp_id, params={"exit_code": 0})
    second = lab.wait(lab.run_experiment(exp_id).id, timeout=60)
    runs = lab.runs(exp_id)
    assert [(r.number, r.status) for r in runs] == [(1, "failed"), (2, "completed")]
    assert runs[0].log_path != runs[1].log_path
    assert Path(first.log_path).exists() and Path(second.log_path).exists()
    assert runs[0].params["exit_code"] == 3 and runs[1].params["exit_code"] == 0


def test_failure_reason_names_the_pipelines_last_error(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for()
    said = "crop_parameter: 153+1000 > 256"
    exp_id = experiment(lab, frames, tmp_path, exit_code=2, stderr_lines=2, error_line=said)
    done = lab.wait(lab.run_experiment(exp_id).id, timeout=60)
    assert (done.status, done.reason) == ("failed", f"exit code 2: {said}")
    assert lab.runs(exp_id)[-1].reason == f"exit code 2: {said}"  # the history's Reason
    assert f"# finished: failed (exit code 2: {said})" in log_text(lab, done)


def test_edit_and_second_run_refused_while_active(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for()
    gate = tmp_path / "gate"
    exp_id = experiment(lab, frames, tmp_path, wait_file=str(gate))
    run = lab.run_experiment(exp_id)
    wait_for_line(lab, run, "waiting")
    with pytest.raises(Conflict):
        lab.update_experiment(exp_id, name="x")
    with pytest.raises(Conflict):
        lab.run_experiment(exp_id)
    with pytest.raises(Conflict):
        lab.delete_experiment(exp_id)
    gate.touch()
    assert lab.wait(run.id, timeout=60).status == "completed"
    with pytest.raises(Conflict):
        lab.stop_run(run.id)


@pytest.mark.slow
def test_run_survives_its_caller_being_killed(
    settings_for: Callable[..., object], backend: str, frames: Path, tmp_path: Path
) -> None:
    settings = settings_for(backend)
    lab = Lab(user="alice", settings=settings)  # type: ignore[arg-type]
    gate = tmp_path / "gate"
    exp_id = experiment(lab, frames, tmp_path, wait_file=str(gate), lines=50)
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pico_nb.lab import Lab
        from pico_nb.settings import Settings
        lab = Lab(user="alice", settings=Settings.model_validate_json(sys.argv[1]))
        run = lab.run_experiment({exp_id})
        print(run.id, flush=True)
        for event in lab.follow_log(run.id):
            if event.line == "waiting":
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    caller = subprocess.run(
        [sys.executable, "-c", script, settings.model_dump_json()],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert caller.returncode == -signal.SIGKILL
    run_id = int(caller.stdout.split()[0])
    assert lab.get_run(run_id).status == "running"
    gate.touch()
    done = lab.wait(run_id, timeout=60)
    assert done.status == "completed"
    text = log_text(lab, done)
    assert all(f"line {i}" in text for i in range(50)) and "finished" in text


def test_stop_a_running_run(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    exp_id = experiment(lab, frames, tmp_path, wait_file=str(tmp_path / "never"))
    run = lab.run_experiment(exp_id)
    wait_for_line(lab, run, "waiting")
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=30)
    assert done.status == "cancelled"
    assert done.reason == "stopped by alice"
    assert done.signal == "SIGTERM" and done.pid == pipeline_pid(lab, run)
    assert not psutil.pid_exists(done.pid) or psutil.Process(done.pid).status() == "zombie"


def test_sigterm_ignored_means_sigkill_after_grace(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(stop_grace_seconds=1)
    exp_id = experiment(lab, frames, tmp_path, wait_file=str(tmp_path / "never"), ignore_term=True)
    run = lab.run_experiment(exp_id)
    wait_for_line(lab, run, "waiting")
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=30)
    assert done.status == "cancelled" and done.signal == "SIGKILL"
    assert done.reason == "stopped by alice (killed with SIGKILL after 1 s grace)"


@pytest.mark.slow
def test_supervisor_killed_is_reconciled_as_lost(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    lab = lab_for(lost_after_seconds=1.0)
    exp_id = experiment(lab, frames, tmp_path, wait_file=str(tmp_path / "never"))
    run = lab.run_experiment(exp_id)
    wait_for_line(lab, run, "waiting")
    supervisor = psutil.Process(_supervisor_pid(lab, run.id))
    pipeline = psutil.Process(pipeline_pid(lab, run))
    supervisor.kill()
    supervisor.wait(10)
    done = lab.wait(run.id, timeout=30)
    assert done.status == "failed"
    assert done.reason.startswith("lost: supervisor stopped reporting at")
    pipeline.wait(10)  # the orphaned pipeline was killed with it


def _supervisor_pid(lab: Lab, run_id: int) -> int:
    from pico_nb.models import Run

    with lab.db.read() as session:
        return session.get(Run, run_id).supervisor_pid


@pytest.mark.slow
def test_queue_one_slot_takes_turns_between_users(
    lab_for: LabFor, frames: Path, tmp_path: Path
) -> None:
    alice = lab_for("alice", max_concurrent_runs=1)
    bob = lab_for("bob", max_concurrent_runs=1)
    gates = {n: tmp_path / f"gate-{n}" for n in ("a1", "a2", "a3", "b1")}
    a1, a2, a3 = (
        experiment(alice, frames, tmp_path, n, wait_file=str(gates[n])) for n in ("a1", "a2", "a3")
    )
    b1 = experiment(bob, frames, tmp_path, "b1", wait_file=str(gates["b1"]))
    r_a1, r_a2, r_a3 = (alice.run_experiment(e) for e in (a1, a2, a3))
    r_b1 = bob.run_experiment(b1)
    assert [r.status for r in (r_a1, r_a2, r_a3, r_b1)] == ["running", "queued", "queued", "queued"]
    assert alice.queue() == QueueRecord(slots=1, running=1, queued=3, gpus=[])
    # bob queued last, but alice already has a run: his turn comes before her second
    places = [alice.get_run(r_a2.id), alice.get_run(r_a3.id), bob.get_run(r_b1.id)]
    assert [r.queue_position for r in places] == [2, 3, 1]
    wait_for_line(alice, r_a1, "waiting")
    gates["a1"].touch()
    assert alice.wait(r_a1.id, timeout=60).status == "completed"
    wait_for_line(bob, r_b1, "waiting")  # bob's run started second, by itself
    assert alice.get_run(r_a2.id).status == "queued"
    for gate in gates.values():
        gate.touch()
    for lab, run in ((alice, r_a2), (alice, r_a3), (bob, r_b1)):
        assert lab.wait(run.id, timeout=60).status == "completed"
    finished = [alice.get_run(r.id) for r in (r_a1, r_a2, r_a3)] + [bob.get_run(r_b1.id)]
    order = sorted(finished, key=lambda r: r.started_at)
    assert [r.id for r in order] == [r_a1.id, r_b1.id, r_a2.id, r_a3.id]


@pytest.mark.slow
def test_per_user_cap_lets_others_pass(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    alice = lab_for("alice", max_concurrent_runs=2, max_runs_per_user=1)
    bob = lab_for("bob", max_concurrent_runs=2, max_runs_per_user=1)
    gate = tmp_path / "gate"
    runs = [
        alice.run_experiment(experiment(alice, frames, tmp_path, "a1", wait_file=str(gate))),
        alice.run_experiment(experiment(alice, frames, tmp_path, "a2", wait_file=str(gate))),
        bob.run_experiment(experiment(bob, frames, tmp_path, "b1", wait_file=str(gate))),
    ]
    assert [r.status for r in runs] == ["running", "queued", "running"]
    gate.touch()
    labs = [alice, alice, bob]
    assert [lab.wait(r.id, timeout=60).status for lab, r in zip(labs, runs, strict=True)] == [
        "completed"
    ] * 3


def test_stopping_a_queued_run_removes_it(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    gate = tmp_path / "gate"
    first = lab.run_experiment(experiment(lab, frames, tmp_path, "a", wait_file=str(gate)))
    second = lab.run_experiment(experiment(lab, frames, tmp_path, "b"))
    assert second.status == "queued"
    stopped = lab.stop_run(second.id)
    assert stopped.status == "cancelled" and stopped.reason == "stopped by alice while queued"
    gate.touch()
    assert lab.wait(first.id, timeout=60).status == "completed"
    assert lab.get_run(second.id).status == "cancelled"
    assert lab.get_run(second.id).started_at is None


@pytest.mark.slow
def test_gpus_are_assigned_per_run(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for(max_concurrent_runs=3, gpus=["0", "1"])
    gate = tmp_path / "gate"
    runs = [
        lab.run_experiment(experiment(lab, frames, tmp_path, f"g{i}", wait_file=str(gate)))
        for i in range(3)
    ]
    assert [r.status for r in runs] == ["running", "running", "queued"]
    assert sorted(r.gpus for r in runs[:2]) == ["0", "1"]
    for run in runs[:2]:
        wait_for_line(lab, run, "waiting")
        env = psutil.Process(pipeline_pid(lab, run)).environ()
        assert env["CUDA_VISIBLE_DEVICES"] == run.gpus
    gate.touch()
    assert lab.wait(runs[2].id, timeout=60).status == "completed"
    assert lab.get_run(runs[2].id).gpus in ("0", "1")


@pytest.mark.slow
def test_two_processes_racing_for_one_slot(
    settings_for: Callable[..., object], backend: str, frames: Path, tmp_path: Path
) -> None:
    settings = settings_for(backend, max_concurrent_runs=1)
    lab = Lab(user="alice", settings=settings)  # type: ignore[arg-type]
    gate = tmp_path / "gate"
    ids = [experiment(lab, frames, tmp_path, f"r{i}", wait_file=str(gate)) for i in range(6)]
    script = textwrap.dedent(
        """
        import sys
        from pico_nb.lab import Lab
        from pico_nb.settings import Settings
        lab = Lab(user="alice", settings=Settings.model_validate_json(sys.argv[1]))
        for exp_id in sys.argv[2:]:
            lab.run_experiment(int(exp_id))
            lab.reconcile()
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, settings.model_dump_json(), *map(str, chunk)]  # type: ignore[attr-defined]
        )
        for chunk in (ids[0::2], ids[1::2])
    ]
    assert [p.wait(60) for p in procs] == [0, 0]
    runs = [lab.runs(i)[0] for i in ids]
    assert sum(r.status == "running" for r in runs) == 1
    assert sum(r.status == "queued" for r in runs) == 5
    gate.touch()
    finished = [lab.wait(r.id, timeout=120) for r in runs]
    assert all(r.status == "completed" for r in finished)
    spans = sorted((r.started_at, r.finished_at) for r in finished)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # never overlapped


@pytest.mark.slow
def test_three_followers_read_one_run(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    exp_id = experiment(lab, frames, tmp_path, lines=2000, tqdm_steps=50)
    run = lab.run_experiment(exp_id)
    settings_json = lab.settings.model_dump_json()
    script = textwrap.dedent(
        f"""
        import sys
        from pico_nb.lab import Lab
        from pico_nb.settings import Settings
        lab = Lab(user="alice", settings=Settings.model_validate_json(sys.argv[1]))
        lines = [e.line for e in lab.follow_log({run.id}) if e.line is not None]
        print(sum(1 for l in lines if l.startswith("line ")))
        """
    )
    followers = [
        subprocess.run(
            [sys.executable, "-c", script, settings_json],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(3)
    ]
    assert [f.stdout.strip() for f in followers] == ["2000"] * 3
    done = lab.wait(run.id, timeout=60)
    assert done.stage == "motion correction" and done.progress == 1.0


def test_a_million_lines(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    run = lab.run_experiment(experiment(lab, frames, tmp_path, lines=0, flood=1_000_000))
    done = lab.wait(run.id, timeout=120)
    assert done.status == "completed"
    text = log_text(lab, done)
    assert "flood 0\n" in text and "flood 999999\n" in text
    assert text.count("\nflood ") == 1_000_000


def test_huge_line_and_invalid_utf8(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    run = lab.run_experiment(experiment(lab, frames, tmp_path, big_line_mb=10))
    done = lab.wait(run.id, timeout=120)
    assert done.status == "completed"
    chunk = lab.read_log(done.id, 0)
    assert chunk.text.startswith("# experiment")
    offset, text = 0, ""
    while True:
        chunk = lab.read_log(done.id, offset)
        text += chunk.text
        if chunk.next_offset == offset:
            break
        offset = chunk.next_offset
    assert "after big line" in text and "\ufffd" in text
    assert text.count("x") >= 10 << 20


@pytest.mark.slow
def test_a_missing_pipeline_fails_cleanly(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    spec = tmp_path / "broken.toml"
    spec.write_text('name = "broken"\ncommand = ["/nonexistent/pico"]\n')
    lab = lab_for(pipeline_spec=str(spec))
    run = lab.run_experiment(experiment(lab, frames, tmp_path))
    done = lab.wait(run.id, timeout=30)
    assert done.status == "failed" and "could not start" in done.reason
    # the slot is free again
    run2 = lab.run_experiment(experiment(lab, frames, tmp_path, "b"))
    assert lab.wait(run2.id, timeout=30).status == "failed"


def test_environment_of_the_pipeline(
    lab_for: LabFor, frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = lab_for()
    secrets = {
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "JPY_API_TOKEN": "service-token",
        "PICO_NB_DATABASE_URL": "postgresql://pico:password@db/pico",
        "PICO_NB_BROKER_URL": "redis://:password@redis/0",
        "AWS_SECRET_ACCESS_KEY": "key",
    }
    for name, value in {**secrets, "OMP_NUM_THREADS": "2", "LC_ALL": "C.UTF-8"}.items():
        monkeypatch.setenv(name, value)  # the launching process has them; the pipeline may not
    run = lab.run_experiment(experiment(lab, frames, tmp_path, wait_file=str(tmp_path / "gate")))
    wait_for_line(lab, run, "waiting")
    pid = pipeline_pid(lab, run)
    proc = psutil.Process(pid)
    env = proc.environ()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "PICO_NB_SUPERVISOR_SETTINGS" not in env and "PICO_NB_SUPERVISOR_PLAN" not in env
    assert not set(secrets) & set(env)
    assert set(env) <= ALLOWED_ENV | {"HOME", "USER", "LOGNAME", "LC_ALL"}
    assert env["OMP_NUM_THREADS"] == "2" and env["LC_ALL"] == "C.UTF-8"
    assert os.getpgid(pid) == pid != os.getpgid(0)
    assert proc.cwd() == run.output_path
    (tmp_path / "gate").touch()
    assert lab.wait(run.id, timeout=30).status == "completed"


def test_a_follower_can_stop_early(lab_for: LabFor, frames: Path, tmp_path: Path) -> None:
    lab = lab_for()
    gate = tmp_path / "gate"
    run = lab.run_experiment(experiment(lab, frames, tmp_path, wait_file=str(gate)))
    seen: list[str] = []
    for event in lab.follow_log(run.id, stop=lambda: "waiting" in seen):
        if event.line is not None:
            seen.append(event.line)
    assert seen[-1] == "waiting" and lab.get_run(run.id).status == "running"
    gate.touch()
    assert lab.wait(run.id, timeout=60).status == "completed"
