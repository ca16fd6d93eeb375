"""Shared fixtures: a data home per test, real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from pico_nb.settings import Settings, load_settings

from support import PG_ADMIN_URL, TEST_PIPELINE, write_frames

if TYPE_CHECKING:
    from pico_nb.lab import Lab

# Test tiers: a test that needs a server gets that server's marker and `services`, so
# `pytest -m "not services"` is the fast tier on SQLite files alone.
SERVICE_FIXTURES = {
    "pg_server": "postgres",
    "pg_url": "postgres",
    "pg_module_url": "postgres",
    "browser": "browser",
    "hub": "hub",
    "cluster": "redis",
    "slurm": "slurm",
}
SERVICE_FOLDERS = {"hub": "hub", "distributed": "redis", "slurm": "slurm"}
SERVICE_MARKERS = ("postgres", "redis", "browser", "hub", "slurm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the servers it needs, from its fixtures and its folder."""
    for item in items:
        needs = {
            SERVICE_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SERVICE_FIXTURES
        }
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "postgres":
            needs.add("postgres")
        folder = Path(str(item.fspath)).parent.name
        if folder in SERVICE_FOLDERS:
            needs.add(SERVICE_FOLDERS[folder])
        needs.update(m for m in SERVICE_MARKERS if item.get_closest_marker(m))
        for marker in sorted(needs):
            item.add_marker(marker)
        if needs:
            item.add_marker("services")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The machine's PostgreSQL; tests fail rather than skip if it is missing."""
    with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
        conn.execute("SELECT 1")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"pico_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    from pico_nb import db

    url = db.normalise_url(f"{base}/{name}")
    engine = db._engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_module_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL database for one test module's cluster."""
    name = f"pico_cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return ""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data home of its own for each test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def settings_for(home: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings rooted in the test's folder, with the fake pipeline as the pipeline."""

    def make(database_url: str = "", **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "data_roots": [str(tmp_path)],
            "pipeline_spec": str(TEST_PIPELINE.with_suffix(".toml")),
            "heartbeat_seconds": 0.5,
        }
        values.update(overrides)
        return load_settings(home, **values)

    return make


@pytest.fixture
def lab_for(settings_for: Callable[..., Settings], backend: str) -> Callable[..., Lab]:
    """Labs for named users on the parametrised backend."""

    from pico_nb.lab import Lab

    def make(user: str = "alice", **overrides: object) -> Lab:
        return Lab(user=user, settings=settings_for(backend, **overrides))

    return make


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """An input folder with three frames."""
    return write_frames(tmp_path / "input")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One system Chromium for the whole session: Playwright's sync API allows one at a time."""
    from chromium import running_browser

    with running_browser() as chromium:
        yield chromium
