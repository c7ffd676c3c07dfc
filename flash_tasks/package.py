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
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .config import BuildConfig
from .errors import BuildError
from .stage import read_json, write_bytes_atomic

SEGMENT_FORMAT = 3
#: Distributions bigger than this are split into chunks compressed in parallel.
CHUNK_BYTES = 64 * 1024 * 1024
SKIPPED_NAMES = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SDK_PACKAGE = "runpod_flash"
FRESH = ""


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
    state = read_json(config.paths.install_json, {}) or {}
    return dict(state.get("distributions", {}))


def _dist_files(build: Path, dist: dict[str, Any]) -> list[str]:
    """A distribution's files: its RECORD plus everything in its dist-info folder."""
    from .deps.installer import InstalledDistribution, distribution_files

    model = InstalledDistribution.model_validate(dist)
    try:
        listed = distribution_files(build, model)
    except OSError as exc:
        raise BuildError(
            f"the installed distribution {model.name} {model.version} is damaged ({exc.strerror})",
            hint="run 'flash clean --keep-locks' and build again",
        ) from None
    files = {PurePosixPath(p).as_posix() for p in listed if not p.startswith("..")}
    files.update(_walk_files(build, model.dist_info))
    return sorted(f for f in files if os.path.lexists(build / f))


def _fresh_files(config: BuildConfig) -> list[str]:
    paths = config.paths
    files: set[str] = set(read_json(paths.stage_json, {}).get("files", {}))
    files.update(read_json(paths.handlers_json, {}).get("files", []))
    files.add(paths.build_manifest.relative_to(paths.build).as_posix())
    files.update(_walk_files(paths.build, SDK_PACKAGE))
    return sorted(files)


@dataclass
class DistSegments:
    """The cached segments of one distribution: its own top-level entries, in chunks."""

    name: str
    dist: dict[str, Any]
    own_tops: list[str]
    paths: list[Path]

    def missing(self) -> bool:
        return not all(p.exists() for p in self.paths)


def plan_segments(config: BuildConfig) -> tuple[list[str], list[DistSegments]]:
    """The fresh segment's files, and each distribution's cached segments.

    A distribution's own top-level entries (those no other owner shares) go to
    its cached segments, named by a key over what they contain, so a segment
    that exists is reused without listing a single file; big distributions are
    split into chunks that compress in parallel. Entries shared with the app or
    other distributions (``bin/``, namespace packages) go to the fresh segment.
    """
    from .archive import COMPRESSOR, archive_mtime

    build = config.paths.build
    fresh = _fresh_files(config)
    local_tops = {f.split("/", 1)[0] for f in fresh}
    distributions = _distributions(config)
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
            fresh.extend(f for f in _dist_files(build, dist) if _keep(f) and f.split("/", 1)[0] not in own_tops)
        if not own_tops:
            continue
        name = f"{dist['name']}-{dist['version']}"
        material = repr((SEGMENT_FORMAT, COMPRESSOR, mtime, name, dist.get("content_hash"), own_tops, CHUNK_BYTES))
        key = hashlib.sha256(material.encode()).hexdigest()[:20]
        count = max(1, -(-int(dist.get("size", 0)) // CHUNK_BYTES))
        seg_paths = [config.paths.segments / f"{name}-{key}.{i + 1}of{count}.gz" for i in range(count)]
        cached.append(DistSegments(name, dist, own_tops, seg_paths))
    cached.sort(key=lambda d: d.name)
    return sorted(set(fresh)), cached


def _chunks(entries: list[Any], count: int) -> list[list[Any]]:
    """Split entries (in archive order) into ``count`` runs of about equal file bytes."""
    sizes = [0 if e.is_dir or e.link_target else os.lstat(e.source).st_size for e in entries]
    total = sum(sizes) or 1
    out: list[list[Any]] = [[] for _ in range(count)]
    done = 0
    for entry, size in zip(entries, sizes):
        index = min(count - 1, done * count // total)
        out[index].append(entry)
        done += size
    return out


def _entries(build: Path, files: Iterable[str], *, with_root: bool) -> list[Any]:
    """Archive entries for ``files`` and the folders that hold them, in tarfile.add order."""
    from .archive import ROOT, Entry

    wanted: dict[str, bool] = {}
    for f in files:
        parts = f.split("/")
        for depth in range(1, len(parts)):
            wanted.setdefault("/".join(parts[:depth]), True)
        wanted[f] = False
    out = [ROOT] if with_root else []
    for rel in sorted(wanted, key=lambda r: r.split("/")):
        path = build / rel
        if wanted[rel]:
            out.append(Entry(rel, None, True))
        elif path.is_symlink():
            out.append(Entry(rel, path, False, os.readlink(path)))
        else:
            out.append(Entry(rel, path, False))
    return out


def build_archive(config: BuildConfig) -> None:
    """Write the artifact for the current build, reusing cached segments, then publish the manifest."""
    from .archive import write_segments_parallel

    paths = config.paths
    build = paths.build
    paths.segments.mkdir(parents=True, exist_ok=True)
    fresh, cached = plan_segments(config)
    fresh_path = paths.segments / f".fresh-{os.getpid()}.gz"
    jobs = [(_entries(build, fresh, with_root=True), fresh_path)]
    for group in cached:
        if group.missing():
            own = set(group.own_tops)
            files = [f for f in _dist_files(build, group.dist) if _keep(f) and f.split("/", 1)[0] in own]
            for entries, target in zip(_chunks(_entries(build, files, with_root=False), len(group.paths)), group.paths):
                jobs.append((entries, target))
    try:
        write_segments_parallel(jobs)
        # Dependencies first, sources last: an edit then only changes the artifact's tail.
        prefix = [p for group in cached for p in group.paths]
        check_size(config, sum(p.stat().st_size for p in prefix) + fresh_path.stat().st_size)
        paths.artifact.parent.mkdir(parents=True, exist_ok=True)
        publish(config, prefix, fresh_path)
    finally:
        fresh_path.unlink(missing_ok=True)
    # The manifest next to the artifact always describes the artifact next to it.
    write_bytes_atomic(paths.manifest, paths.build_manifest.read_bytes())
    keep = {p.name for group in cached for p in group.paths}
    for old in paths.segments.glob("*.gz"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def publish(config: BuildConfig, prefix: list[Path], fresh: Path) -> None:
    """Put the new artifact in place without ever changing the published file.

    The previous artifact is kept as a spare (a hard link made just before the
    new one is renamed into place). When its leading segments are the
    dependency segments needed now, the spare is cut after them and the fresh
    segment appended, so an edit writes only the size of the sources, not of
    the dependencies. Otherwise the segments are concatenated into a new file.
    """
    from .archive import assemble, replace_tail

    paths = config.paths
    spare = paths.state / "spare.tar.gz"
    work = paths.state / ".next.tar.gz"
    work.unlink(missing_ok=True)
    keep = sum(p.stat().st_size for p in prefix)
    if _starts_with(spare, prefix):
        os.replace(spare, work)
        try:
            replace_tail(work, keep, [fresh])
        except BaseException:
            work.unlink(missing_ok=True)
            raise
    else:
        assemble([*prefix, fresh], work)
    spare.unlink(missing_ok=True)
    if paths.artifact.is_file():
        try:
            os.link(paths.artifact, spare)
        except OSError:
            pass  # no hard links here: the next build concatenates instead
    os.replace(work, paths.artifact)
    if not spare.exists():
        # A first build has no previous artifact to keep: copy this one now, so that
        # even the first edit costs only the size of the sources.
        _copy_spare(paths.artifact, spare)


def _copy_spare(artifact: Path, spare: Path) -> None:
    from .archive import copy_all

    tmp = spare.with_name(".spare.tmp")
    try:
        with open(artifact, "rb") as src, open(tmp, "wb") as dst:
            copy_all(src, dst)
        os.replace(tmp, spare)
    except OSError:
        tmp.unlink(missing_ok=True)  # only a missed speed-up: never fail the build for it


def _starts_with(candidate: Path, segments: list[Path]) -> bool:
    """Whether ``candidate`` begins with exactly these gzip members.

    Each member's header and its 8-byte trailer (CRC-32 and length of its
    content) are compared at the offsets the segments would occupy: cheap, and
    a stale or damaged spare never passes. A file with another link is never
    used, since changing it would change every name it has.
    """
    try:
        st = candidate.stat()
        if st.st_nlink != 1:
            return False
        offset = 0
        with open(candidate, "rb") as spare:
            for seg in segments:
                size = seg.stat().st_size
                if offset + size > st.st_size or size < 18:
                    return False
                with open(seg, "rb") as src:
                    head, src_tail = src.read(10), (src.seek(size - 8), src.read(8))[1]
                spare.seek(offset)
                if spare.read(10) != head:
                    return False
                spare.seek(offset + size - 8)
                if spare.read(8) != src_tail:
                    return False
                offset += size
        return True
    except OSError:
        return False


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
