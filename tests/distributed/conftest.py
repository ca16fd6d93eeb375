"""Fixtures for the distributed tests: a PostgreSQL database and two workers per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster import REDIS_URL, Cluster, flushed_redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_module_url: str) -> Iterator[Cluster]:
    """Two workers with one slot each, on the machine's Redis and PostgreSQL."""
    flushed_redis(REDIS_URL)
    world = Cluster(tmp_path_factory.mktemp("cluster"), pg_module_url, REDIS_URL)
    world.start_worker("w1", "--slots", "1")
    world.start_worker("w2", "--slots", "1")
    yield world
    world.stop_workers()
