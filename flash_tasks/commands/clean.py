"""``flash clean``: remove ``.flash/`` (optionally keeping ``.flash/locks/``).

It takes the app's build lock first, so it never pulls the tree from under a
running build: it waits for that build to finish.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ..errors import FlashError, UsageError
from ..runner import hold_lock
from ..stage import remove_path
from .output import Console, format_size

FLASH = ".flash"
LOCKS = "locks"
LOCK_FILE = ".lock"


def tree_size(path: Path) -> int:
    """Bytes under ``path``, not following symlinks."""
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def clean_app(app_dir: Path, *, keep_locks: bool, console: Console, wait_stream: IO[str] | None = None) -> int:
    app = app_dir.expanduser().resolve()
    if not app.is_dir():
        raise UsageError(f"app folder {app} does not exist", hint="pass an existing folder with -C/--directory")
    flash = app / FLASH
    shown = flash.relative_to(Path.cwd()) if flash.is_relative_to(Path.cwd()) else flash
    if flash.is_symlink():
        flash.unlink()
        console.line(f"{console.style('Removed', 'green', 'bold')} {shown} (a symlink; its target was left alone)")
        return 0
    if not flash.is_dir():
        console.line(f"Nothing to clean: no {FLASH}/ in {app_dir}")
        return 0
    kept = {LOCK_FILE} | ({LOCKS} if keep_locks else set())
    freed = 0
    try:
        with hold_lock(flash / LOCK_FILE, wait_stream, "waiting for a build of this app to finish...\n"):
            for child in sorted(flash.iterdir()):
                if child.name in kept:
                    continue
                freed += tree_size(child) if child.is_dir() and not child.is_symlink() else child.lstat().st_size
                remove_path(child)
        (flash / LOCK_FILE).unlink(missing_ok=True)
        if not any(flash.iterdir()):
            flash.rmdir()
    except OSError as exc:
        raise FlashError(f"cannot remove {exc.filename or flash}: {exc.strerror or exc}") from None
    what = f"{shown}/" + (f" except {shown}/{LOCKS}/" if keep_locks and (flash / LOCKS).exists() else "")
    console.line(f"{console.style('Removed', 'green', 'bold')} {what} ({format_size(freed)})")
    return 0
