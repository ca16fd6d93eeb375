"""Settings every Celery worker must share, recorded with each worker and checked at its start.

A worker stops its runs after its own ``stop_grace_seconds``, heartbeats every
``heartbeat_seconds``, fails other machines' runs after ``lost_after_seconds`` and claims
under ``max_runs_per_user``; a pair of workers disagreeing on those would fail each other's
healthy runs or apply two caps. The fields marked ``same_on_workers`` in
:mod:`pico_nb.settings` are those. Each worker records its values in its row of ``workers``
when it starts; the lab's values are those of the longest-running online worker, and a worker
whose values differ refuses to start with one line naming each setting and both values. With
no worker online the first to start sets them, so a lab changes them by restarting every
worker. A Slurm job needs no check: it runs with the submitter's settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pico_nb.contract.errors import Conflict
from pico_nb.models import Worker
from pico_nb.settings import Settings, setting_fields


def shared_values(settings: Settings) -> dict[str, Any]:
    """This machine's values of the settings every worker must share, as JSON."""
    data = settings.model_dump(mode="json")
    return {f.name: data[f.name] for f in setting_fields() if f.marked("same_on_workers")}


def differences(mine: dict[str, Any], theirs: dict[str, Any], other: str) -> list[str]:
    """Each setting whose value here is not the other worker's, with both values."""
    names = [*mine, *(name for name in theirs if name not in mine)]  # a newer version's too
    return [
        f"{name} is {_shown(mine.get(name))} here but {_shown(theirs.get(name))} on {other}"
        for name in names
        if mine.get(name) != theirs.get(name)
    ]


def _shown(value: Any) -> str:
    """A value as it would be written in pico_nb.toml (None as unset)."""
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else repr(value)


def agree(row: Worker, online: Iterable[Worker], settings: Settings) -> None:
    """Record this worker's shared settings, or refuse it if the online workers use others."""
    mine = shared_values(settings)
    peers = sorted(
        (w for w in online if w.name != row.name and w.settings), key=lambda w: w.started_at
    )
    if peers:
        found = differences(mine, peers[0].settings or {}, f"worker {peers[0].name}")
        if found:
            raise Conflict(
                f"worker {row.name} refuses to start: {'; '.join(found)} (every worker must "
                "share these settings; to change them, stop every worker first)"
            )
    row.settings = mine
