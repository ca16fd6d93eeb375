"""The hub tests' run scenarios again, with the service submitting every run to Slurm.

The test functions are the same objects as in test_api, test_browser (the dashboard in
Chromium) and test_survival; only the `hub` fixture differs: the service runs on PostgreSQL
with executor = slurm against a real one-node cluster, and live logs flow through Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from test_api import test_follow_is_live, test_remote_lab_keeps_the_lab_contract
from test_browser import page, test_alice_logs_in_runs_and_watches_live
from test_survival import (
    test_run_survives_a_hub_restart,
    test_run_survives_stopping_the_users_server,
)

from cluster import flushed_redis
from lab_server import Hub, start_hub
from slurm_cluster import SlurmCluster

REDIS_URL = os.environ.get("PICO_NB_TEST_SLURM_REDIS", "redis://127.0.0.1:6379/10")

__all__ = [
    "page",
    "test_alice_logs_in_runs_and_watches_live",  # the dashboard in Chromium, runs on Slurm
    "test_follow_is_live",
    "test_remote_lab_keeps_the_lab_contract",
    "test_run_survives_a_hub_restart",
    "test_run_survives_stopping_the_users_server",
]
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> Iterator[Hub]:
    """The lab server with executor = slurm, and the cluster it submits to."""
    root = tmp_path_factory.mktemp("slurm-hub")
    root.chmod(0o755)
    flushed_redis(REDIS_URL)
    cluster = SlurmCluster(cpus=4)  # 4 runs at once, as the other executors' hubs hold
    with cluster.start(tmp_path_factory.mktemp("slurm")):
        server = start_hub(
            root,
            DATABASE_URL=pg_module_url,
            EXECUTOR="slurm",
            SLURM_CONF=cluster.env["SLURM_CONF"],
            LOG_STREAM_URL=REDIS_URL,
            LOST_AFTER_SECONDS="10",
        )
        yield server
        server.stop()
