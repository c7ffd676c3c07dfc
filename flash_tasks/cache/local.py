"""The shared per-user cache: content-addressed blobs plus small action records.

Layout under the cache folder (``~/.cache/flash-tasks`` on Linux), the same
split as Bazel's disk and HTTP caches::

    v1/cas/<aa>/<sha256>   blobs, named by the sha256 of their bytes
    v1/ac/<aa>/<key>       action records: what a key (everything that shapes
                           some output's bytes) produced, as a list of blobs
    v1/tmp/                files being written; renamed into place when complete

Several builds may use one cache at once (other apps, other users of a shared
folder): every file is written under a unique temporary name and renamed into
place, so a reader sees a complete file or none, and no lock is ever held.
Two writers of one blob write the same bytes, so the last rename wins harmlessly.

Nothing read from here is trusted: a blob is hashed while it is copied out and
one that does not match its name is deleted and counts as a miss. Every use
sets the file's mtime to now; ``prune`` evicts the least recently used blobs
until the cache fits its size limit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..store import Blob, BlobRecord, Record, copy_recorded, load, parse

LAYOUT = "v1"
COPY_CHUNK = 1 << 20
#: Temporary files older than this are left over from a killed build (``prune`` removes them).
STALE_TMP_SECONDS = 3600


class ActionRecord(Record):
    """What one action key produced: a kind, a name for people, and its blobs in order."""

    kind: str
    name: str
    blobs: list[Blob]


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds."""

    blobs: int
    blob_bytes: int
    actions: int


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` removed."""

    blobs: int
    blob_bytes: int
    actions: int


def copy_verified(src: Path, dest: Path, blob: Blob) -> bool:
    """Copy ``src`` to ``dest`` (atomically) only if its bytes are exactly ``blob``.

    The bytes are hashed on the way, one chunk in memory at a time; on a
    mismatch nothing is left at ``dest`` and the answer is False. Raises
    ``OSError`` when ``src`` cannot be read or ``dest`` cannot be written.
    """
    tmp = dest.with_name(temporary_name(dest.name))
    digest = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb", buffering=0) as reader, open(tmp, "wb") as writer:
            while chunk := reader.read(COPY_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if size > blob.size:
                    break
                writer.write(chunk)
        if size != blob.size or digest.hexdigest() != blob.sha256:
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def blobs_needed(path: Path) -> list[Blob] | None:
    """The blobs the action record at ``path`` needs, or None when it is no record this tool reads.

    A segment's record names its blobs; an installed tree's (the SDK's) names
    one per file; an install record names the files it holds besides its
    segments; a resolution names none.
    """
    from . import TreeAction
    from .installs import InstallAction
    from .resolutions import ResolutionAction

    try:
        data = path.read_bytes()
    except OSError:
        return None
    if (segment := parse(ActionRecord, data)) is not None:
        return list(segment.blobs)
    if (tree := parse(TreeAction, data)) is not None:
        return [f.blob for f in tree.files.values()]
    if (install := parse(InstallAction, data)) is not None:
        return [f.blob for f in install.extra.values()]
    if parse(ResolutionAction, data) is not None:
        return []
    return None


def temporary_name(name: str) -> str:
    """``.<name>.tmp-<pid>-<thread>``: the name the build's recovery knows to sweep after a kill."""
    return f".{name}.tmp-{os.getpid()}-{threading.get_native_id()}"


def _touch(path: str | Path) -> None:
    """Mark ``path`` as just used (the LRU order); a read-only cache simply keeps its order."""
    try:
        os.utime(path)
    except OSError:
        pass


class LocalCache:
    """One cache folder. Methods raise ``OSError`` on I/O trouble; misses are None/False."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.base = root / LAYOUT
        self.cas = os.fspath(self.base / "cas")

    def blob_path(self, sha256: str) -> Path:
        return self.base / "cas" / sha256[:2] / sha256

    def action_path(self, key: str) -> Path:
        return self.base / "ac" / key[:2] / key

    # -- reading ------------------------------------------------------------------------------

    def get_action(self, key: str) -> ActionRecord | None:
        """The record stored under ``key``, or None (absent, damaged, another layout)."""
        path = self.action_path(key)
        record = load(ActionRecord, path)
        if record is not None:
            _touch(path)
        return record

    def fetch(self, blob: Blob, dest: Path) -> bool:
        """Copy the blob to ``dest`` if the cache has it intact; a damaged blob is deleted (a miss)."""
        path = self.blob_path(blob.sha256)
        try:
            if os.stat(path).st_size != blob.size:
                path.unlink(missing_ok=True)
                return False
        except OSError:
            return False
        try:
            ok = copy_verified(path, dest, blob)
        except FileNotFoundError:
            return False  # evicted by another build in between
        if not ok:
            path.unlink(missing_ok=True)
            return False
        _touch(path)
        return True

    def fetch_new(self, blob: Blob, dest: str, mode: int) -> BlobRecord | None:
        """``fetch`` into a new file in a folder being built (no temporary name), with its record.

        The record's digest is the one just checked on the way, so the copy is
        never read again to be recorded. A damaged blob is deleted (a miss).
        """
        # Plain strings: this runs for every file of a tree.
        path = f"{self.cas}/{blob.sha256[:2]}/{blob.sha256}"
        try:
            record = copy_recorded(path, dest, blob, mode)
        except FileNotFoundError as exc:
            if exc.filename != path:
                raise  # the folder being built is what failed
            return None  # absent, or evicted by another build in between
        if record is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # evicted by another build in between
            return None
        _touch(path)
        return record

    def has_blob(self, blob: Blob) -> bool:
        try:
            return os.stat(self.blob_path(blob.sha256)).st_size == blob.size
        except OSError:
            return False

    # -- writing ------------------------------------------------------------------------------

    def _tmp(self) -> Path:
        folder = self.base / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def put_blob(self, source: Path, blob: Blob) -> bool:
        """Store ``source``'s bytes as ``blob`` (False if they are not that blob)."""
        target = self.blob_path(blob.sha256)
        if self.has_blob(blob):
            _touch(target)
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        if not copy_verified(source, tmp, blob):
            return False
        os.replace(tmp, target)
        return True

    def put_action(self, key: str, record: ActionRecord) -> None:
        self.put_bytes(key, record.model_dump_json().encode("utf-8"))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small record that is not an ``ActionRecord`` (an install record) under ``key``."""
        target = self.action_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp()
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- housekeeping -------------------------------------------------------------------------

    def _files(self, kind: str) -> list[tuple[Path, int, float]]:
        """``(path, size, mtime)`` of every file under ``v1/<kind>``."""
        out: list[tuple[Path, int, float]] = []
        top = self.base / kind
        try:
            shards = list(os.scandir(top))
        except OSError:
            return out
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            try:
                with os.scandir(shard.path) as entries:
                    for entry in entries:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        out.append((Path(entry.path), st.st_size, st.st_mtime))
            except OSError:
                continue
        return out

    def usage(self) -> CacheUsage:
        blobs = self._files("cas")
        return CacheUsage(blobs=len(blobs), blob_bytes=sum(size for _, size, _ in blobs), actions=len(self._files("ac")))

    def prune(self, max_bytes: int | None = None) -> Pruned:
        """Evict least recently used blobs until they fit ``max_bytes`` (default: the limit).

        Action records go with them: one that names an evicted blob, one this
        tool cannot read, and one that names no blob (a resolution) and was used
        no more recently than the last blob evicted. Temporaries left behind by
        killed builds go too.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        blobs = sorted(self._files("cas"), key=lambda item: item[2])
        total = sum(size for _, size, _ in blobs)
        removed = removed_bytes = 0
        cutoff: float | None = None
        for path, size, mtime in blobs:
            if total <= limit:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            total -= size
            removed += 1
            removed_bytes += size
            cutoff = mtime
        actions = 0
        if cutoff is not None:
            for path, _, used in self._files("ac"):
                if self._stale_record(path, used, cutoff):
                    path.unlink(missing_ok=True)
                    actions += 1
        self._remove_stale_tmp()
        return Pruned(blobs=removed, blob_bytes=removed_bytes, actions=actions)

    def _stale_record(self, path: Path, used: float, cutoff: float) -> bool:
        """Whether the action record at ``path`` goes in a prune that evicted blobs used up to ``cutoff``."""
        needed = blobs_needed(path)
        if needed is None:
            return True  # unreadable, or not this tool's
        if needed:
            return not all(self.has_blob(b) for b in needed)
        return used <= cutoff  # names no blob: it goes with blobs used no later than it

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        try:
            entries = list(os.scandir(self.base / "tmp"))
        except OSError:
            return
        for entry in entries:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS:
                    os.unlink(entry.path)
            except OSError:
                continue

    def clear(self) -> CacheUsage:
        """Remove everything this tool keeps in the cache folder (only its own ``v1/``)."""
        before = self.usage()
        if self.base.is_dir() and not self.base.is_symlink():
            shutil.rmtree(self.base)
        elif self.base.is_symlink():
            self.base.unlink()
        return before
