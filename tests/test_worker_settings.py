"""Settings every worker must share: recorded when a worker starts, a differing worker refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from pico_nb import db
from pico_nb.contract.errors import Conflict
from pico_nb.execution.worker_settings import agree, shared_values
from pico_nb.models import Worker, utcnow
from pico_nb.settings import Settings, setting_fields

SHARED = [
    "data_roots",
    "member_accounts",
    "max_runs_per_user",
    "stop_grace_seconds",
    "heartbeat_seconds",
    "lost_after_seconds",
]


def register(session: Session, name: str, settings: Settings, online: list[Worker]) -> Worker:
    """A worker's row as a starting worker writes it, checked against the online ones."""
    row = Worker(name=name, host="h", pid=1, slots=1, gpus=[], started_at=utcnow())
    session.add(row)
    agree(row, online, settings)
    return row


def test_the_marked_settings_are_those_a_worker_and_the_reconcilers_share() -> None:
    marked = [f.name for f in setting_fields() if f.marked("same_on_workers")]
    assert marked == SHARED


def test_a_worker_differing_from_the_lab_s_online_workers_is_refused(
    backend: str, settings_for: Callable[..., Settings]
) -> None:
    lab = settings_for(backend, lost_after_seconds=30)
    database = db.open_database(lab.effective_database_url)
    with database.write() as session:
        first = register(session, "w1", lab, [])
    with database.write() as session:
        first = session.get(Worker, "w1")
        assert first is not None and first.settings == shared_values(lab)
        same = register(session, "w2", settings_for(backend, lost_after_seconds=30), [first])
        assert same.settings == first.settings
    odd = settings_for(backend, lost_after_seconds=30, heartbeat_seconds=5, max_runs_per_user=2)
    with pytest.raises(Conflict) as info, database.write() as session:
        register(session, "w3", odd, list(session.query(Worker)))
    assert str(info.value) == (
        "worker w3 refuses to start: max_runs_per_user is 2 here but unset on worker w1; "
        "heartbeat_seconds is 5.0 here but 0.5 on worker w1 (every worker must share these "
        "settings; to change them, stop every worker first)"
    )
    with database.read() as session:
        assert session.get(Worker, "w3") is None  # refused before anything was recorded


def test_with_no_worker_online_the_first_to_start_sets_the_lab_s_values(
    backend: str, settings_for: Callable[..., Settings]
) -> None:
    database = db.open_database(settings_for(backend).effective_database_url)
    changed = settings_for(backend, stop_grace_seconds=3)
    with database.write() as session:
        old = register(session, "old", settings_for(backend), [])
        old.started_at = utcnow() - timedelta(hours=1)
        unrecorded = register(session, "pre-0005", settings_for(backend), [])
        unrecorded.settings = None  # a worker of an earlier version recorded nothing
        again = register(session, "new", changed, [unrecorded])  # "old" is not online any more
        assert again.settings is not None and again.settings["stop_grace_seconds"] == 3.0
        later = register(session, "next", changed, [again, unrecorded])
        expected = re.escape("stop_grace_seconds is 10.0 here but 3.0 on worker new (")
        with pytest.raises(Conflict, match=expected):
            register(session, "late", settings_for(backend), [later, again])  # the oldest one
