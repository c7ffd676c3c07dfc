"""Small file helpers shared by the phases: atomic writes, JSON state, staging.

Every output is written to a temporary name in the same folder and renamed
into place, so an interrupted build never leaves a half-written file where the
next build (or the user) would trust it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import BuildError

COPY_CHUNK = 1 << 20


def _tmp_name(path: Path) -> Path:
    """A hidden temporary name next to ``path`` that still fits the 255-byte name limit."""
    name = path.name
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        name = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()
    return path.with_name(f".{name}.tmp-{os.getpid()}")


def _disk_error(exc: OSError, path: Path) -> BuildError:
    if exc.errno == errno.ENOSPC:
        return BuildError(
            f"no space left on device while writing {path}",
            hint="free some disk space and build again; the previous outputs were left as they were",
        )
    return BuildError(f"cannot write {path}: {exc.strerror or exc}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _disk_error(exc, path) from None


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: Path, default: Any = None) -> Any:
    """A state file's content, or ``default`` when it is missing or damaged.

    A damaged file (say, emptied by a power cut) then simply makes its task run
    again instead of failing every later build.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return default


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write only when the content differs, keeping mtimes stable otherwise."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_bytes_atomic(path, data)
    return True


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy a file (content and permission bits) into place with one rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dest)
    try:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise _disk_error(exc, dest) from None
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
            raise BuildError(
                f"cannot read {src}: permission denied",
                path=str(src),
                hint="make the file readable, or add it to .gitignore so it is not shipped",
            ) from None
        raise


def remove_file(path: Path, stop: Path) -> None:
    """Delete a file and any folders it leaves empty, up to ``stop``."""
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != stop and parent.is_relative_to(stop):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def fingerprint(app_dir: Path, files: Iterable[str]) -> str:
    """SHA-256 over the shipped files' paths and contents, in path order.

    Matches the ``source_fingerprint`` runpod-flash writes (the deploy step
    compares it): each path and each content is preceded by its length as
    8 big-endian bytes, so concatenations cannot collide.
    """
    digest = hashlib.sha256()
    for rel in sorted(files):
        name = rel.encode("utf-8")
        path = app_dir / rel
        digest.update(len(name).to_bytes(8, "big"))
        digest.update(name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as handle:
            while chunk := handle.read(COPY_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def stage_sources(app_dir: Path, build_dir: Path, files: list[str], previous: dict[str, Any]) -> dict[str, Any]:
    """Mirror the shipped files into the build folder, copying only what changed.

    ``previous`` is the last stage record; files no longer shipped are removed
    from the build folder. Returns the new record.
    """
    old: dict[str, list[int]] = previous.get("files", {}) if previous else {}
    record: dict[str, list[int]] = {}
    for rel in files:
        src = app_dir / rel
        try:
            st = src.stat()
        except OSError as exc:
            raise BuildError(f"cannot read {rel}: {exc.strerror}", path=rel) from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_mode & 0o777]
        dest = build_dir / rel
        if old.get(rel) != stamp or not dest.exists():
            copy_atomic(src, dest)
        record[rel] = stamp
    for rel in set(old) - set(record):
        remove_file(build_dir / rel, build_dir)
    return {"files": record, "fingerprint": fingerprint(app_dir, files)}
