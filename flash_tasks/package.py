"""The archive phase: pack the build's tracked files into the artifact, in segments.

Only files the build knows about are archived: the staged sources, the
generated handlers and manifest, the bundled SDK, and each installed
distribution's files (from its RECORD). Anything else lying in
``.flash/.build`` (a killed install's temporary folder, a stray file) never
ships.

The artifact is a chain of gzip members, which readers treat as one stream:

1. a fresh segment: the archive root, the app's sources, the generated files,
   the bundled SDK, and every top-level entry that more than one owner shares
   (``bin/``, namespace packages);
2. one cached segment per installed distribution, holding the top-level
   entries only that distribution owns. Its file name carries a key over the
   distribution's name, version and RECORD digest, the compressor and the
   archive timestamp, so it is compressed once and reused until one of those
   changes;
3. the tar end-of-archive marker.

Editing a source file recompresses only the fresh segment; the cached ones are
copied by the kernel into the new artifact.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import Field

from .config import BuildConfig, BuildPaths

if TYPE_CHECKING:
    from .cache.fill import FillState
    from .cache.installs import InstallRecord
from .errors import BuildError
from .quick import FILLING_MARKER
from .stage import read_json, remove_path, write_bytes_atomic, write_json
from .store import (
    ArtifactRecord,
    Blob,
    BlobRecord,
    GroupsState,
    HandlersState,
    Record,
    StageState,
    Stamp,
    TreeRecord,
    _members_check,
    artifact_record_path,
    check_file,
    hash_record_rows,
    load,
    read_record,
    read_state,
    record_digest,
    repairs_path,
    save,
    tree_intact,
)

SEGMENT_FORMAT = 3
#: Distributions bigger than this are split into chunks compressed in parallel.
CHUNK_BYTES = 64 * 1024 * 1024
SKIPPED_NAMES = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SDK_PACKAGE = "runpod_flash"


def _keep(rel: str) -> bool:
    """Bytecode and hidden temporaries never ship."""
    parts = rel.split("/")
    if SKIPPED_NAMES.intersection(parts) or rel.endswith(SKIPPED_SUFFIXES):
        return False
    return not any(part.startswith(".") and ".tmp" in part for part in parts)


def _walk_files(root: Path, top: str) -> list[str]:
    """Files (and symlinks) under ``root/top``, as build-relative POSIX paths."""
    out: list[str] = []
    base = root / top
    if not base.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_NAMES and not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            out.append(f"{rel_dir}/{name}")
    return out


def _distributions(config: BuildConfig) -> dict[str, Any]:
    from .deps.installed import load_install_state

    state = load_install_state(config.paths.install_json)
    if state is None:
        return {}
    return {name: dist.model_dump(mode="json") for name, dist in state.distributions.items()}


_DIST_FILES: dict[tuple[str, str, str], list[tuple[str, str | None]]] = {}
#: Distributions whose files ``cache.fill`` extracts after this build: their files in place
#: already (those under shared top-level entries), with their RECORD digests.
_LATER: dict[str, list[tuple[str, str | None]]] = {}


def _dist_files(build: Path, dist: dict[str, Any]) -> list[tuple[str, str | None]]:
    """A distribution's files, each with the digest its RECORD gives (None: not listed).

    The RECORD is checked against the digest taken at install time first, so a
    damaged RECORD can never vouch for damaged files. Remembered for the rest of
    the archive step (keyed by that digest).
    """
    if dist["name"] in _LATER:
        return _LATER[dist["name"]]  # the rest is not there yet; its segments ship it
    key = (str(build), str(dist["dist_info"]), str(dist.get("content_hash")))
    if key not in _DIST_FILES:
        _DIST_FILES[key] = _read_dist_files(build, dist)
    return _DIST_FILES[key]


#: Each distribution's files under top-level entries it shares, as ``_shared_files`` found them this build.
_SHARED: dict[str, list[tuple[str, str | None]]] = {}


class _SharedMemo:
    """``.state/shared-files.json`` as read this build, and whether it is to be written back."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.changed = False


_SHARED_MEMO = _SharedMemo()


def shared_files_path(paths: BuildPaths) -> Path:
    return paths.state / "shared-files.json"


def _memo_key(build: Path, dist: dict[str, Any], own_tops: list[str]) -> str | None:
    """What a remembered list of shared files is good for: this RECORD (its stamp), this install, these own entries."""
    try:
        st = os.lstat(build / str(dist["dist_info"]) / "RECORD")
    except OSError:
        return None
    return f"{dist['dist_info']}|{dist.get('content_hash')}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{','.join(own_tops)}"


def _under_shared(rows: Iterable[tuple[str, str | None]], own_tops: Iterable[str]) -> list[tuple[str, str | None]]:
    """The rows outside a distribution's own top-level entries."""
    own = set(own_tops)
    return [(f, d) for f, d in rows if f.split("/", 1)[0] not in own]


def _shared_files(config: BuildConfig, dist: dict[str, Any], own_tops: list[str]) -> list[tuple[str, str | None]]:
    """A distribution's files under the top-level entries it shares (they ship in the fresh segment), with their digests.

    Finding them takes the whole RECORD, read and checked (numpy's has over a
    thousand rows), for a few ``bin/`` scripts: a tenth of an edit's archive
    step. The answer is kept in ``.state`` under the RECORD's stamp, the digest
    taken at install time and the distribution's own entries, and used again
    while those hold and every file it names is still in place (else, or under
    ``--verify``, the RECORD is read and checked as before, which repairs a
    damaged distribution). The files are checked against their digests as they
    are compressed either way.
    """
    build = config.paths.build
    name = str(dist["name"])
    if config.verify or name in _LATER:
        return _under_shared(_dist_files(build, dist), own_tops)
    key = _memo_key(build, dist, own_tops)
    known = _SHARED_MEMO.entries.get(name)
    if key is not None and isinstance(known, dict) and known.get("key") == key:
        in_place, rows = _all_in_place(build, known.get("files"))
        if in_place:
            return rows
    files = _under_shared(_dist_files(build, dist), own_tops)
    if key is not None:
        _SHARED_MEMO.entries[name] = {"key": key, "files": [list(row) for row in files]}
        _SHARED_MEMO.changed = True
    return files


def remember_shared_files(paths: BuildPaths, dists: list[tuple[dict[str, Any], list[str]]]) -> None:
    """Add to the memo of ``_shared_files`` the distributions just put in place (with their own top-level entries).

    Run by ``cache.fill`` once it has completed ``.build``, so that the first
    edit after a build from cached segments finds them remembered too. Each
    RECORD is read and checked here; a damaged one is left out.
    """
    data = read_json(shared_files_path(paths), {})
    memo = dict(data) if isinstance(data, dict) else {}
    for dist, own in dists:
        if not set(dist.get("top_level", ())) - set(own):
            continue  # shares nothing: never asked for
        key = _memo_key(paths.build, dist, own)
        if key is None:
            continue
        try:
            files = [list(row) for row in _under_shared(_read_dist_files(paths.build, dist), own)]
        except DamagedDistribution:
            continue
        memo[str(dist["name"])] = {"key": key, "files": files}
    try:
        write_json(shared_files_path(paths), memo)
    except OSError:
        pass  # only a missed speed-up: the next archive step reads the RECORDs


def _all_in_place(build: Path, rows: Any) -> tuple[bool, list[tuple[str, str | None]]]:
    """Whether remembered rows are well formed and their files are there (listed files as regular files), and the rows."""
    if not isinstance(rows, list):
        return False, []
    out: list[tuple[str, str | None]] = []
    root = os.fspath(build)
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and (row[1] is None or isinstance(row[1], str))):
            return False, []
        path = os.path.join(root, row[0])
        try:
            st = os.stat(path) if row[1] is not None else os.lstat(path)
        except (OSError, ValueError):
            return False, []
        if row[1] is not None and not stat.S_ISREG(st.st_mode):
            return False, []
        out.append((row[0], row[1]))
    return True, out


def _load_shared_memo(config: BuildConfig) -> None:
    _SHARED.clear()
    data = read_json(shared_files_path(config.paths), {})
    _SHARED_MEMO.entries = dict(data) if isinstance(data, dict) else {}
    _SHARED_MEMO.changed = False


def _save_shared_memo(config: BuildConfig, names: set[str]) -> None:
    """Write the memo back if this build added to it (entries of distributions no longer installed dropped)."""
    entries = _SHARED_MEMO.entries
    kept = {name: entry for name, entry in entries.items() if name in names}
    if _SHARED_MEMO.changed or kept.keys() != entries.keys():
        write_json(shared_files_path(config.paths), kept)


def _read_dist_files(build: Path, dist: dict[str, Any]) -> list[tuple[str, str | None]]:
    dist_info = dist["dist_info"]
    try:
        rows = read_record(build / dist_info / "RECORD")
    except (OSError, UnicodeDecodeError, ValueError):
        rows = None
    if rows is None:
        raise DamagedDistribution(str(dist["name"]))
    digest_now, regular = hash_record_rows(build, dist_info, rows)
    if digest_now != dist.get("content_hash"):
        raise DamagedDistribution(str(dist["name"]))
    listed = {_posix(path): (digest or None) for path, digest, _ in rows if not path.startswith("..")}
    for extra in _walk_files(build, dist_info):
        listed.setdefault(extra, None)
    root = os.fspath(build)
    # A path just found as a regular file (under the same spelling) is there; the others are looked at.
    return sorted((f, digest) for f, digest in listed.items() if f in regular or os.path.lexists(os.path.join(root, f)))


def _posix(path: str) -> str:
    """``PurePosixPath(path).as_posix()``, without building a path object for the usual, clean path."""
    if "//" in path or path.startswith("./") or "/./" in path or path.endswith(("/", "/.")) or path in ("", "."):
        return PurePosixPath(path).as_posix()
    return path


class DamagedDistribution(BuildError):
    """An installed distribution's files in ``.flash/.build`` no longer match its record."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the installed distribution {name} was changed in .flash/.build", hint="the build reinstalls it")
        self.name = name


def _fresh_files(config: BuildConfig) -> list[str]:
    """The app's staged sources, the generated files and the SDK copy: exactly the files their records name."""
    paths = config.paths
    stage = read_state(paths.stage_json, StageState)
    handlers = read_state(paths.handlers_json, HandlersState)
    files: set[str] = set(stage.files if stage else ())
    files.update(handlers.files if handlers else ())
    files.add(paths.build_manifest.relative_to(paths.build).as_posix())
    sdk = load(TreeRecord, paths.sdk_copy_json)
    files.update(sdk.files if sdk is not None else _walk_files(paths.build, SDK_PACKAGE))
    return sorted(f for f in files if os.path.lexists(paths.build / f))


def _ensure_fresh(config: BuildConfig, repairs: list[str]) -> None:
    """Restore staged sources, handlers and the SDK copy if anything changed them since they were written.

    Their tasks check them at the start of the build; this catches what changed
    them later in the same build (a distribution that installs a file of the
    same name is refused, but only after it was written).
    """

    from .graph import handlers_action, stage_action

    paths = config.paths
    if not tree_intact(paths.build, load(TreeRecord, paths.sdk_copy_json)):
        from .deps.sdk import bundle_sdk
        from .deps.tasks import settings_for

        repairs.append("the SDK copy in .flash/.build was changed: copied again")
        groups = read_state(paths.groups_json, GroupsState)
        python = groups.python_version if groups else None
        bundle_sdk(config, settings_for(config, python))
    stage = read_state(paths.stage_json, StageState)
    handlers = read_state(paths.handlers_json, HandlersState)
    for state, restore in ((stage, "stage"), (handlers, "handlers")):
        if state is not None and tree_intact(paths.build, state.copies):
            continue
        repairs.append(f"files written by the {restore} task in .flash/.build were changed: restored")
        if restore == "stage":
            stage_action(config, sorted(stage.files if stage else ()))
        else:
            handlers_action(config)



@dataclass
class DistSegments:
    """The cached segments of one distribution: its own top-level entries, in chunks."""

    name: str
    dist: dict[str, Any]
    own_tops: list[str]
    paths: list[Path]


class SegmentIndex(Record):
    """The record of every cached segment: its digest, size and stamp when written."""

    segments: dict[str, BlobRecord] = Field(default_factory=dict)


def segment_index_path(config: BuildConfig) -> Path:
    return config.paths.state / "segments.json"


def spare_record_path(config: BuildConfig) -> Path:
    return config.paths.state / "spare.json"


def segment_paths(config: BuildConfig, dist: dict[str, Any], own_tops: list[str], mtime: int | None = None) -> list[Path]:
    """Where a distribution's cached segments holding ``own_tops`` live; the names carry their content key."""
    from .archive import COMPRESSOR, archive_mtime

    name = f"{dist['name']}-{dist['version']}"
    material = repr((SEGMENT_FORMAT, COMPRESSOR, archive_mtime() if mtime is None else mtime, name, dist.get("content_hash"), own_tops, CHUNK_BYTES))
    key = hashlib.sha256(material.encode()).hexdigest()[:20]
    count = max(1, -(-int(dist.get("size", 0)) // CHUNK_BYTES))
    return [config.paths.segments / f"{name}-{key}.{i + 1}of{count}.gz" for i in range(count)]


def spare_path(config: BuildConfig) -> Path:
    """The previous artifact, kept to be cut after its dependency segments (see ``publish``)."""
    return config.paths.state / "spare.tar.gz"


def plan_segments(config: BuildConfig) -> tuple[list[str], list[DistSegments]]:
    """The fresh segment's files, and each distribution's cached segments.

    A distribution's own top-level entries (those no other owner shares) go to
    its cached segments, named by a key over what they contain, so a segment
    that checks out against its record is reused without listing a single file;
    big distributions are split into chunks that compress in parallel. Entries
    shared with the app or other distributions (``bin/``, namespace packages)
    go to the fresh segment.
    """
    from .archive import archive_mtime

    fresh = _fresh_files(config)
    local_tops = {f.split("/", 1)[0] for f in fresh}
    distributions = _distributions(config)
    _load_shared_memo(config)
    owners: dict[str, int] = {}
    for dist in distributions.values():
        for top in set(dist.get("top_level", ())):
            owners[top] = owners.get(top, 0) + 1
    mtime = archive_mtime()
    cached: list[DistSegments] = []
    for dist in distributions.values():
        tops = set(dist.get("top_level", ()))
        own_tops = sorted(t for t in tops if owners[t] == 1 and t not in local_tops)
        if tops - set(own_tops):
            shared = _shared_files(config, dist, own_tops)
            _SHARED[str(dist["name"])] = shared
            fresh.extend(f for f, _ in shared if _keep(f))
        if not own_tops:
            continue
        seg_paths = segment_paths(config, dist, own_tops, mtime)
        cached.append(DistSegments(f"{dist['name']}-{dist['version']}", dist, own_tops, seg_paths))
    _save_shared_memo(config, {str(dist["name"]) for dist in distributions.values()})
    cached.sort(key=lambda d: d.name)
    return sorted(set(fresh)), cached


@dataclass
class SdkSegment:
    """The cached segment that holds the SDK copy, and the digest each of its files must have."""

    path: Path
    files: dict[str, str | None]
    #: The folders it has entries for.
    folders: frozenset[str]


def sdk_segment(config: BuildConfig, fresh: list[str], cached: list[DistSegments], mtime: int) -> SdkSegment | None:
    """The SDK copy's own cached segment, when its record names every file it ships.

    The SDK is the same for every build of an app (and every app on one SDK
    version): compressing its hundred files again was most of an edit's
    archive step. Its segment is named by a key over the copy's record (each
    file's digest, size and mode), so it is used only for the very files the
    record vouches for. None (the SDK then ships in the fresh segment, as
    before) without a record, or when a distribution shares the SDK's folder.
    """
    from .archive import COMPRESSOR

    record = load(TreeRecord, config.paths.sdk_copy_json)
    if record is None or not record.files or not set(record.files) <= set(fresh):
        return None
    if any(SDK_PACKAGE in group.dist.get("top_level", ()) for group in cached):
        return None
    rows = sorted((rel, r.blob.sha256, r.blob.size, r.stamp.mode) for rel, r in record.files.items())
    key = hashlib.sha256(repr((SEGMENT_FORMAT, COMPRESSOR, mtime, SDK_PACKAGE, rows)).encode()).hexdigest()[:20]
    files: dict[str, str | None] = {rel: record_digest(bytes.fromhex(r.blob.sha256)) for rel, r in record.files.items()}
    folders = frozenset("/".join(parts[:depth]) for parts in (rel.split("/") for rel in files) for depth in range(1, len(parts)))
    return SdkSegment(config.paths.segments / f"{SDK_PACKAGE}-sdk-{key}.1of1.gz", files, folders)


def _chunks(entries: list[Any], count: int) -> list[list[Any]]:
    """Split entries (in archive order) into ``count`` runs of about equal file bytes."""
    sizes = [0 if e.is_dir or e.link_target else os.lstat(e.source).st_size for e in entries]
    total = sum(sizes) or 1
    out: list[list[Any]] = [[] for _ in range(count)]
    done = 0
    for entry, size in zip(entries, sizes, strict=False):
        index = min(count - 1, done * count // total)
        out[index].append(entry)
        done += size
    return out


def _entries(
    build: Path,
    files: Iterable[str],
    *,
    with_root: bool,
    expect: dict[str, str | None] | None = None,
    folders_given: frozenset[str] = frozenset(),
) -> list[Any]:
    """Archive entries for ``files`` and the folders that hold them, in tarfile.add order.

    Folders in ``folders_given`` are left out: an earlier segment has their entries.
    """
    from .archive import ROOT, Entry

    wanted: dict[str, bool] = {}
    for f in files:
        parts = f.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders_given:
                wanted.setdefault(folder, True)
        wanted[f] = False
    expect = expect or {}
    out = [ROOT] if with_root else []
    for rel in sorted(wanted, key=lambda r: r.split("/")):
        path = build / rel
        if wanted[rel]:
            out.append(Entry(rel, None, True))
        elif path.is_symlink():
            out.append(Entry(rel, path, False, os.readlink(path)))
        else:
            out.append(Entry(rel, path, False, expect=expect.get(rel)))
    return out


def _valid_segments(
    cached: list[DistSegments], verify: bool, index: SegmentIndex | None, repairs: list[str]
) -> dict[str, BlobRecord]:
    """The cached segments that still hold what their records say; the others are deleted."""
    index = index or SegmentIndex()
    valid: dict[str, BlobRecord] = {}
    for group in cached:
        for path in group.paths:
            known = index.segments.get(path.name)
            record = check_file(path, known, verify=verify)
            if record is None:
                if known is not None or os.path.lexists(path):
                    repairs.append(f"cached segment {path.name} failed its check: made again")
                remove_path(path)
            else:
                valid[path.name] = record
    return valid


def build_archive(config: BuildConfig) -> None:
    """Write the artifact, repairing an installed distribution found damaged on the way."""
    from .archive import DamagedSource

    # What this build found damaged and rebuilt: said by -v and --explain (the runner reads the file).
    repairs: list[str] = []
    for attempt in range(3):
        try:
            _build_archive(config, repairs)
            if repairs:
                write_json(repairs_path(config), repairs)
            return
        except DamagedDistribution as exc:
            if attempt == 2:
                raise
            repairs.append(f"installed files of {exc.name} in .flash/.build were changed: reinstalled")
            _repair(config, exc.name)
        except DamagedSource as exc:
            if attempt == 2:
                raise
            owner = _owner(config, exc.source)
            repairs.append(f"{exc.source.relative_to(config.paths.build)} in .flash/.build was changed: {owner} reinstalled")
            _repair(config, owner)


def _owner(config: BuildConfig, source: Path) -> str:
    rel = source.relative_to(config.paths.build).as_posix()
    for dist in _distributions(config).values():
        if rel.split("/", 1)[0] in dist.get("top_level", ()):
            try:
                if any(f == rel for f, _ in _dist_files(config.paths.build, dist)):
                    return str(dist["name"])
            except DamagedDistribution:
                return str(dist["name"])
    raise BuildError(f"{rel} in .flash/.build changed during the build", hint="build again")


def _repair(config: BuildConfig, name: str) -> None:
    """Reinstall one distribution whose files in ``.flash/.build`` were changed."""
    from .deps.tasks import reinstall

    reinstall(config, name)


def _build_archive(config: BuildConfig, repairs: list[str]) -> None:
    from .archive import END_MEMBER_SHA256, END_MEMBER_SIZE, archive_mtime, write_segments_parallel

    paths = config.paths
    build = paths.build
    if paths.segments.exists() and not paths.segments.is_dir():
        remove_path(paths.segments)
    paths.segments.mkdir(parents=True, exist_ok=True)
    _DIST_FILES.clear()
    _LATER.clear()
    pending = _pending_fill(config)
    if pending is not None:
        # Their files in place now (those under shared top-level entries); their segments ship the rest.
        _LATER.update({str(entry.dist.get("name")): sorted(entry.extra.items()) for entry in pending.entries})
    _ensure_fresh(config, repairs)
    fresh, cached = plan_segments(config)
    previous_index = load(SegmentIndex, segment_index_path(config))
    valid = _valid_segments(cached, config.verify, previous_index, repairs)
    # The SDK copy ships in a segment of its own, compressed once per SDK (and shared like the others).
    sdk = sdk_segment(config, fresh, cached, archive_mtime())
    if sdk is not None:
        valid.update(_valid_segments([DistSegments(SDK_PACKAGE, {}, [], [sdk.path])], config.verify, previous_index, repairs))
    # -- shared caches (flash_tasks.cache): a missing segment may have been compressed elsewhere
    missing = [g.paths for g in cached if not all(p.name in valid for p in g.paths)]
    if sdk is not None and sdk.path.name not in valid:
        missing.append([sdk.path])
    if missing:  # (an edit rebuild misses none: it does not even load the cache module)
        from .cache import restore_segments

        valid.update(restore_segments(config, missing))
    # -- end shared caches
    if pending is not None and _fill_first(config, pending, cached, valid):
        # Some files whose extraction was left for after the build are needed now: extract them first.
        from .cache.fill import fill

        failed = fill(paths)
        if failed:
            raise BuildError(
                f"the cached segments of {', '.join(failed)} do not hold what their RECORD lists",
                hint="build again: those are then installed from their wheels",
            )
        _DIST_FILES.clear()
        _LATER.clear()
        fresh, cached = plan_segments(config)
        sdk_record = valid.get(sdk.path.name) if sdk is not None else None
        valid = _valid_segments(cached, config.verify, previous_index, repairs)
        if sdk is not None and sdk_record is not None:
            valid[sdk.path.name] = sdk_record
    sdk_job: list[tuple[list[Any], Path]] = []
    if sdk is not None:
        fresh = [f for f in fresh if f not in sdk.files]
        if sdk.path.name not in valid:
            sdk_job.append((_entries(build, sorted(sdk.files), with_root=False, expect=sdk.files), sdk.path))
    # Files of distributions that share a top-level entry ship in the fresh segment: check them too.
    fresh_tops = {f.split("/", 1)[0] for f in fresh}
    fresh_expect: dict[str, str | None] = {}
    for dist in _distributions(config).values():
        if set(dist.get("top_level", ())) & fresh_tops:
            # Only files under shared entries ship in the fresh segment: those planned above.
            name = str(dist["name"])
            fresh_expect.update(_SHARED[name] if name in _SHARED else _dist_files(build, dist))
    fresh_path = paths.segments / f".fresh-{os.getpid()}.gz"
    given = sdk.folders if sdk is not None else frozenset()
    jobs = [(_entries(build, fresh, with_root=True, expect=fresh_expect, folders_given=given), fresh_path)]
    for group in cached:
        if not all(p.name in valid for p in group.paths):
            own = set(group.own_tops)
            listed = [(f, e) for f, e in _dist_files(build, group.dist) if f.split("/", 1)[0] in own and _keep(f)]
            entries = _entries(build, [f for f, _ in listed], with_root=False, expect=dict(listed))
            for chunk, target in zip(_chunks(entries, len(group.paths)), group.paths, strict=False):
                jobs.append((chunk, target))
    jobs.extend(sdk_job)
    try:
        infos = write_segments_parallel(jobs)
        index = SegmentIndex(segments=dict(valid))
        for info in infos[1:]:
            stamp = Stamp.of(info.path)
            if stamp is not None:
                index.segments[info.path.name] = BlobRecord(blob=Blob(sha256=info.sha256, size=info.compressed_size), stamp=stamp)
        updated = SegmentIndex(segments=dict(sorted(index.segments.items())))
        if updated != previous_index:
            save(segment_index_path(config), updated)
        # Dependencies first, sources last: an edit then only changes the artifact's tail.
        prefix = [p for group in cached for p in group.paths] + ([sdk.path] if sdk is not None else [])
        members = [index.segments[p.name].blob for p in prefix]
        fresh_blob = Blob(sha256=infos[0].sha256, size=infos[0].compressed_size)
        # A lock taken from the shared cache is confirmed by uv before anything made from it goes
        # out (or is judged by its size): uv's error, or a build again from uv's lock, otherwise.
        speculation = sys.modules.get("flash_tasks.deps.speculation")
        if speculation is not None:
            speculation.confirm(config)
        check_size(config, sum(m.size for m in members) + fresh_blob.size)
        paths.artifact.parent.mkdir(parents=True, exist_ok=True)
        end = Blob(sha256=END_MEMBER_SHA256, size=END_MEMBER_SIZE)
        publish(config, prefix, members, fresh_path, [fresh_blob, end], repairs=repairs)
    finally:
        fresh_path.unlink(missing_ok=True)
    # The manifest next to the artifact always describes the artifact next to it.
    if paths.manifest.is_dir() and not paths.manifest.is_symlink():
        remove_path(paths.manifest)
    write_bytes_atomic(paths.manifest, paths.build_manifest.read_bytes())
    keep = {p.name for group in cached for p in group.paths} | ({sdk.path.name} if sdk is not None else set())
    for old in paths.segments.glob("*.gz"):
        if old.name not in keep:
            remove_path(old)
    # -- shared caches: keep what this build compressed or fetched for other apps and machines (the artifact is out)
    caches = sys.modules.get("flash_tasks.cache")
    if missing or (caches is not None and caches.active()):
        from .cache import store_segments

        groups = [(g.paths, [index.segments[p.name].blob for p in g.paths], _install_of(build, g)) for g in cached]
        if sdk is not None:
            groups.append(([sdk.path], [index.segments[sdk.path.name].blob], lambda: None))
        store_segments(config, groups, {i.path.name for i in infos[1:]})
    # -- end shared caches


def _pending_fill(config: BuildConfig) -> FillState | None:
    """The record of what ``cache.fill`` is to extract after this build, if there is one (and it reads)."""
    if not os.path.lexists(config.paths.state / FILLING_MARKER):
        return None  # the usual case: cache.fill is not even imported
    from .cache.fill import FillState, marker_path

    return load(FillState, marker_path(config.paths))


def _fill_first(config: BuildConfig, state: FillState, cached: list[DistSegments], valid: dict[str, Any]) -> bool:
    """Whether a distribution left to ``cache.fill`` is not shipped exactly as its segments, whole, as planned."""
    planned = {str(group.dist["name"]): group for group in cached}
    for entry in state.entries:
        group = planned.get(str(entry.dist.get("name")))
        if (
            config.verify
            or group is None
            or list(group.own_tops) != entry.own
            or [p.name for p in group.paths] != entry.segments
        ):
            return True
        if not all(p.name in valid for p in group.paths):
            return True
    return False


def _install_of(build: Path, group: DistSegments) -> Callable[[], InstallRecord | None]:
    """The install record of a distribution whose segments hold nearly all of it (see ``cache.installs``), made when asked."""

    def make() -> InstallRecord | None:
        from .cache.installs import install_record

        try:
            files = [f for f, _ in _dist_files(build, group.dist)]
        except DamagedDistribution:
            return None
        return install_record(build, group.dist, group.own_tops, files)

    return make


def adopt_segments(config: BuildConfig, records: dict[str, BlobRecord]) -> None:
    """Enter segments put in place by another step (installs from the caches) into the segment index."""
    index = load(SegmentIndex, segment_index_path(config)) or SegmentIndex()
    merged = {**index.segments, **records}
    save(segment_index_path(config), SegmentIndex(segments=dict(sorted(merged.items()))))


def publish(
    config: BuildConfig,
    prefix: list[Path],
    prefix_members: list[Blob],
    fresh: Path,
    tail: list[Blob],
    *,
    repairs: list[str] | None = None,
) -> None:
    """Put the new artifact in place without ever changing the published file.

    The previous artifact is kept as a spare (a hard link made just before the
    new one is renamed into place). When the spare's record says its leading
    members are the dependency segments needed now, and its stamp says it was
    not touched since, it is cut after them and the fresh segment appended, so an
    edit writes only the size of the sources. Otherwise the segments are
    concatenated into a new file. ``tail`` is the fresh segment's and the end
    marker's records.
    """
    from .archive import assemble, replace_tail

    paths = config.paths
    spare = spare_path(config)
    work = paths.state / ".next.tar.gz"
    remove_path(work)
    keep = sum(m.size for m in prefix_members)
    members = [*prefix_members, *tail]
    if _spare_starts_with(config, spare, prefix_members, repairs if repairs is not None else []):
        os.replace(spare, work)
        try:
            replace_tail(work, keep, [fresh])
        except BaseException:
            work.unlink(missing_ok=True)
            raise
    else:
        assemble([*prefix, fresh], work)
    remove_path(spare)
    spare_record_path(config).unlink(missing_ok=True)
    previous = load(ArtifactRecord, artifact_record_path(config))
    if paths.artifact.is_dir() and not paths.artifact.is_symlink():
        remove_path(paths.artifact)
    elif previous is not None and previous.name == config.output and Stamp.of(paths.artifact) == previous.stamp:
        try:
            os.link(paths.artifact, spare)
            save(spare_record_path(config), previous)
        except OSError:
            pass  # no hard links here: the next build concatenates instead
    stamp = Stamp.of(work)
    os.replace(work, paths.artifact)
    if stamp is not None:
        manifest = hashlib.sha256(paths.build_manifest.read_bytes()).hexdigest()
        save(artifact_record_path(config), ArtifactRecord(name=config.output, members=members, stamp=stamp, manifest_sha256=manifest))
    if not spare.exists():
        # A first build has no previous artifact to keep: copy this one now, so that
        # even the first edit costs only the size of the sources.
        _copy_spare(config, paths.artifact, spare, members)


def _copy_spare(config: BuildConfig, artifact: Path, spare: Path, members: list[Blob]) -> None:
    from .archive import copy_all

    tmp = spare.with_name(".spare.tmp")
    try:
        with open(artifact, "rb") as src, open(tmp, "wb") as dst:
            copy_all(src, dst)
        stamp = Stamp.of(tmp)
        os.replace(tmp, spare)
        if stamp is not None:
            save(spare_record_path(config), ArtifactRecord(name=config.output, members=members, stamp=stamp))
    except OSError:
        tmp.unlink(missing_ok=True)  # only a missed speed-up: never fail the build for it


def _spare_starts_with(config: BuildConfig, spare: Path, members: list[Blob], repairs: list[str]) -> bool:
    """Whether the spare, untouched since its record was written, begins with exactly these members.

    A file with another link is never used, since changing it would change every
    name it has.
    """
    record = load(ArtifactRecord, spare_record_path(config))
    if record is None or record.members[: len(members)] != members:
        return False
    try:
        st = os.lstat(spare)
    except OSError:
        return False
    if st.st_nlink != 1:
        return False
    if Stamp.of(spare) != record.stamp or (config.verify and not _members_check(spare, record.members)):
        repairs.append("the spare copy of the previous artifact failed its check: the artifact was assembled anew")
        return False
    return True


#: What runpod-flash's ``flash deploy`` writes into the published manifest: top-level keys,
#: keys inside each resource, and an environment variable of each resource.
DEPLOY_KEYS = frozenset({"resources_endpoints"})
DEPLOY_RESOURCE_KEYS = frozenset({"endpoint_id", "aiKey"})
DEPLOY_ENV = frozenset({"_FLASH_SOURCE_FINGERPRINT"})


def _without_deploy_notes(manifest: Any) -> Any:
    """A manifest as this tool wrote it, were it annotated by a deploy."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("resources"), dict):
        return manifest
    out = {k: v for k, v in manifest.items() if k not in DEPLOY_KEYS}
    resources = {}
    for name, resource in manifest["resources"].items():
        if isinstance(resource, dict):
            resource = {k: v for k, v in resource.items() if k not in DEPLOY_RESOURCE_KEYS}
            env = resource.get("env")
            if isinstance(env, dict):
                env = {k: v for k, v in env.items() if k not in DEPLOY_ENV}
                if env:
                    resource["env"] = env
                else:
                    resource.pop("env")
        resources[name] = resource
    out["resources"] = resources
    return out


def _annotated_copy(published: bytes, built: Path) -> bool:
    """Whether a changed published manifest is this build's, with only what a deploy records added.

    runpod-flash's ``flash deploy`` writes the endpoints it deployed into the manifest
    next to the artifact. That is kept; any other difference is damage, and the archive
    step publishes the manifest again.
    """
    import json

    try:
        ours = json.loads(built.read_bytes())
        theirs = json.loads(published)
    except (OSError, ValueError, RecursionError):
        return False
    return bool(_without_deploy_notes(theirs) == _without_deploy_notes(ours))


def check_size(config: BuildConfig, compressed_bytes: int) -> None:
    """Refuse an artifact over the platform's limit, naming what makes it big."""
    from . import catalog

    limit = catalog.MAX_ARTIFACT_MB * 1024 * 1024
    if compressed_bytes <= limit:
        return
    dists = sorted(_distributions(config).values(), key=lambda d: d.get("size", 0), reverse=True)[:10]
    biggest = "\n".join(f"  {d['name']} {d['version']}: {d.get('size', 0) / 1e6:,.0f} MB installed" for d in dists)
    raise BuildError(
        f"the artifact would be {compressed_bytes / 1024 / 1024:,.0f} MB, over the {catalog.MAX_ARTIFACT_MB} MB limit"
        + (f"; the biggest packages:\n{biggest}" if biggest else ""),
        hint="leave large packages out with --exclude a,b (torch, torchvision, torchaudio and triton always are), "
        "or install only direct dependencies with --no-deps; the previous artifact was left as it was",
    )
