"""The per-user cap holds across workers, and a capped user's run starts once they are under it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import Broker, Cluster, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def capped(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    """Two one-slot workers on a broker of their own, with max_runs_per_user = 1."""
    broker = Broker(tmp_path)
    broker.start()
    cluster = Cluster(tmp_path, pg_url, broker.url)
    cluster.values["max_runs_per_user"] = 1
    cluster.start_worker("c1", "--slots", "1")
    cluster.start_worker("c2", "--slots", "1")
    yield cluster
    cluster.stop_workers()
    broker.stop()


def test_one_run_per_user_across_workers(capped: Cluster) -> None:
    alice, bob = capped.lab("alice"), capped.lab("bob")
    gate = capped.data / "gate"
    first = alice.run_experiment(capped.experiment(alice, "first", wait_file=str(gate)))
    second = alice.run_experiment(capped.experiment(alice, "second", lines=1))
    wait_for(lambda: alice.get_run(first.id).status == "running", 30, "alice's first run")
    other = bob.run_experiment(capped.experiment(bob, "bob's", wait_file=str(gate)))
    wait_for(lambda: bob.get_run(other.id).status == "running", 30, "bob's run on the free slot")
    assert alice.get_run(second.id).status == "queued"  # a slot was free, but alice is at her cap
    gate.touch()
    done_first, done_second = alice.wait(first.id, timeout=30), alice.wait(second.id, timeout=30)
    assert done_second.status == "completed"
    assert done_second.started_at >= done_first.finished_at
    assert bob.wait(other.id, timeout=30).status == "completed"
