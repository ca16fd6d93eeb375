"""Where a run's log lives, and whether there is room to start one there.

Layout: ``<home>/logs/<user>/exp_<id>_run_<n>_<YYYYmmddTHHMMSSZ>.log``, one folder per user (its
name escaped reversibly) and one file per run and start time. What a log file holds is specified
in :mod:`pico_nb.logs.writer`.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from urllib.parse import quote

MIN_FREE_BYTES = 1 << 20
"""Free space a log folder needs before a run is started there."""


def log_path(home: Path, user: str, experiment_id: int, run_number: int, when: datetime) -> Path:
    """Name the log by run and start time so a re-run never lands on an earlier run's file."""
    if when.tzinfo is None:
        raise ValueError("the log's start time must be timezone-aware")
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"exp_{experiment_id}_run_{run_number}_{stamp}.log"
    return log_folder(home, user) / name


def log_folder(home: Path, user: str) -> Path:
    """The folder of one user's run logs."""
    return home / "logs" / _path_component(user)


def has_room(folder: Path) -> bool:
    """Whether a run's log can start there: on a full disk its first line would already fail."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free >= MIN_FREE_BYTES


def _path_component(name: str) -> str:
    """Escape reversibly, so two users never share a folder and no name climbs out of logs/."""
    if not name:
        raise ValueError("a user name is needed for the log folder")
    safe = quote(name, safe="")
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > 200:
        safe = f"{safe[:180]}-{sha256(name.encode()).hexdigest()[:16]}"
    return safe
