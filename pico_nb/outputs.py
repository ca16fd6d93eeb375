"""Reading what a run produced, safely: summary.json, preview images, the file list.

summary.json is the pipeline's contract with the viewers: key numbers at the top level
(frames, neurons, total_seconds, …) and `previews.images`, a list of {title, path} with paths
relative to the output folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pico_nb.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.schemas import OutputFile, ResultImage, Results

MAX_FILES = 500
MAX_FILE_BYTES = 64 << 20


def _inside(root: Path, relative: str) -> Path:
    """Resolve a relative path and refuse anything that escapes the output folder."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise ValidationError.one("path", "must be a relative file path")
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target == root:
        raise PermissionDenied(f"{relative} is outside the run's output folder")
    return target


def collect(run_id: int, root: Path) -> Results:
    """Summary, images and a bounded file listing; a run without summary.json still lists files."""
    if not root.is_dir():
        return Results(run_id=run_id, output_path=str(root))
    summary = None
    images: list[ResultImage] = []
    summary_path = root / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text("utf-8"))
        except (OSError, ValueError):
            summary = None
    if isinstance(summary, dict):
        previews = summary.get("previews")
        listed = previews.get("images", []) if isinstance(previews, dict) else []
        for item in listed if isinstance(listed, list) else []:
            try:
                path = _inside(root, str(item["path"]))
            except (KeyError, TypeError, PermissionDenied, ValidationError):
                continue
            if path.is_file():
                title = str(item.get("title") or path.stem)
                images.append(ResultImage(title=title, path=str(path.relative_to(root.resolve()))))
    files: list[OutputFile] = []
    truncated = False
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if len(files) >= MAX_FILES:
                truncated = True
                break
            path = Path(folder) / name
            try:
                size = path.stat().st_size
            except OSError:
                continue
            files.append(OutputFile(path=str(path.relative_to(root)), size=size))
        if truncated:
            break
    return Results(
        run_id=run_id,
        output_path=str(root),
        summary=summary if isinstance(summary, dict) else None,
        images=images,
        files=files,
        truncated=truncated,
    )


def read_file(root: Path, relative: str) -> bytes:
    """Bytes of one output file, bounded so a viewer never pulls a whole movie into memory."""
    target = _inside(root, relative)
    if not target.is_file():
        raise NotFound(f"{relative} does not exist in the output folder")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ValidationError.one("path", f"{relative} is larger than {MAX_FILE_BYTES >> 20} MB")
    return target.read_bytes()
