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
        if path.is_dir():
            remove_path(path)  # a folder where the tool keeps a file: damage, cleared
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _disk_error(exc, path) from None


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


#: Marks a state file written by ``write_json``: its data and a digest of that data.
STATE_FORMAT = "flash-tasks-state/1"


def _state_digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write a state file that carries a digest of its own content (checked by ``read_json``)."""
    envelope = {"format": STATE_FORMAT, "sha256": _state_digest(data), "data": data}
    write_text_atomic(path, json.dumps(envelope, indent=1, sort_keys=True))


def read_json(path: Path, default: Any = None) -> Any:
    """A state file's content, or ``default`` when it is missing, damaged or not ours.

    The file must be what ``write_json`` wrote: a flipped byte, a truncation or
    other valid JSON in its place fails the digest check, and the task that
    owns the file then simply runs again instead of trusting it.
    """
    try:
        envelope = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return default
    if not isinstance(envelope, dict) or envelope.get("format") != STATE_FORMAT or "data" not in envelope:
        return default
    data = envelope["data"]
    if envelope.get("sha256") != _state_digest(data):
        return default
    if default is not None and type(data) is not type(default):
        return default
    return data


def read_plain_json(path: Path, default: Any = None) -> Any:
    """A JSON file that is not a state file (the manifest), or ``default`` if unreadable."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
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


def remove_path(path: Path, *, ignore_errors: bool = False) -> None:
    """Delete whatever is at ``path``: a file, a link, or a folder (a folder where a file belongs is damage)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


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


def source_stamp(st: os.stat_result) -> list[int]:
    """How the stage record remembers a source file it copied.

    The change time and inode too: an edit that keeps the size and sets the old
    mtime back is still copied again.
    """
    return [st.st_size, st.st_mtime_ns, st.st_mode & 0o777, st.st_ctime_ns, st.st_ino]


def stage_sources(
    app_dir: Path, build_dir: Path, files: list[str], previous: dict[str, Any], *, verify: bool = False
) -> dict[str, Any]:
    """Mirror the shipped files into the build folder, copying only what changed.

    ``previous`` is the last stage record; files no longer shipped are removed
    from the build folder. A copy in the build folder is trusted only while its
    stamp matches the record made when it was written (with ``verify``: while
    its bytes do); a copy changed or removed by hand is copied again. Returns
    the new record.
    """
    from pydantic import ValidationError

    from .store import TreeRecord, check_file, record_file

    old: dict[str, list[int]] = previous.get("files", {}) if previous else {}
    try:
        old_copies = TreeRecord.model_validate(previous.get("copies", {})).files if previous else {}
    except ValidationError:
        old_copies = {}
    record: dict[str, list[int]] = {}
    copies: dict[str, Any] = {}
    for rel in files:
        src = app_dir / rel
        try:
            st = src.stat()
        except OSError as exc:
            raise BuildError(f"cannot read {rel}: {exc.strerror}", path=rel) from None
        stamp = source_stamp(st)
        dest = build_dir / rel
        copy = check_file(dest, old_copies.get(rel), verify=verify) if old.get(rel) == stamp else None
        if copy is None:
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            copy_atomic(src, dest)
            copy = record_file(dest)
            if copy is None:
                raise BuildError(f"{rel} changed while it was being copied", path=rel, hint="build again")
        record[rel] = stamp
        copies[rel] = copy
    for rel in set(old) - set(record):
        remove_file(build_dir / rel, build_dir)
    tree = TreeRecord(files=copies)
    return {"files": record, "fingerprint": fingerprint(app_dir, files), "copies": tree.model_dump(mode="json")}
