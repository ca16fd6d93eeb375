"""File operations on a member's folders that re-check the path at the moment of use.

A folder checked when an experiment was saved can be swapped for a symbolic link later (to the
data home, /etc, another member's folder). So every read and every delete walks from the data
root that holds the path, one component at a time, with O_NOFOLLOW relative to the previous
folder's descriptor: a link anywhere on the way is refused, never followed, and nothing can be
swapped between the check and the use because the check *is* the open.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from pico_nb.contract.errors import NotFound, PermissionDenied, ValidationError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_LINKED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


def _root_of(path: Path, roots: Sequence[Path]) -> Path:
    """The data root a stored (already resolved) path lies in; outside every root is refused."""
    for root in roots:
        if path == root or path.is_relative_to(root):
            return root
    raise PermissionDenied(f"{path} is outside the data roots")


def _open_at(name: str, dir_fd: int, flags: int, shown: object) -> int:
    """Open one component without following a link; a link or a swapped type is refused."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFound(f"{shown} does not exist") from None
    except OSError as exc:
        if exc.errno in _LINKED:
            raise PermissionDenied(
                f"{shown} is not a plain folder or file inside its folder (a symbolic link?)"
            ) from None
        raise


@contextmanager
def open_folder(path: str | Path, roots: Sequence[Path]) -> Iterator[int]:
    """A descriptor of `path`, reached from its data root without following any link."""
    target = Path(os.path.abspath(path))
    root = _root_of(target, roots)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in target.relative_to(root).parts:
            inner = _open_at(part, fd, _DIR, target)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def relative_parts(relative: str) -> tuple[str, ...]:
    """A path inside a folder: relative, no '..', no NUL; anything else leaves the folder."""
    if not isinstance(relative, str) or not relative or "\x00" in relative or len(relative) > 4096:
        raise ValidationError.one("path", "must be a relative file path")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise PermissionDenied(f"{relative} is outside the run's output folder")
    return pure.parts


def _open_file(folder_fd: int, relative: str) -> int:
    """A descriptor of a regular file under the folder, every component opened without links."""
    *dirs, name = relative_parts(relative)
    fd = os.dup(folder_fd)
    try:
        for part in dirs:
            inner = _open_at(part, fd, _DIR, relative)
            os.close(fd)
            fd = inner
        file_fd = _open_at(name, fd, _FILE, relative)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise NotFound(f"{relative} is not a file in the output folder")
    return file_fd


def file_size(folder_fd: int, relative: str) -> int | None:
    """Size of a regular file under the folder, or None if it is not one (or is a link)."""
    try:
        fd = _open_file(folder_fd, relative)
    except (NotFound, PermissionDenied, ValidationError, OSError):
        return None
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_file(folder_fd: int, relative: str, max_bytes: int) -> bytes:
    """A regular file's bytes under the folder, refused past max_bytes."""
    fd = _open_file(folder_fd, relative)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(fd).st_size > max_bytes:
            raise ValidationError.one(
                "path", f"{relative} is larger than {max_bytes >> 20} MB; download it directly"
            )
        return handle.read(max_bytes + 1)[:max_bytes]


def list_files(folder_fd: int, limit: int) -> tuple[list[tuple[str, int]], bool]:
    """Regular files under the folder (relative path, size), sorted, at most `limit`; links
    and what they point to are never listed. Returns the files and whether it stopped early."""
    found: list[tuple[str, int]] = []
    walker = os.fwalk(".", dir_fd=folder_fd, follow_symlinks=False)
    for folder, dirs, names, fd in walker:
        dirs.sort()
        for name in sorted(names):
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if len(found) >= limit:
                # typeshed types os.fwalk as an Iterator; it is a generator, which has close()
                walker.close()  # type: ignore[attr-defined]
                return found, True
            found.append((os.path.normpath(os.path.join(folder, name)), info.st_size))
    return found, False


def check_unlinked(path: str | Path, roots: Sequence[Path]) -> None:
    """Refuse a folder that is now reached through a link; one that is gone is fine."""
    try:
        with open_folder(path, roots):
            pass
    except NotFound:
        return


def check_removable(path: str | Path, roots: Sequence[Path]) -> None:
    """Refuse a delete before anything is changed: a root, a link, or a path leaving the roots."""
    _removal(path, roots, remove=False)


def remove_folder(path: str | Path, roots: Sequence[Path]) -> None:
    """Delete a folder tree at its checked place: its parents are reached without links, it is
    not a link itself, and entries inside that are links are unlinked, never followed."""
    _removal(path, roots, remove=True)


def _removal(path: str | Path, roots: Sequence[Path], remove: bool) -> None:
    """Check (and then remove) a folder through its parent's descriptor; gone is fine."""
    target = Path(os.path.abspath(path))
    if target in roots:
        raise ValidationError.one("remove_outputs", f"refusing to remove the data root {target}")
    try:
        with open_folder(target.parent, roots) as parent:
            try:
                info = os.stat(target.name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return
            if stat.S_ISLNK(info.st_mode):
                raise PermissionDenied(f"{target} is a symbolic link; not removing through it")
            if not stat.S_ISDIR(info.st_mode):
                raise ValidationError.one("remove_outputs", f"{target} is not a folder")
            if remove:
                shutil.rmtree(target.name, dir_fd=parent)
    except NotFound:  # its folder is gone already: nothing to remove
        return
