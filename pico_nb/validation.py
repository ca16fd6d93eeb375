"""Rules for the values users type: names, descriptions and folders (DESIGN.md, "input")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pico_nb.contract.limits import UNSAFE_IN_LINE, UNSAFE_IN_TEXT

MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_PATH = 4096


def check_name(value: object) -> str:
    """A name is one visible line: 1-200 characters, no control or bidirectional characters
    (shown as text they still spoof what a reviewer reads)."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if UNSAFE_IN_LINE.search(value):  # before strip(), which would hide a trailing NEL
        raise ValueError(
            "must not contain control characters, line breaks or bidirectional overrides"
        )
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters (got {len(value)})")
    return value


def check_description(value: object) -> str:
    """Descriptions may span lines but stay printable and bounded."""
    if not isinstance(value, str):
        raise ValueError("must be text")
    if len(value) > MAX_DESCRIPTION:
        raise ValueError(f"must be at most {MAX_DESCRIPTION} characters (got {len(value)})")
    if UNSAFE_IN_TEXT.search(value):
        raise ValueError("must not contain control characters or bidirectional overrides")
    return value.strip()


def check_folder(value: object, roots: list[Path]) -> Path:
    """Resolve a folder (symlinks and '..' included) and keep it inside the data roots."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("must be a folder path")
    text = str(value).strip()
    if len(text) > MAX_PATH:
        raise ValueError(f"must be at most {MAX_PATH} characters")
    if UNSAFE_IN_LINE.search(text):
        raise ValueError("must not contain control or bidirectional characters")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    resolved = path.resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ValueError(f"must be inside the data roots ({allowed})")
    return resolved


def check_not_private(path: Path, private: Sequence[Path]) -> Path:
    """Keep a folder out of the product's private folders, and from holding one (deleting it
    would delete them)."""
    for folder in private:
        if path.is_relative_to(folder) or folder.is_relative_to(path):
            raise ValueError(f"must not be or hold the lab's private folder {folder}")
    return path


def check_input_folder(value: object, roots: list[Path], private: Sequence[Path] = ()) -> Path:
    """The input must be an existing, readable folder inside the roots."""
    path = check_not_private(check_folder(value, roots), private)
    if not path.is_dir():
        raise ValueError(f"{path} is not an existing folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f"{path} is not readable")
    return path


def check_output_folder(
    value: object, roots: list[Path], input_path: Path | None, private: Sequence[Path] = ()
) -> Path:
    """The output may not exist yet, but must not be a file or sit inside the input."""
    path = check_folder(value, roots)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    if input_path is not None and (path == input_path or path.is_relative_to(input_path)):
        raise ValueError("must not be the input folder or inside it")
    if path in roots:
        raise ValueError("must be a subfolder, not a data root itself")
    return check_not_private(path, private)
