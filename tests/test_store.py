"""The records layer: migrations from scratch, aware timestamps, and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from pico_nb import db, logstream
from pico_nb.lab import Lab
from pico_nb.models import Run
from pico_nb.settings import Settings, load_settings


def test_migration_from_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    database = db.open_database(url)
    assert db.current_revision(database.engine) == db.head_revision(database.engine)
    assert db.head_revision(database.engine) == db.SCHEMA_REVISION
    tables = set(inspect(database.engine).get_table_names())
    assert {"users", "experiments", "runs", "alembic_version"} <= tables
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migration_on_postgres(pg_url: str) -> None:
    database = db.open_database(pg_url)
    assert db.current_revision(database.engine) == db.head_revision(database.engine)
    assert "runs" in inspect(database.engine).get_table_names()


def test_upgrade_from_0001_keeps_runs_and_matches_the_models(backend: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from pico_nb.models import Base

    url = backend or f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(db.normalise_url(url))
    command.upgrade(db._alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, username, is_admin, created_at) "
            "VALUES (1, 'old', false, '2026-11-01T00:00:00+00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO experiments (id, owner_id, name, description, input_path, output_path,"
            " pipeline, params, shared, created_at, updated_at) VALUES (1, 1, 'e', '', '/i', '/o',"
            " 'pico', '{}', false, '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO runs (id, experiment_id, number, user_id, status, argv, params,"
            " input_path, output_path, log_path, queued_at, provenance) VALUES (1, 1, 1, 1,"
            " 'completed', '[]', '{}', '/i', '/o', '/l', '2026-11-01T00:00:00+00:00', '{}')"
        )
    engine.dispose()
    database = db.open_database(url)
    assert db.current_revision(database.engine) == db.SCHEMA_REVISION
    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    with database.read() as session:
        run = session.get(Run, 1)
        assert run.status == "completed" and run.needs_gpu is False and run.dispatched_at is None


def test_settings_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "pico_nb.toml").write_text("max_concurrent_runs = 3\ngpus = ['0']\n")
    monkeypatch.setenv("PICO_NB_GPUS", "1,2")
    settings = load_settings(home)
    assert settings.max_concurrent_runs == 3 and settings.gpus == ["1", "2"]
    assert settings.effective_database_url == f"sqlite:///{home / 'pico-nb.sqlite'}"
    monkeypatch.setenv("PICO_NB_MAX_CONCURRENT_RUNS", "zero")
    from pico_nb.contract.errors import ValidationError

    with pytest.raises(ValidationError) as info:
        load_settings(home)
    assert "max_concurrent_runs" in info.value.errors


WRITER = textwrap.dedent(
    """
    import sys
    from pico_nb.lab import Lab
    from pico_nb.settings import Settings

    settings = Settings.model_validate_json(sys.argv[1])
    worker, frames, out = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    lab = Lab(user=f"user{worker % 3}", settings=settings)
    for i in range(15):
        exp = lab.create_experiment(f"w{worker}-{i}", frames, f"{out}/w{worker}-{i}")
        lab.update_experiment(exp.id, description=f"updated by {worker}", params={"fr": i + 1})
    print("ok", flush=True)
    """
)


@pytest.mark.slow
def test_eight_concurrent_writers_lose_nothing(
    settings_for: Callable[..., Settings], backend: str, frames: Path, tmp_path: Path
) -> None:
    settings = settings_for(backend, pipeline_spec=None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                settings.model_dump_json(),
                str(w),
                str(frames),
                str(tmp_path / "out"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
        assert "locked" not in err
    admin = Lab(user="root-admin", settings=settings)
    Lab.operator(settings=settings).set_admin("root-admin", True)
    everything = admin.experiments(limit=1000)
    assert len(everything) == 8 * 15
    assert {e.name for e in everything} == {f"w{w}-{i}" for w in range(8) for i in range(15)}
    for exp in everything:
        worker, index = exp.name[1:].split("-")
        assert exp.description == f"updated by {worker}"
        assert exp.params["fr"] == int(index) + 1


def test_each_lab_names_its_live_logs_apart(tmp_path: Path) -> None:
    """Two labs (or two test databases) sharing one Redis never read each other's run 1."""
    first = db.open_database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    second = db.open_database(f"sqlite:///{tmp_path / 'b.sqlite'}")
    again = db.open_database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert logstream.stream_key(first, 1) != logstream.stream_key(second, 1)
    assert logstream.stream_key(again, 1) == logstream.stream_key(first, 1)  # it lasts
    assert logstream.stream_key(first, 1) != logstream.stream_key(first, 2)
