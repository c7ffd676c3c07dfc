"""Shared caches of dependency segments: one per user on this machine, one remote for many.

A dependency segment (one distribution's files, compressed; see
``flash_tasks.package``) is a pure function of what its file name's key
covers: the segment format, the compressor and its level, the archive
timestamp, the distribution's name, version and RECORD digest, the top-level
entries it holds and the chunk size. So a segment compressed for one app can
be reused by any other app, checkout or machine that needs the same key:

* ``restore_segments`` fills the segments a build is missing, before anything
  is compressed: from the local cache, else from the remote one;
* ``store_segments``, called once the artifact is published, puts what this
  build compressed (or downloaded) into the local cache and queues it for
  upload to the remote, on a background thread that ``finish`` joins.

Settings: ``FLASH_TASKS_CACHE_DIR`` (or ``--cache-dir``; default the platform's
cache folder, ``~/.cache/flash-tasks`` on Linux), ``FLASH_TASKS_CACHE_MAX``
(default 5G; ``0`` turns the local cache off), ``FLASH_TASKS_REMOTE_CACHE`` (or
``--remote-cache URL``), ``FLASH_TASKS_REMOTE_CACHE_TOKEN`` (a bearer token) and
``FLASH_TASKS_REMOTE_CACHE_READ_ONLY=1`` (or ``--remote-cache-read-only``).

Only what derives from public packages ever goes to the remote (dependency
segments, install records with the scripts they name, see ``cache.installs``,
the SDK's package as one archive, and resolved lock bodies, see ``cache.resolutions``): never the app's sources, handlers or
manifest (they live in the fresh segment, which no cache sees). A cache that fails (unwritable folder, full disk, a dead,
slow or refusing server) costs one warning and a local build, never the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict

from ..errors import UsageError
from ..store import Blob, BlobRecord, Record, Stamp, hash_file, load, make_folders
from .local import ActionRecord, LocalCache, temporary_name

if TYPE_CHECKING:
    from ..config import BuildConfig
    from .installs import InstallRecord
    from .remote import RemoteCache, RemoteError

# The remote module (http.client: ~40 ms of imports) is loaded only when a remote cache is set.

__all__ = [
    "CacheSettings",
    "CacheStats",
    "active",
    "configure",
    "end_build",
    "finish",
    "last_stats",
    "restore_segments",
    "restore_tree",
    "settings",
    "store_segments",
    "store_tree",
    "take_warnings",
    "tree_files",
]

DEFAULT_MAX = 5 * 1024**3
SEGMENT_KIND = "segment"
#: Bumped when the meaning of an action key changes.
KEY_VERSION = 1


@cache
def uv_version() -> str:
    """The installed uv's version (part of every key over what uv produced), or "" without one."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("uv")
    except PackageNotFoundError:
        return ""


T = TypeVar("T")
FETCH_WORKERS = 4


class CacheSettings(BaseModel):
    """Where the caches are and how they may be used, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: None: no local cache.
    local_dir: Path | None
    max_bytes: int
    remote_url: str | None = None
    token: str | None = None
    read_only: bool = False

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        return [(k, "***" if k == "token" and v else v) for k, v in super().__repr_args__()]


def default_cache_dir() -> Path:
    """The platform's per-user cache folder for this tool."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "flash-tasks"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "flash-tasks" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache") / "flash-tasks"


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str, what: str = "FLASH_TASKS_CACHE_MAX") -> int:
    """``5G``, ``500M``, ``1.5GB``, ``2GiB`` or a number of bytes (units of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"{what} must be a size such as 5G, 500M or 1000000, got {text!r}", hint="units: K, M, G, T (powers of 1024); 0 turns the cache off")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_OVERRIDES: dict[str, object] = {}


def configure(*, cache_dir: str | None = None, remote_url: str | None = None, read_only: bool = False) -> CacheSettings:
    """Set this process's command-line choices (over the environment) and check them."""
    _OVERRIDES.clear()
    if cache_dir is not None:
        _OVERRIDES["cache_dir"] = cache_dir
    if remote_url is not None:
        _OVERRIDES["remote_url"] = remote_url
    if read_only:
        _OVERRIDES["read_only"] = True
    return settings()


def settings(environ: dict[str, str] | None = None) -> CacheSettings:
    """The cache settings: command line, then environment, then defaults."""
    env = os.environ if environ is None else environ
    raw_dir = str(_OVERRIDES.get("cache_dir") or env.get("FLASH_TASKS_CACHE_DIR", "")).strip()
    local = Path(raw_dir).expanduser() if raw_dir else default_cache_dir()
    raw_max = env.get("FLASH_TASKS_CACHE_MAX", "").strip()
    max_bytes = parse_size(raw_max) if raw_max else DEFAULT_MAX
    remote = str(_OVERRIDES.get("remote_url") or env.get("FLASH_TASKS_REMOTE_CACHE", "")).strip() or None
    if remote is not None:
        from .remote import RemoteCache

        try:
            RemoteCache(remote)
        except ValueError as exc:
            raise UsageError(f"remote cache: {exc}", hint="use e.g. --remote-cache http://cache.internal:8080/flash") from None
    read_only = bool(_OVERRIDES.get("read_only")) or env.get("FLASH_TASKS_REMOTE_CACHE_READ_ONLY", "").strip().lower() in ("1", "true", "yes")
    token = env.get("FLASH_TASKS_REMOTE_CACHE_TOKEN", "").strip() or None
    return CacheSettings(
        local_dir=local.absolute() if max_bytes > 0 else None,
        max_bytes=max_bytes,
        remote_url=remote,
        token=token,
        read_only=read_only,
    )


@dataclass
class CacheStats:
    """What the caches did during one archive step."""

    local_hits: int = 0
    remote_hits: int = 0
    misses: int = 0
    stored: int = 0
    uploaded: int = 0
    #: Distributions installed by extracting their cached segments (``cache.installs``).
    installs_restored: int = 0
    #: Trees (the SDK's package) fetched from the remote as one archive.
    trees_from_remote: int = 0
    #: Segment file names restored, per source.
    restored: dict[str, str] = field(default_factory=dict)


class _Session:
    """The caches as one build uses them: each disabled for the rest of the build at its first failure."""

    def __init__(self, chosen: CacheSettings) -> None:
        self.settings = chosen
        self.local = LocalCache(chosen.local_dir, chosen.max_bytes) if chosen.local_dir is not None else None
        self.remote: RemoteCache | None = None
        if chosen.remote_url:
            from .remote import RemoteCache

            self.remote = RemoteCache(chosen.remote_url, token=chosen.token, read_only=chosen.read_only)
        self.stats = CacheStats()
        self.warnings: list[str] = []
        self.lock = threading.Lock()
        #: Groups fetched from the remote, to keep in the local cache once the artifact is out.
        self.downloaded: list[tuple[str, list[Path], list[Blob]]] = []
        #: Blobs the remote holds with other bytes than their name says: replaced when uploading.
        self.bad_remote: set[str] = set()
        #: Install records found on the remote (JSON), kept in the local cache with their segments.
        self.fetched_installs: dict[str, bytes] = {}
        #: Distributions whose cached segments did not extract as recorded (one warning says them all).
        self.unusable_installs: list[str] = []
        #: Segment files whose cached bytes were found wrong in this build: never restored again by it.
        self.bad_segments: set[str] = set()
        #: Install records and trees this build asked the remote for and did not get (sent once the artifact is out).
        self.remote_misses: set[str] = set()
        #: Trees the remote lacked, to send as one archive each once the artifact is out.
        self.tree_uploads: list[tuple[str, str, Path, dict[str, TreeFile]]] = []
        #: Small records to send once the artifact is out (resolutions, ``cache.resolutions``), by key.
        self.record_uploads: dict[str, bytes] = {}
        self.closed = False

    def local_failed(self, exc: OSError) -> None:
        with self.lock:
            if self.local is None:
                return
            self.warnings.append(f"the shared cache {self.local.root} cannot be used ({exc.strerror or exc}); building without it")
            self.local = None

    def remote_failed(self, exc: RemoteError) -> None:
        with self.lock:
            if self.remote is None:
                return
            self.warnings.append(f"remote cache: {exc}; not used for the rest of this build")
            self.remote = None


_SESSION: _Session | None = None
_UPLOADER: threading.Thread | None = None
_LAST_STATS = CacheStats()


def _session() -> _Session:
    """The session of the running build, started by its first use of a cache.

    ``end_build`` closes it; the next build's first use starts a new one after
    the earlier build's uploads are done (its unsaid warnings carry over).
    """
    global _SESSION
    if _SESSION is None or _SESSION.closed:
        finish(None)
        earlier = take_warnings()
        _SESSION = _Session(settings())
        _SESSION.warnings.extend(earlier)
    return _SESSION


def end_build() -> None:
    """The build that used the caches is over: the next one starts a new session."""
    if _SESSION is not None:
        _SESSION.closed = True


def segment_key(paths: list[Path]) -> str:
    """The action key of one distribution's segments: their names (which carry the content key)."""
    from ..archive import FORMAT_VERSION

    material = json.dumps(["flash-tasks", SEGMENT_KIND, KEY_VERSION, FORMAT_VERSION, [p.name for p in paths]])
    return hashlib.sha256(material.encode()).hexdigest()


def _parse_action(data: bytes, paths: list[Path]) -> ActionRecord | None:
    from pydantic import ValidationError

    try:
        record = ActionRecord.model_validate_json(data)
    except (ValidationError, ValueError):
        return None
    if record.kind != SEGMENT_KIND or record.name != paths[0].name or len(record.blobs) != len(paths):
        return None
    return record


def _first_found(session: _Session, local: Callable[[LocalCache], T | None], remote: Callable[[RemoteCache], T | None]) -> T | None:
    """What the local cache gives, else what the remote gives; a cache that fails is not used again by the build."""
    if session.local is not None:
        try:
            found = local(session.local)
            if found is not None:
                return found
        except OSError as exc:
            session.local_failed(exc)
    if session.remote is not None:
        from .remote import RemoteError

        try:
            return remote(session.remote)
        except RemoteError as exc:
            session.remote_failed(exc)
    return None


def _restore_group(session: _Session, paths: list[Path]) -> dict[str, BlobRecord]:
    """One distribution's segments from a cache (all of them or none), with their fresh records."""
    key = segment_key(paths)
    if any(p.name in session.bad_segments for p in paths):
        with session.lock:
            session.stats.misses += 1
        return {}
    local = session.local
    if local is not None:
        try:
            record = local.get_action(key)
            usable = record is not None and (record.kind, record.name, len(record.blobs)) == (SEGMENT_KIND, paths[0].name, len(paths))
            if record is not None and usable and all(local.fetch(blob, path) for blob, path in zip(record.blobs, paths, strict=False)):
                with session.lock:
                    session.stats.local_hits += 1
                    session.stats.restored.update({p.name: "local" for p in paths})
                return _records(paths, record.blobs)
        except OSError as exc:
            session.local_failed(exc)
    remote = session.remote
    if remote is not None:
        from .remote import RemoteError

        try:
            data = remote.get_small(f"ac/{key}")
            record = _parse_action(data, paths) if data is not None else None
            if record is not None and all(_download(session, remote, blob, path) for blob, path in zip(record.blobs, paths, strict=False)):
                with session.lock:
                    session.stats.remote_hits += 1
                    session.stats.restored.update({p.name: "remote" for p in paths})
                    session.downloaded.append((key, paths, list(record.blobs)))
                return _records(paths, record.blobs)
        except RemoteError as exc:
            session.remote_failed(exc)
        except OSError as exc:  # writing into .flash failed: the build itself reports that when it compresses
            session.warnings.append(f"could not write a segment fetched from the remote cache: {exc.strerror or exc}")
    with session.lock:
        session.stats.misses += 1
    return {}


def _download(session: _Session, remote: RemoteCache, blob: Blob, path: Path) -> bool:
    outcome = remote.download(blob, path)
    if outcome == "bad":
        with session.lock:
            session.bad_remote.add(blob.sha256)
            session.bad_segments.add(path.name)  # not fetched again by this build's archive step
            session.warnings.append("remote cache: an object did not match its digest; it was ignored, rebuilt and sent again")
    return outcome == "ok"


def _records(paths: list[Path], blobs: list[Blob]) -> dict[str, BlobRecord]:
    out: dict[str, BlobRecord] = {}
    for path, blob in zip(paths, blobs, strict=False):
        stamp = Stamp.of(path)
        if stamp is None or stamp.size != blob.size:
            return {}
        out[path.name] = BlobRecord(blob=blob, stamp=stamp)
    return out


def restore_segments(config: BuildConfig, groups: list[list[Path]]) -> dict[str, BlobRecord]:
    """Fill missing segments from the caches; returns the records of those restored.

    Called by the archive step before it compresses anything. A group (one
    distribution's chunks) is restored whole or not at all.
    """
    session = _session()
    session.warnings.extend(take_early())  # e.g. from the SDK step of this build
    if not groups or (session.local is None and session.remote is None):
        return {}
    restored: dict[str, BlobRecord] = {}
    if len(groups) == 1 or session.remote is None:
        results = [_restore_group(session, paths) for paths in groups]
    else:
        with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(groups)), thread_name_prefix="flash-cache") as pool:
            results = list(pool.map(lambda paths: _restore_group(session, paths), groups))
    for result in results:
        restored.update(result)
    return restored


#: A distribution's install record for the caches (``cache.installs``), made on demand; None: it has none.
InstallOf = Callable[[], "InstallRecord | None"]


def active() -> bool:
    """Whether the running build has used a cache (then the archive step keeps what it fetched)."""
    return _SESSION is not None and not _SESSION.closed


def store_segments(config: BuildConfig, groups: list[tuple[list[Path], list[Blob], InstallOf]], compressed: set[str]) -> None:
    """Keep this build's segments in the caches; called after the artifact is published.

    ``groups`` are every distribution's segment paths with their blobs, and its
    install record if its segments hold the whole distribution;
    ``compressed`` names the segment files this build compressed. Those go to
    the local cache and the remote; the other groups go to the local cache only
    if it lacks them (so an app built before the cache existed fills it at its
    next dependency change). Only called when a cache was used: an edit
    rebuild never loads this module.
    """
    global _UPLOADER, _LAST_STATS
    session = _session()
    uploads: list[tuple[str, list[Path], list[Blob], InstallRecord | None]] = []
    remote_hit = {key for key, _, _ in session.downloaded}
    for paths, blobs, install_of in groups:
        key = segment_key(paths)
        fresh = any(p.name in compressed for p in paths)
        install: InstallRecord | None = None
        local = session.local
        if local is not None:
            try:
                wanted = fresh or key in remote_hit or not local.action_path(key).is_file()
                kept = local.action_path(key).is_file()
                if wanted and all(local.put_blob(path, blob) for path, blob in zip(paths, blobs, strict=False)):
                    local.put_action(key, ActionRecord(kind=SEGMENT_KIND, name=paths[0].name, blobs=blobs))
                    session.stats.stored += 1
                    kept = True
                if kept:
                    install = install_of()
                    missing_record = install is not None and not local.action_path(install.key).is_file()
                    if install is not None and missing_record and all(local.put_blob(path, blob) for path, blob in install.extra):
                        local.put_bytes(install.key, session.fetched_installs.get(install.key, install.data))
            except OSError as exc:
                session.local_failed(exc)
        if fresh:
            uploads.append((key, paths, blobs, install or install_of()))
        elif session.remote_misses:
            # The remote holds the segments (an older build put them there) but not the install record.
            install = install or install_of()
            if install is not None and install.key in session.remote_misses:
                uploads.append((key, [], [], install))
    if session.stats.stored and session.local is not None:
        try:
            session.local.prune()
        except OSError as exc:
            session.local_failed(exc)
    _LAST_STATS = session.stats
    if (uploads or session.tree_uploads or session.record_uploads) and session.remote is not None and not session.settings.read_only:
        _UPLOADER = threading.Thread(target=_upload, args=(session, uploads), name="flash-cache-upload", daemon=False)
        _UPLOADER.start()


def _upload(session: _Session, uploads: list[tuple[str, list[Path], list[Blob], InstallRecord | None]]) -> None:
    """Send blobs first, then the action records that name them (a reader never sees a dangling record)."""
    from .remote import RemoteError

    for key, paths, blobs, install in uploads:
        remote = session.remote
        if remote is None:
            return
        try:
            sent = [remote.upload_file(path, blob, replace=blob.sha256 in session.bad_remote) for path, blob in zip(paths, blobs, strict=False)]
            if paths:
                record = ActionRecord(kind=SEGMENT_KIND, name=paths[0].name, blobs=blobs).model_dump_json().encode()
                remote.put(f"ac/{key}", record, len(record))
            if install is not None:
                for path, blob in install.extra:
                    remote.upload_file(path, blob, replace=blob.sha256 in session.bad_remote)
                remote.put(f"ac/{install.key}", install.data, len(install.data))
            with session.lock:
                session.stats.uploaded += sum(sent)
        except RemoteError as exc:
            session.remote_failed(exc)
        except OSError as exc:  # the segment was replaced or removed by a later build: nothing to send
            session.warnings.append(f"a segment could not be uploaded: {exc.strerror or exc}")
    for key, kind, root, files in session.tree_uploads:
        _upload_tree(session, key, kind, root, files)
    for key, data in list(session.record_uploads.items()):
        remote = session.remote
        if remote is None:
            return
        try:
            remote.put(f"ac/{key}", data, len(data))
        except RemoteError as exc:
            session.remote_failed(exc)


#: Warnings from before the archive step's session (the SDK step).
_EARLY: list[str] = []


def take_early() -> list[str]:
    """The warnings said before the build's session started (the SDK step's)."""
    out = list(_EARLY)
    _EARLY.clear()
    return out


def take_warnings() -> list[str]:
    """The warnings of the current build so far (each once); they are not said again."""
    out = list(_EARLY)
    _EARLY.clear()
    session = _SESSION
    if session is not None:
        with session.lock:
            out.extend(session.warnings)
            session.warnings.clear()
    return list(dict.fromkeys(out))


def finish(err: IO[str] | None, timeout: float | None = None) -> None:
    """Wait for the uploads of the last build, then say the warnings not said yet on ``err``."""
    global _UPLOADER
    if _UPLOADER is not None:
        _UPLOADER.join(timeout)
        if not _UPLOADER.is_alive():
            _UPLOADER = None
    if err is not None:
        for text in take_warnings():
            err.write(f"warning: {text}\n")


def last_stats() -> CacheStats:
    """What the caches did in the last archive step of this process."""
    return _LAST_STATS


# -- trees (the SDK's package folder, per version and index) ------------------------------------


class TreeFile(BaseModel):
    """One file of a cached tree: its blob and permission bits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blob: Blob
    mode: int


class TreeAction(Record):
    """What a tree key produced: every file, by its path relative to the tree's root."""

    kind: str
    files: dict[str, TreeFile]


def _tree_key(kind: str, material: str) -> str:
    return hashlib.sha256(json.dumps(["flash-tasks", kind, KEY_VERSION, material]).encode()).hexdigest()


def _safe_relative(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) and "\\" not in rel


def tree_files(kind: str, material: str) -> dict[str, TreeFile] | None:
    """The files of the tree the local cache holds for ``material`` (its record only: nothing else is read), or None."""
    local = _local_now()
    if local is None:
        return None
    try:
        record = load(TreeAction, local.action_path(_tree_key(kind, material)))
    except OSError as exc:
        _early_warning(local, exc)
        return None
    if record is None or record.kind != kind or not record.files or not all(map(_safe_relative, record.files)):
        return None
    return record.files


def restore_tree(kind: str, material: str, target: Path, *, folder: str = "", files: dict[str, TreeFile] | None = None) -> dict[str, BlobRecord] | None:
    """Make ``target`` the tree the local cache holds for ``material``, replacing what is there; all or nothing.

    With ``folder``, every file of the tree must lie in that folder of it, and
    ``target`` becomes that folder. Each file is checked against its digest as
    it is copied (a damaged blob is deleted, and nothing is restored); the
    answer is every file's record, by its path in the tree, made on the way, so
    no file is read twice. ``files``: the tree's record, when the caller has
    just read it with ``tree_files``.

    Only the local cache holds trees (a tree is many small files: one request
    each would cost a fresh machine more than fetching the package again).
    """
    from ..stage import remove_path

    local = _local_now()
    if local is None:
        return None
    if files is None:
        files = tree_files(kind, material)
    prefix = f"{folder}/" if folder else ""
    if not files or not all(rel.startswith(prefix) for rel in files):
        return None
    staging = target.parent / f".flash-sdk-restore-{os.getpid()}-{threading.get_native_id()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            make_folders(staging, [rel[len(prefix) :] for rel in files])
            restored: dict[str, BlobRecord] = {}
            into = os.fspath(staging) + "/"
            for rel, entry in files.items():
                record = local.fetch_new(entry.blob, into + rel[len(prefix) :], entry.mode)
                if record is None:
                    return None
                restored[rel] = record
            remove_path(target)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _touch_action(local.action_path(_tree_key(kind, material)))
        return restored
    except OSError as exc:
        _early_warning(local, exc)
        return None


def store_tree(kind: str, material: str, root: Path, files: dict[str, BlobRecord]) -> None:
    """Keep the tree at ``root`` (files as recorded) in the local cache for ``material``."""
    local = _local_now()
    if local is None or not files:
        return
    try:
        for rel, record in files.items():
            if not local.put_blob(root / rel, record.blob):
                return  # changed since it was recorded: keep nothing
        entries = {rel: TreeFile(blob=r.blob, mode=r.stamp.mode) for rel, r in files.items()}
        target = local.action_path(_tree_key(kind, material))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(temporary_name(target.name))
        tmp.write_text(TreeAction(kind=kind, files=entries).model_dump_json(), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        _early_warning(local, exc)


class TreeArchive(Record):
    """A tree on the remote: one blob (a tar of its files) and every file's digest and mode."""

    kind: str
    blob: Blob
    files: dict[str, TreeFile]


def _archive_key(kind: str, material: str) -> str:
    return _tree_key(f"{kind}-archive", material)


def restore_tree_remote(kind: str, material: str, target: Path) -> bool:
    """Make ``target`` (absent) the tree the remote holds for ``material``, as one download; all or nothing.

    A remote that lacks it is sent it once the artifact is out (``queue_tree``).
    """
    import tarfile

    from .remote import RemoteError

    session = _session()
    remote = session.remote
    if remote is None:
        return False
    key = _archive_key(kind, material)
    staging = target.parent / f".{target.name}-remote.tmp-{os.getpid()}-{threading.get_native_id()}"
    download = staging.with_name(staging.name + "-tar")
    try:
        data = remote.get_small(f"ac/{key}")
        if data is None:
            with session.lock:
                session.remote_misses.add(key)
            return False
        record = TreeArchive.model_validate_json(data)
        if record.kind != kind or not record.files or not all(map(_safe_relative, record.files)):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _download(session, remote, record.blob, download):
            return False
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(download, "r:") as tar:
            members = [m for m in tar.getmembers() if m.isreg()]
            if sorted(m.name for m in members) != sorted(record.files):
                return False
            for member in members:
                dest = staging / member.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                reader = tar.extractfile(member)
                if reader is None:
                    return False
                dest.write_bytes(reader.read())
                entry = record.files[member.name]
                os.chmod(dest, entry.mode & 0o777)
                if hash_file(dest) != entry.blob:
                    return False
        os.rename(staging, target)
        with session.lock:
            session.stats.trees_from_remote += 1
        return True
    except RemoteError as exc:
        session.remote_failed(exc)
        return False
    except (OSError, ValueError, tarfile.TarError):  # ValueError: pydantic's, for a record that is not one
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        download.unlink(missing_ok=True)


def queue_tree(kind: str, material: str, root: Path, files: dict[str, BlobRecord]) -> None:
    """Send the tree at ``root`` to the remote once the artifact is out, if the remote asked lacked it."""
    session = _session()
    key = _archive_key(kind, material)
    if session.remote is None or session.settings.read_only or key not in session.remote_misses:
        return
    entries = {rel: TreeFile(blob=r.blob, mode=r.stamp.mode) for rel, r in files.items()}
    with session.lock:
        session.tree_uploads.append((key, kind, root, entries))


def _upload_tree(session: _Session, key: str, kind: str, root: Path, files: dict[str, TreeFile]) -> None:
    """One tar of the tree (its files as recorded, else nothing is sent), then its record."""
    import io
    import tarfile

    from .remote import RemoteError

    remote = session.remote
    if remote is None:
        return
    buffer = io.BytesIO()
    try:
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(files):
                data = (root / rel).read_bytes()
                if hashlib.sha256(data).hexdigest() != files[rel].blob.sha256:
                    return  # changed since it was recorded: send nothing
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = files[rel].mode & 0o777
                tar.addfile(info, io.BytesIO(data))
    except OSError:
        return
    body = buffer.getvalue()
    blob = Blob(sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    record = TreeArchive(kind=kind, blob=blob, files=files).model_dump_json().encode()
    try:
        if not remote.has(f"cas/{blob.sha256}"):
            remote.put(f"cas/{blob.sha256}", body, len(body))
        remote.put(f"ac/{key}", record, len(record))
    except RemoteError as exc:
        session.remote_failed(exc)


def _local_now() -> LocalCache | None:
    """The local cache as the settings say now (the SDK step runs before the archive's session)."""
    chosen = settings()
    return LocalCache(chosen.local_dir, chosen.max_bytes) if chosen.local_dir is not None else None


def _early_warning(local: LocalCache, exc: OSError) -> None:
    _EARLY.append(f"the shared cache {local.root} cannot be used ({exc.strerror or exc}); building without it")


def _touch_action(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass
