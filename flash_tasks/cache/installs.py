"""Installing a distribution from its cached segments instead of from its wheel.

A distribution whose every file lies under its own top-level entries is
shipped as its cached segments alone, and those segments hold exactly its
installed files. So once one build has installed and compressed it, another
build (another app, checkout or machine) can get the same files by extracting
the segments: no wheel is downloaded, installed or compressed again, and the
segments themselves are already in place for the artifact.

The link from a locked distribution to its segments is an install record, kept
in the caches under a key over everything that decides the installed bytes:
the pin and the wheel hashes of the lock, the target Python and platform, the
excluded packages, whether the app asked for it directly (the ``REQUESTED``
marker) and uv's version. The record holds the install description the build
keeps for it (``InstalledDistribution``); the segments are found by the names
that description gives them, under their own records.

Nothing from a cache is trusted on its word: each segment is checked against
its digest as it is copied, and every extracted file against the digest its
RECORD gives, the RECORD against the record's digest. Any mismatch, an entry
outside the distribution's own top-level entries, or a top-level entry already
present in the build folder sends that distribution to uv as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from pydantic import Field, ValidationError
from zlib_ng import gzip_ng, zlib_ng

from ..store import Blob, BlobRecord, Record, hash_file, load, record_digest
from . import KEY_VERSION, TreeFile, _first_found, _restore_group, _safe_relative, _session, uv_version
from .local import _touch

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..deps.installed import InstalledDistribution
    from ..deps.locks import LockEntry
    from ..deps.settings import DepsSettings
    from .local import LocalCache
    from .remote import RemoteCache

INSTALL_KIND = "install"
READ_CHUNK = 1 << 20
#: Files up to this size are written by the writer threads, at most IN_FLIGHT bytes of them queued.
SMALL_FILE = 4 << 20
IN_FLIGHT = 32 << 20
WRITERS = 4
#: Files outside its own top-level entries a distribution may have and still be restored.
MAX_EXTRA = 32


class InstallAction(Record):
    """What installing one locked distribution produced, as the build describes it."""

    kind: str
    #: ``InstalledDistribution`` fields.
    dist: dict[str, object]
    #: Its files under top-level entries it shares with others (``bin/`` scripts), which its
    #: segments do not hold: each a blob of its own.
    extra: dict[str, TreeFile] = Field(default_factory=dict)


@dataclass(frozen=True)
class InstallRecord:
    """An install record ready to keep: its key, its JSON and the extra files' blobs."""

    key: str
    data: bytes
    extra: list[tuple[Path, Blob]]


def install_key(entry: LockEntry, settings: DepsSettings, requested: bool) -> str | None:
    """The key of ``entry``'s install record, or None when its wheel is not pinned by hash."""
    uv = uv_version()
    if not entry.hashes or not uv:
        return None
    material = [
        "flash-tasks",
        INSTALL_KIND,
        KEY_VERSION,
        entry.pin,
        sorted(entry.hashes),
        settings.python_version,
        settings.python_platform,
        sorted(settings.excluded()),
        requested,
        uv,
        # uv writes this interpreter into the scripts it installs (and so into RECORD)
        sys.executable,
    ]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def install_record(build: Path, dist: dict[str, object], own_tops: Sequence[str], files: Sequence[str]) -> InstallRecord | None:
    """A distribution's install record, if its segments and a few extra files hold every one of its files."""
    from ..package import _keep

    tops = dist.get("top_level", ())
    key = dist.get("install_key")
    if not isinstance(key, str) or not key or not isinstance(tops, (list, tuple)) or not set(own_tops) <= set(tops):
        return None
    if not files or not all(_keep(f) for f in files):
        return None
    own = set(own_tops)
    extra: dict[str, TreeFile] = {}
    blobs: list[tuple[Path, Blob]] = []
    for rel in files:
        path = build / rel
        try:
            info = os.lstat(path)
        except OSError:
            return None  # gone since it was listed: the next build that stores tries again
        if not stat.S_ISREG(info.st_mode):
            return None  # extraction makes regular files only
        if rel.split("/", 1)[0] in own:
            continue
        blob = hash_file(path)
        if blob is None or len(extra) >= MAX_EXTRA:
            return None
        extra[rel] = TreeFile(blob=blob, mode=info.st_mode & 0o777)
        blobs.append((path, blob))
    described = {k: v for k, v in dist.items() if k != "install_key"}
    data = InstallAction(kind=INSTALL_KIND, dist=described, extra=extra).model_dump_json().encode("utf-8")
    return InstallRecord(key=key, data=data, extra=blobs)


def _lookup(key: str) -> InstallAction | None:
    """The install record under ``key``: local cache first, then the remote."""
    session = _session()

    def local(cache: LocalCache) -> InstallAction | None:
        record = load(InstallAction, cache.action_path(key))
        if record is None or record.kind != INSTALL_KIND:
            return None
        _touch(cache.action_path(key))
        return record

    def remote(cache: RemoteCache) -> InstallAction | None:
        data = cache.get_small(f"ac/{key}")
        if data is None:
            with session.lock:
                session.remote_misses.add(key)
            return None
        try:
            found = InstallAction.model_validate_json(data)
        except (ValidationError, ValueError):
            return None
        if found.kind != INSTALL_KIND:
            return None
        with session.lock:
            session.fetched_installs[key] = data
        return found

    return _first_found(session, local, remote)




def _open_gzip(path: Path) -> IO[bytes]:
    """A gzip file (all its members) for reading, inflated by zlib-ng (about 1.6x zlib's speed here)."""
    return cast("IO[bytes]", gzip_ng.open(path, "rb"))  # type: ignore[no-untyped-call]


class _Unusable(Exception):
    """The segments do not extract into exactly the recorded distribution."""


#: What makes a distribution's cached files unusable: a mismatch, I/O trouble, a damaged tar or
#: deflate stream (``BadGzipFile`` is an ``OSError``; zlib-ng's own error is typed as an instance).
_RESTORE_ERRORS: tuple[type[BaseException], ...] = (_Unusable, OSError, tarfile.TarError, EOFError, cast("type[BaseException]", zlib_ng.error))


def _safe(name: str, tops: set[str]) -> bool:
    """A plain relative path under one of ``tops``."""
    return _safe_relative(name) and name.split("/", 1)[0] in tops


def _write_file(target: str, data: bytes, mode: int) -> str:
    """Create ``target`` (it must not exist) holding ``data``; its RECORD-style digest."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)  # not narrowed by the umask
    finally:
        os.close(fd)
    return record_digest(hashlib.sha256(data).digest())


def _extract(segments: Sequence[Path], staging: Path, tops: set[str], writers: ThreadPoolExecutor) -> dict[str, str]:
    """Extract the segments into ``staging``; returns each regular file's RECORD-style digest.

    This thread inflates and reads the tar entries; files up to ``SMALL_FILE``
    are created and hashed by ``writers`` (the system calls and the hashing
    release the GIL), at most ``IN_FLIGHT`` bytes of them waiting at a time;
    bigger ones are streamed here, one chunk in memory at a time.
    """
    digests: dict[str, str] = {}
    made: set[str] = set()
    root = str(staging)
    pending: deque[tuple[str, Future[str], int]] = deque()
    waiting = 0

    def settle(limit: int) -> None:
        nonlocal waiting
        while pending and waiting > limit:
            name, future, size = pending.popleft()
            digests[name] = future.result()
            waiting -= size

    try:
        for segment in segments:
            # "r:" reads a seekable stream in place (forward seeks only, here), without "r|"'s block copying.
            with _open_gzip(segment) as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
                for member in archive:
                    name = member.name.removeprefix("./").rstrip("/")  # the artifact's entries start with ./
                    if not _safe(name, tops):
                        raise _Unusable(f"unexpected entry {member.name!r}")
                    target = f"{root}/{name}"
                    if member.isdir():
                        if name not in made:
                            os.makedirs(target, exist_ok=True)
                            made.add(name)
                        continue
                    if not member.isreg():
                        raise _Unusable(f"{member.name!r} is not a regular file")
                    reader = archive.extractfile(member)
                    if reader is None:
                        raise _Unusable(f"{member.name!r} has no data")
                    parent = name.rpartition("/")[0]
                    if parent and parent not in made:
                        os.makedirs(f"{root}/{parent}", exist_ok=True)
                        made.add(parent)
                    mode = member.mode & 0o777
                    if member.size <= SMALL_FILE:
                        data = reader.read()
                        pending.append((name, writers.submit(_write_file, target, data, mode), len(data)))
                        waiting += len(data)
                        settle(IN_FLIGHT)
                        continue
                    digest = hashlib.sha256()
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                    with open(fd, "wb", buffering=0) as out:
                        while chunk := reader.read(READ_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                        os.fchmod(fd, mode)
                    digests[name] = record_digest(digest.digest())
        settle(-1)
    finally:
        for _, future, _ in pending:  # on a failure, let the writes end before the caller cleans up
            future.cancel()
            if not future.cancelled():
                future.exception()
    return digests


def _check(staging: Path, dist: InstalledDistribution, digests: dict[str, str], absent: frozenset[str] = frozenset()) -> None:
    """The extracted files are exactly what the distribution's RECORD lists, and the RECORD is the recorded one.

    ``absent``: top-level entries whose files are not under ``staging`` (``digests`` has them).
    """
    from ..store import content_hash, read_record

    try:
        rows = read_record(staging / dist.dist_info / "RECORD")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Unusable(f"no readable RECORD ({exc})") from None
    try:
        same = content_hash(staging, dist.dist_info, rows, absent=absent) == dist.content_hash
    except ValueError as exc:
        raise _Unusable(str(exc)) from None
    if not same:
        raise _Unusable("RECORD differs from the install record")
    listed = set()
    for relative, digest, _ in rows:
        listed.add(relative)
        if digest and digests.get(relative) != digest:
            raise _Unusable(f"{relative} does not match its RECORD digest")
    if not listed <= set(digests):
        raise _Unusable("a file RECORD lists is missing")


def _fetch_extra(rel: str, entry: TreeFile, dest: Path) -> bool:
    """One extra file of an install record into ``dest``, checked against its digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    found = _first_found(
        _session(),
        lambda cache: cache.fetch(entry.blob, dest) or None,
        lambda cache: cache.download(entry.blob, dest) == "ok" or None,
    )
    return bool(found)


@dataclass
class _Fetched:
    """A distribution whose install record and segments are in ``.flash``, ready to extract."""

    key: str
    dist: InstalledDistribution
    record: InstallAction
    own: set[str]
    paths: list[Path]
    segments: dict[str, BlobRecord]


def _fetch_one(config: BuildConfig, build_dir: Path, entry: LockEntry, key: str, requested: bool) -> _Fetched | None:
    """Find ``entry``'s install record and put its segments in place (run in parallel: mostly waiting)."""
    from ..deps.installed import InstalledDistribution
    from ..package import segment_paths

    found = _lookup(key)
    if found is None:
        return None
    try:
        dist = InstalledDistribution.model_validate(found.dist)
    except ValidationError:
        return None
    if (dist.name, dist.pin, dist.hashes, dist.requested) != (entry.name, entry.pin, entry.hashes, requested):
        return None
    shared = {rel.split("/", 1)[0] for rel in found.extra}
    own = set(dist.top_level) - shared
    if not own or not all(_safe(rel, shared) for rel in found.extra):
        return None
    if any(os.path.lexists(build_dir / top) for top in own) or any(os.path.lexists(build_dir / rel) for rel in found.extra):
        return None  # something of that name is there already: uv merges it properly
    paths = segment_paths(config, dist.model_dump(mode="json"), sorted(own))
    records = _restore_group(_session(), paths)
    if not records:
        return None
    return _Fetched(key, dist, found, own, paths, records)


def _install_one(build_dir: Path, fetched: _Fetched, writers: ThreadPoolExecutor) -> bool:
    """Extract one distribution's segments (and fetch its extra files) into place; all or nothing."""
    dist, found, own = fetched.dist, fetched.record, fetched.own
    staging = build_dir / f".{dist.name}-restore.tmp-{os.getpid()}-{threading.get_native_id()}"  # swept after a kill
    shutil.rmtree(staging, ignore_errors=True)
    moved: list[Path] = []
    try:
        staging.mkdir(parents=True)
        digests = _extract(fetched.paths, staging, own, writers)
        for rel, item in found.extra.items():
            if not _fetch_extra(rel, item, staging / rel):
                raise _Unusable(f"{rel} is not in the caches")
            os.chmod(staging / rel, item.mode & 0o777)
            digests[rel] = record_digest(bytes.fromhex(item.blob.sha256))
        _check(staging, dist, digests)
        for name in [*sorted(own), *sorted(found.extra)]:
            target = build_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(target):
                raise _Unusable(f"{name} appeared in the build folder meanwhile")
            os.rename(staging / name, target)
            moved.append(target)
    except _RESTORE_ERRORS as exc:
        _take_out(moved)  # a partly moved distribution is taken out again: uv installs it whole
        _forget(fetched.key, fetched.paths)
        with _session().lock:
            _session().unusable_installs.append(f"{dist.name} {dist.version} ({exc})")
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _place_extra(build_dir: Path, fetched: _Fetched) -> bool:
    """Put in place what the archive step reads of a distribution whose files are extracted later.

    That is its files under shared top-level entries (``bin/`` scripts), which
    ship in the fresh segment: each checked against its blob's digest as it is
    fetched. Its segments, dist-info included, are extracted by ``fill``, which
    then checks every file against RECORD. All or nothing.
    """
    dist, found = fetched.dist, fetched.record
    moved: list[Path] = []
    try:
        for rel, item in sorted(found.extra.items()):
            target = build_dir / rel
            if os.path.lexists(target):
                raise _Unusable(f"{rel} appeared in the build folder meanwhile")
            staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_native_id()}")  # swept after a kill
            if not _fetch_extra(rel, item, staging):
                staging.unlink(missing_ok=True)
                raise _Unusable(f"{rel} is not in the caches")
            os.chmod(staging, item.mode & 0o777)
            os.rename(staging, target)
            moved.append(target)
    except _RESTORE_ERRORS as exc:
        _take_out(moved)
        _forget(fetched.key, fetched.paths)
        with _session().lock:
            _session().unusable_installs.append(f"{dist.name} {dist.version} ({exc})")
        return False
    return True


def _take_out(moved: Sequence[Path]) -> None:
    """Remove what was moved into the build folder for a distribution that then failed."""
    for target in moved:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _separate(fetched: Sequence[_Fetched]) -> bool:
    """Whether no distribution's own top-level entries are shared with another's (or the SDK's)."""
    for item in fetched:
        others = {"runpod_flash"}
        for other in fetched:
            if other is not item:
                others.update(other.dist.top_level)
        if item.own & others:
            return False
    return True


def _forget(key: str, paths: Sequence[Path]) -> None:
    """Segments that do not hold what their install record says: not used again, here or by later builds.

    They leave ``.flash`` and this build (the archive step compresses the
    distribution from what uv installs), and the local cache loses both records;
    a remote cannot be cleaned, but the segments this build compresses replace
    the record there.
    """
    from . import segment_key

    session = _session()
    with session.lock:
        session.bad_segments.update(p.name for p in paths)
    for path in paths:
        path.unlink(missing_ok=True)
    local = session.local
    if local is not None:
        for action in (key, segment_key(list(paths))):
            try:
                local.action_path(action).unlink(missing_ok=True)
            except OSError as exc:
                session.local_failed(exc)


def restore_installs(
    config: BuildConfig,
    build_dir: Path,
    entries: Sequence[LockEntry],
    settings: DepsSettings,
    requested: frozenset[str] | None,
    *,
    background: bool = False,
) -> dict[str, InstalledDistribution]:
    """Install what the caches can from segments; returns the distributions installed so.

    Their segments are left in ``.flash/.state/segments`` and entered in its
    index, so the archive step uses them without reading them again. With
    ``background``: nothing unless every entry's segments are found and no two
    of them share a top-level entry; then only what the archive step reads is
    put in place now, the rest is extracted after the build (``fill``), as a
    pending-fill record written here (before the install state names them) says.
    """
    session = _session()
    if session.local is None and session.remote is None:
        return {}
    jobs = []
    for entry in entries:
        asked = requested is None or entry.name in requested
        key = install_key(entry, settings, asked)
        if key is not None:
            jobs.append((entry, key, asked))
    if not jobs:
        return {}
    segments_dir = config.paths.segments
    if os.path.lexists(segments_dir) and not segments_dir.is_dir():
        from ..stage import remove_path

        remove_path(segments_dir)
    segments_dir.mkdir(parents=True, exist_ok=True)

    from . import FETCH_WORKERS

    # Records and segments are fetched in parallel (mostly waiting on a remote); then one
    # distribution at a time is extracted (inflating and reading tar entries hold the GIL),
    # its files written by a few threads.
    with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(jobs)), thread_name_prefix="flash-fetch") as fetchers:
        fetched = list(fetchers.map(lambda job: _fetch_one(config, build_dir, *job), jobs))
    out: dict[str, InstalledDistribution] = {}
    segments: dict[str, BlobRecord] = {}
    found = [item for item in fetched if item is not None]
    later = background and len(found) == len(jobs) == len(entries) and _separate(found)
    if background and not later:
        return {}  # not all of them: uv installs them (from its cache, or else from these segments)
    deferred: list[_Fetched] = []
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="flash-restore") as writers:
        for item in found:
            if later:
                if not _place_extra(build_dir, item):
                    continue  # uv installs it
                deferred.append(item)
            elif not _install_one(build_dir, item, writers):
                continue
            out[item.dist.name] = item.dist.model_copy(update={"install_key": item.key})
            segments.update(item.segments)
    if deferred:
        from .fill import FillEntry, write_pending

        write_pending(
            config.paths,
            [
                FillEntry(
                    key=item.key,
                    dist=item.dist.model_dump(mode="json"),
                    own=sorted(item.own),
                    extra={rel: record_digest(bytes.fromhex(f.blob.sha256)) for rel, f in sorted(item.record.extra.items())},
                    segments=[p.name for p in item.paths],
                )
                for item in deferred
            ],
        )
    if segments:
        from ..package import adopt_segments

        adopt_segments(config, segments)
    with session.lock:
        session.stats.installs_restored += len(out)
        if session.unusable_installs:
            bad = session.unusable_installs
            session.warnings.append(
                f"cached segments could not be used for {', '.join(bad)}; installed from the wheels instead"
            )
            session.unusable_installs = []
    return out
