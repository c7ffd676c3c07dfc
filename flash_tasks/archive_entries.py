"""The entries of the build artifact: what ``flash_tasks.archive`` writes, in
``tarfile.add`` order, read from the build folder without following symlinks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flash_tasks.errors import BuildError


@dataclass(frozen=True)
class Entry:
    """One archive entry: a directory, a regular file or a symlink.

    ``arcname`` is the relative POSIX path without a leading ``./`` (``""``
    is the archive root). ``source`` is where a file's bytes are read from and
    is ``None`` for directories. ``link_target`` makes the entry a symlink
    with that target text.
    """

    arcname: str
    source: Path | None
    is_dir: bool
    link_target: str | None = None
    #: The file's digest as a wheel RECORD writes it (``sha256=<urlsafe b64>``): when
    #: given, the bytes read are checked against it and a mismatch raises ``DamagedSource``.
    expect: str | None = None


class DamagedSource(BuildError):
    """A file in the build folder no longer holds the bytes its record names."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed since it was installed", hint="the build repairs it; run again")
        self.source = path


#: The archive's root directory entry, written as ``./``.
ROOT = Entry("", None, True)


def walk_entries(root: Path, *, exclude_top: Callable[[str], bool] | None = None) -> list[Entry]:
    """The entries under ``root`` (not ``root`` itself) in ``tarfile.add`` order.

    Depth-first pre-order, each directory's children sorted by name, symlinks
    not followed. ``exclude_top`` is asked about each top-level name and
    drops that whole subtree when it returns true (the reference's
    ``--exclude`` of packages works on top-level names only).
    """
    if not root.is_dir():
        raise BuildError(f"build folder {root} does not exist or is not a directory")
    out: list[Entry] = []
    stack: list[Iterator[os.DirEntry[str]]] = [iter(_sorted_dir(root))]
    prefixes: list[str] = [""]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            prefixes.pop()
            continue
        if len(stack) == 1 and exclude_top is not None and exclude_top(item.name):
            continue
        arcname = prefixes[-1] + item.name
        path = Path(item.path)
        if item.is_symlink():
            out.append(Entry(arcname, path, False, _readlink(path)))
        elif item.is_dir(follow_symlinks=False):
            out.append(Entry(arcname, None, True))
            stack.append(iter(_sorted_dir(path)))
            prefixes.append(arcname + "/")
        elif item.is_file(follow_symlinks=False):
            out.append(Entry(arcname, path, False))
        else:
            mode = _lstat(path).st_mode
            if stat.S_ISSOCK(mode):
                continue
            raise BuildError(
                f"cannot archive special file {path} (not a file, directory or symlink)",
                hint="remove it from the build folder",
            )
    return out


def _sorted_dir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise BuildError(f"cannot list {path}: {exc.strerror}") from exc


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:
        raise BuildError(f"cannot read symlink {path}: {exc.strerror}") from exc


def _lstat(path: Path) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as exc:
        raise BuildError(f"cannot stat {path}: {exc.strerror}") from exc
