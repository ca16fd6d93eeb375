"""Where each run writes: its own folder under the experiment's output folder.

Run n writes to `<output>/run-000n/`. A clone may keep its parent's output folder, and an old
folder may be reused, so a name another run recorded or that already exists on disk is never
handed out again: the experiment's id goes into the name instead (`e12-run-0001`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path


def run_folder(output: Path, experiment_id: int, number: int, recorded: Collection[str]) -> Path:
    """A folder for run `number` that no other run recorded and that does not exist yet."""
    names = [f"run-{number:04d}", f"e{experiment_id}-run-{number:04d}"]
    names += [f"e{experiment_id}-run-{number:04d}-{k}" for k in range(2, 1000)]
    for name in names:
        folder = output / name
        if str(folder) not in recorded and not folder.exists():
            return folder
    raise FileExistsError(f"no free run folder for run {number} in {output}")
