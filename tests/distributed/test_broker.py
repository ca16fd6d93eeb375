"""The broker going away: a run submitted meanwhile waits, queued, and runs when it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Broker, Cluster, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_run_submitted_while_the_broker_is_down_runs_when_it_is_back(
    broker: Broker, pg_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, pg_url, broker.url)
    cluster.start_worker("bw", "--slots", "1")
    try:
        lab = cluster.lab("alice")
        before = lab.run_experiment(cluster.experiment(lab, "before", lines=2))
        assert lab.wait(before.id, timeout=30).status == "completed"
        broker.stop()
        asked = time.monotonic()
        run = lab.run_experiment(cluster.experiment(lab, "while down", lines=3))
        assert time.monotonic() - asked < 10  # a clear answer, not a hang
        assert run.status == "queued"
        assert run.reason == "waiting for the broker, which is unreachable; sent when it is back"
        lab.reconcile()  # the broker is still down: it stays queued, nobody claims it
        assert lab.get_run(run.id).status == "queued"
        broker.start()
        done = lab.wait(run.id, timeout=60)
        assert done.status == "completed" and done.worker == "bw", done.reason
        assert "line 2" in lab.read_log(run.id).text

        gate = tmp_path / "gate"  # a token waiting in a broker that restarts empty is lost
        busy = lab.run_experiment(cluster.experiment(lab, "busy", wait_file=str(gate)))
        wait_for(lambda: lab.get_run(busy.id).status == "running", 30, "the worker to be busy")
        waiting = lab.run_experiment(cluster.experiment(lab, "behind it", lines=1))
        assert lab.get_run(waiting.id).reason is None  # its token was published
        broker.stop()
        broker.start()
        gate.touch()
        assert lab.wait(busy.id, timeout=30).status == "completed"
        assert lab.wait(waiting.id, timeout=60).status == "completed"
    finally:
        cluster.stop_workers()
