"""The hub tests' run scenarios again, with the service on PostgreSQL and Celery workers.

The test functions are the same objects as in test_api and test_survival; only the `hub`
fixture differs: here the service submits to two workers (two slots each) through Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from test_api import test_follow_is_live, test_remote_lab_keeps_the_lab_contract
from test_survival import (
    test_run_survives_a_hub_restart,
    test_run_survives_stopping_the_users_server,
)

from cluster import Cluster, flushed_redis
from lab_server import Hub, start_hub

REDIS_URL = os.environ.get("PICO_NB_TEST_HUB_REDIS", "redis://127.0.0.1:6379/12")

__all__ = [
    "test_follow_is_live",
    "test_remote_lab_keeps_the_lab_contract",
    "test_run_survives_a_hub_restart",
    "test_run_survives_stopping_the_users_server",
]
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> Iterator[Hub]:
    """The lab server with executor = celery, and the workers it submits to."""
    root = tmp_path_factory.mktemp("celery-hub")
    flushed_redis(REDIS_URL)
    workers = Cluster(root, pg_module_url, REDIS_URL)
    server = start_hub(
        root,
        DATABASE_URL=pg_module_url,
        EXECUTOR="celery",
        BROKER_URL=REDIS_URL,
        LOST_AFTER_SECONDS="10",
    )
    workers.start_worker("hub-w1", "--slots", "2")
    workers.start_worker("hub-w2", "--slots", "2")
    yield server
    server.stop()
    workers.stop_workers()
