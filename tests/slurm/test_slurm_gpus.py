"""GPU runs on a node whose GPUs Slurm schedules: each run asks for one (`--gres=gpu:1`), the
pipeline sees exactly the GPU Slurm gave its job, and a run finding every GPU taken waits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_slurm_runs import World

from cluster import REDIS_URL, flushed_redis, wait_for
from lab_contract import release
from slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> Iterator[World]:
    """A node with 4 CPUs and 2 GPUs, and a lab that submits to it."""
    root = tmp_path_factory.mktemp("slurm-gpu-lab")
    root.chmod(0o755)
    flushed_redis(REDIS_URL)
    with SlurmCluster(cpus=4, gpus=2).start(tmp_path_factory.mktemp("slurm-gpu")) as cluster:
        yield World(root, cluster, pg_module_url)


def visible(text: str) -> str:
    """The CUDA_VISIBLE_DEVICES the fake pipeline printed."""
    lines = [line for line in text.splitlines() if line.startswith("cuda visible: ")]
    assert len(lines) == 1, text
    return lines[0].removeprefix("cuda visible: ")


def test_each_gpu_run_sees_the_gpu_its_job_was_given(world: World) -> None:
    lab = world.lab()
    gate = world.root / "release-gpus"
    runs = [world.start(lab, f"gpu-{n}", device="cuda", wait_file=str(gate)) for n in range(3)]
    first, second, third = runs
    for run in (first, second):
        wait_for(lambda r=run: "waiting" in lab.read_log(r.id).text, 60, f"run {run.id} to wait")
    shown = {visible(lab.read_log(run.id).text) for run in (first, second)}
    assert shown == {"0", "1"}  # one GPU each: the node's two
    for run in (first, second):
        record = lab.get_run(run.id)
        assert record.gpus == visible(lab.read_log(run.id).text)
        job = world.cluster.job(str(record.job_id))
        assert job["TresPerNode"] == "gres:gpu:1"  # what the job asked Slurm for

    def pending() -> bool:
        lab.reconcile()  # as the service's timer does: Slurm's state into the run's note
        return "PENDING (Resources)" in (lab.get_run(third.id).reason or "")

    wait_for(pending, 30, "the third run to wait for a free GPU")
    assert lab.get_run(third.id).status == "queued"
    release(gate)
    for run in runs:
        done = world.settled(lab, run.id, "completed")
        assert done.gpus in ("0", "1")
