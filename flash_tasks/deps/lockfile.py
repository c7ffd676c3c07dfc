"""A lock file's own checks: its last line is a digest of everything before it, its
header names the digest of the inputs it was resolved from, and no marker beside
it says it still waits for uv's confirmation.

Every build checks its locks this way (``graph.LockMatches``); resolving and
reading them (``locks.py``) needs uv and packaging, checking them does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CONTENT_PREFIX = "# content: sha256:"
#: Beside a lock taken from the shared cache until uv's own resolution confirms it
#: (``deps.speculation``): written before that lock, removed only after the check.
UNCONFIRMED_SUFFIX = ".unconfirmed"


class DamagedLock(ValueError):
    """A lock file whose content no longer matches the digest written with it."""


def _content_line(text: str) -> str:
    return f"{_CONTENT_PREFIX}{hashlib.sha256(text.encode('utf-8')).hexdigest()}\n"


def _checked_text(path: Path) -> str:
    """A lock's text, if it ends with the digest of everything before it; else ``DamagedLock``."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedLock(f"{path} is not a lock written by flash-tasks") from None
    body, _, last = text[:-1].rpartition("\n") if text.endswith("\n") else ("", "", "")
    body += "\n"
    if not last.startswith(_CONTENT_PREFIX) or _content_line(body) != last + "\n":
        raise DamagedLock(f"{path} was changed or damaged since it was written")
    return body


def lock_intact(path: Path, digest: str) -> bool:
    """Whether ``path`` is an undamaged lock made from inputs with ``digest``."""
    try:
        text = _checked_text(path)
    except (OSError, DamagedLock):
        return False
    return f"\n# inputs: {digest}\n" in text[:400]


def unconfirmed_path(lock: Path) -> Path:
    """The marker that says ``lock`` was written from the shared cache and not yet checked by uv."""
    return lock.with_name(lock.name + UNCONFIRMED_SUFFIX)


def is_unconfirmed(lock: Path) -> bool:
    """Whether ``lock`` still waits for uv's check (its marker is there, whatever it holds)."""
    import os

    return os.path.lexists(unconfirmed_path(lock))
