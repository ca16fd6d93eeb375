"""What the service takes from a Slurm job that runs as the run's owner, below the HTTP layer:
a claim, reports and log bytes, each only with the token made for that run.

The run is queued under the Slurm executor on a machine without Slurm's commands, so it waits
for submission; the test gives it a token as a submission on a lab server would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.contract.errors import PermissionDenied, ValidationError
from pico_nb.execution import job_desk
from pico_nb.lab import Lab
from pico_nb.models import Run

NODE = {
    "host": "node7",
    "supervisor_pid": 4242,
    "supervisor_start": 1.5,
    "gpus": "",
    "spool": "/tmp/spool/log",
}


@pytest.fixture
def queued(
    lab_for: Callable[..., Lab], frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Lab, Lab, int, str]:
    """(alice's Lab, the operator's Lab, a queued run of alice's, its token)."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    lab = lab_for("alice", executor="slurm")
    exp = lab.create_experiment("job", str(frames), str(tmp_path / "out"))
    run = lab.run_experiment(exp.id)
    assert lab.get_run(run.id).status == "queued"
    token, hashed = job_desk.new_token()
    with lab.db.write() as session:
        row = session.get(Run, run.id)
        assert row is not None
        row.report_token_hash = hashed
    return lab, Lab.operator(settings=lab.settings), run.id, token


def test_a_job_claims_only_its_own_run_and_once(queued: tuple[Lab, Lab, int, str]) -> None:
    lab, operator, run_id, token = queued
    with pytest.raises(PermissionDenied):
        operator.job_claim(run_id, token[::-1], "77", NODE)
    with pytest.raises(PermissionDenied):
        operator.job_claim(run_id + 1, token, "77", NODE)
    with pytest.raises(PermissionDenied):  # a member's Lab never takes a job's word
        lab.job_claim(run_id, token, "77", NODE)
    with pytest.raises(ValidationError, match=r"node\.supervisor_pid"):
        operator.job_claim(run_id, token, "77", {**NODE, "supervisor_pid": "1; kill"})
    with pytest.raises(ValidationError, match="job_id"):
        operator.job_claim(run_id, token, "77 --uid=0", NODE)
    plan = operator.job_claim(run_id, token, "77", NODE)
    assert plan is not None and plan["account"] is None  # the job already runs as the owner
    assert plan["log_path"] == "/tmp/spool/log" and plan["argv"]
    run = lab.get_run(run_id)
    assert (run.status, run.job_id, run.host, run.worker) == (
        "running",
        "77",
        "node7",
        "slurm job 77",
    )
    assert operator.job_claim(run_id, token, "78", NODE) is None  # a second job does nothing


def test_reports_and_log_reach_the_record_while_the_run_runs(
    queued: tuple[Lab, Lab, int, str],
) -> None:
    lab, operator, run_id, token = queued
    operator.job_claim(run_id, token, "77", NODE)
    beat = {"heartbeat": True, "stage": "loading", "progress": 0.5, "eta_seconds": 3.0}
    assert operator.job_report(run_id, token, beat) is None
    run = lab.get_run(run_id)
    assert (run.stage, run.progress, run.eta_seconds) == ("loading", 0.5, 3.0)
    with pytest.raises(ValidationError, match="progress"):
        operator.job_report(run_id, token, {"heartbeat": True, "progress": 7})
    with pytest.raises(ValidationError, match="processes"):
        operator.job_report(run_id, token, {"processes": {"uid": 0}})
    assert operator.job_log(run_id, token, 0, b"first\n") == 6
    assert operator.job_log(run_id, token, 0, b"first\n") == 6  # a resend is kept once
    assert operator.job_log(run_id, token, 3, b"st\nsecond\n") == 13  # overlap: the new part
    assert lab.read_log(run_id).text == "first\nsecond\n"
    lab.stop_run(run_id)
    assert operator.job_report(run_id, token, {"heartbeat": True}) == "alice"
    end = {"status": "cancelled", "reason": "stopped by alice", "exit_code": None}
    operator.job_report(run_id, token, end)
    run = lab.get_run(run_id)
    assert (run.status, run.reason) == ("cancelled", "stopped by alice")
    assert operator.job_report(run_id, token, {"status": "completed"}) == job_desk.ENDED
    assert lab.get_run(run_id).status == "cancelled"  # an ended run's record stays as it is
    with pytest.raises(PermissionDenied):
        operator.job_log(run_id, token, 13, b"late\n")
