"""Slurm jobs as their owner, on a lab server where each member is an OS account of their own.

The service submits each run with `sbatch` as the run's owner, through the same sudo helper the
pipeline starts through, so the cluster's accounting and fair share see the member. The job runs
as the member and may not open the lab's database: it reports through the pico service with a
token made for its run alone. The attacks come from bob, who may reach the service's port.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api import test_follow_is_live
from test_isolation import wait_for
from test_survival import test_run_survives_a_hub_restart

from pico_nb.hub.client import RemoteLab
from pico_nb.os_accounts import is_root

from cluster import flushed_redis
from lab_contract import release
from lab_server import Hub, start_isolated_hub
from slurm_cluster import SlurmCluster

REDIS_URL = os.environ.get("PICO_NB_TEST_MEMBER_SLURM_REDIS", "redis://127.0.0.1:6379/12")
SCRIPT_CALL = re.compile(r"main_as_owner\((\d+), '([^']+)', '([^']+)'")

__all__ = ["test_follow_is_live", "test_run_survives_a_hub_restart"]
pytestmark = [
    pytest.mark.redis,
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="creates OS accounts and a sudo rule: needs root"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    """A one-node cluster in a folder every account may enter, as a cluster's conf is."""
    root = Path(tempfile.mkdtemp(prefix="pico-slurm-members-", dir="/tmp"))
    root.chmod(0o711)
    with SlurmCluster(cpus=4, cgroups=False).start(
        root / "slurm"
    ) as running:  # accounts, not --mem
        yield running


@pytest.fixture(scope="module")
def hub(cluster: SlurmCluster) -> Iterator[Hub]:
    """The isolated lab server (SQLite in the service's private home) submitting to Slurm."""
    flushed_redis(REDIS_URL)
    root = Path(tempfile.mkdtemp(prefix="pico-slurm-hub-", dir="/tmp"))
    root.chmod(0o711)
    server = start_isolated_hub(
        root,
        EXECUTOR="slurm",
        SLURM_CONF=cluster.env["SLURM_CONF"],
        LOG_STREAM_URL=REDIS_URL,
        STOP_GRACE_SECONDS="1",
        LOST_AFTER_SECONDS="15",
    )
    yield server
    server.stop()


def batch_script(
    cluster: SlurmCluster, job_id: str, account: str = "root"
) -> subprocess.CompletedProcess[str]:
    """`scontrol write batch_script`, as an account: what Slurm keeps of the job's script."""
    return subprocess.run(
        ["runuser", "-u", account, "--", "scontrol", "write", "batch_script", job_id, "-"],
        env=cluster.env,
        capture_output=True,
        text=True,
    )


def report(url: str, run_id: int, token: str | None, body: dict[str, Any]) -> tuple[int, Any]:
    """A job's report to the service, as anyone on the network could send it."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Pico-Run-Token"] = token
    request = urllib.request.Request(
        f"{url}api/jobs/{run_id}/report", json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_members_run_is_a_slurm_job_of_their_own(hub: Hub, cluster: SlurmCluster) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    out = hub.out("alice") / "own-job"
    exp = lab.create_experiment("own job", str(hub.frames), str(out), params={"lines": 3})
    run = lab.run_experiment(exp.id)
    lines = [e.line for e in lab.follow_log(run.id) if e.line]
    done = lab.wait(run.id, timeout=120)
    assert done.status == "completed", done.reason
    assert "line 2" in lines and "finished" in lines
    assert any(line.startswith("# finished: completed") for line in lines)
    assert done.job_id and done.worker == f"slurm job {done.job_id}"
    job = cluster.job(done.job_id)
    alice = pwd.getpwnam("pico-alice")
    assert job["UserId"] == f"pico-alice({alice.pw_uid})"  # Slurm charges the member
    folder = Path(done.output_path)
    assert folder.stat().st_uid == alice.pw_uid
    assert (folder / f"slurm-{done.job_id}.out").stat().st_uid == alice.pw_uid
    script = batch_script(cluster, done.job_id).stdout
    assert SCRIPT_CALL.search(script), script
    assert "sqlite" not in script.lower() and "database" not in script.lower()  # no way in


def test_a_runs_token_reports_for_that_run_only(hub: Hub, cluster: SlurmCluster) -> None:
    alice = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    gate = hub.gate()
    exp = alice.create_experiment(
        "gated", str(hub.frames), str(hub.out("alice") / "gated"), params={"wait_file": str(gate)}
    )
    first = alice.run_experiment(exp.id)
    running = wait_for(lambda: (r := alice.get_run(first.id)).status == "running" and r)
    found = SCRIPT_CALL.search(batch_script(cluster, str(running.job_id)).stdout)
    assert found is not None
    url, token = found.group(2), found.group(3)
    # bob cannot read alice's job script, so he never learns her run's token
    refused = batch_script(cluster, str(running.job_id), account="pico-bob")
    assert "retrieval failed" in refused.stderr and token not in refused.stdout + refused.stderr
    bob = RemoteLab(url=hub.service_url(), token=hub.token("bob"))
    bobs = bob.create_experiment("bob's", str(hub.frames), str(hub.out("bob") / "b"))
    theirs = bob.run_experiment(bobs.id)
    finished = {"status": "completed", "reason": "forged"}
    assert report(url, running.id, None, finished)[0] == 401
    assert report(url, running.id, "guess" + token[5:], finished)[0] == 403
    status, answer = report(url, theirs.id, token, finished)  # alice's token, bob's run
    assert status == 403 and "does not report for that run" in answer["message"]
    status, answer = report(url, running.id, token, {"progress": 7})
    assert status == 400 and "progress" in answer["message"]
    assert bob.wait(theirs.id, timeout=120).status == "completed"
    assert alice.get_run(first.id).status == "running"  # nothing forged reached her record
    release(gate)
    done = alice.wait(first.id, timeout=120)
    assert done.status == "completed", done.reason
    status, answer = report(url, first.id, token, {"heartbeat": True})
    assert status == 200 and answer["stop"]  # a token outlives nothing: its job is told to stop
    assert alice.get_run(first.id).status == "completed"


def test_stop_reaches_a_members_job_through_slurm(hub: Hub, cluster: SlurmCluster) -> None:
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    exp = lab.create_experiment(
        "stopped",
        str(hub.frames),
        str(hub.out("alice") / "stopped"),
        params={"wait_file": str(hub.gate())},
    )
    run = lab.run_experiment(exp.id)
    wait_for(lambda: "waiting" in lab.read_log(run.id).text)
    lab.stop_run(run.id)
    done = lab.wait(run.id, timeout=60)
    assert done.status == "cancelled" and done.reason.startswith("stopped by alice"), done.reason
    assert "waiting" in lab.read_log(run.id).text
    state = wait_for(
        lambda: (job := cluster.job(str(done.job_id)))["JobState"] != "RUNNING" and job
    )
    assert state["JobState"] in ("COMPLETED", "CANCELLED", "FAILED"), state
