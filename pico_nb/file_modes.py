"""Explicit modes for everything the product creates in the data home: private to its owner.

The data home holds the database (password hashes, every experiment), run logs and hub state;
on a lab server it belongs to the service account alone. Folders are made 0700 and files 0600
whatever the umask says, so no other account can read them.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """Make a folder (and missing parents) that only its owner may enter; return it."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile
        folder.chmod(FOLDER_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create an empty file only its owner may read, unless it exists; return it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    return path
