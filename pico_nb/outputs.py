"""Reading what a run produced, safely: summary.json, preview images, the file list.

summary.json is the pipeline's contract with the viewers: key numbers at the top level
(frames, neurons, total_seconds, …) and `previews.images`, a list of {title, path} with paths
relative to the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pico_nb import safe_paths
from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError
from pico_nb.schemas import OutputFile, ResultImage, Results

MAX_FILES = 500
MAX_FILE_BYTES = 64 << 20
MAX_SUMMARY_BYTES = 4 << 20


def collect(run_id: int, root: Path, roots: Sequence[Path]) -> Results:
    """Summary, images and a bounded file listing; a run without summary.json still lists files.
    The folder is reached afresh from its data root, so a folder swapped for a link is refused."""
    try:
        with safe_paths.open_folder(root, roots) as folder:
            return _collect(run_id, root, folder)
    except NotFound:
        return Results(run_id=run_id, output_path=str(root))


def _collect(run_id: int, root: Path, folder: int) -> Results:
    """collect() on an open folder descriptor."""
    summary = None
    images: list[ResultImage] = []
    try:
        summary = json.loads(safe_paths.read_file(folder, "summary.json", MAX_SUMMARY_BYTES))
    except (OSError, ValueError, NotFound, PermissionDenied, ValidationError, RecursionError):
        summary = None
    if isinstance(summary, dict):
        previews = summary.get("previews")
        listed = previews.get("images", []) if isinstance(previews, dict) else []
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                continue
            try:
                relative = "/".join(safe_paths.relative_parts(item["path"]))
            except (PermissionDenied, ValidationError):
                continue
            if safe_paths.file_size(folder, relative) is not None:
                title = str(item.get("title") or Path(relative).stem)
                images.append(ResultImage(title=title, path=relative))
    listed_files, truncated = safe_paths.list_files(folder, MAX_FILES)
    return Results(
        run_id=run_id,
        output_path=str(root),
        summary=summary if isinstance(summary, dict) else None,
        images=images,
        files=[OutputFile(path=path, size=size) for path, size in listed_files],
        truncated=truncated,
    )


def read_file(root: Path, relative: str, roots: Sequence[Path]) -> bytes:
    """Bytes of one output file, bounded so a viewer never pulls a whole movie into memory;
    every folder on the way is opened without following links, at the moment of reading."""
    parts = safe_paths.relative_parts(relative)
    with safe_paths.open_folder(root, roots) as folder:
        try:
            return safe_paths.read_file(folder, "/".join(parts), MAX_FILE_BYTES)
        except NotFound:
            raise NotFound(f"{relative} does not exist in the output folder") from None
