"""The archive phase: pack ``.flash/.build`` into the artifact, in segments.

The artifact is a chain of gzip members, which readers treat as one stream:

1. a fresh segment: the archive root, the app's sources, the generated
   handlers, the manifest, the bundled SDK, and every top-level entry that more
   than one owner shares (``bin/``, namespace packages);
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
from pathlib import Path
from typing import Any

from .config import BuildConfig
from .errors import BuildError
from .stage import read_json

SEGMENT_FORMAT = 1
SKIPPED_NAMES = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _keep(arcname: str) -> bool:
    """Bytecode never ships: it is rebuilt on the worker for its own Python."""
    parts = arcname.split("/")
    return not (SKIPPED_NAMES.intersection(parts) or arcname.endswith(SKIPPED_SUFFIXES))


def _local_top_levels(config: BuildConfig) -> set[str]:
    """Top-level names the app's own files and the generated files use."""
    paths = config.paths
    names: set[str] = {"flash_manifest.json", "runpod_flash"}
    for rel in read_json(paths.stage_json, {}).get("files", {}):
        names.add(rel.split("/", 1)[0])
    for rel in read_json(paths.handlers_json, {}).get("files", []):
        names.add(rel.split("/", 1)[0])
    return names


def plan_segments(config: BuildConfig) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Which top-level entries each cached segment holds, and each segment's key.

    Returns ``({segment_name: top_levels}, {segment_name: cache_key})``; every
    other top-level entry goes into the fresh segment.
    """
    from .archive import COMPRESSOR, archive_mtime

    state = read_json(config.paths.install_json, {}) or {}
    distributions: dict[str, Any] = state.get("distributions", {})
    local = _local_top_levels(config)
    owners: dict[str, int] = {}
    for dist in distributions.values():
        for top in set(dist.get("top_level", ())):
            owners[top] = owners.get(top, 0) + 1
    plan: dict[str, tuple[str, ...]] = {}
    keys: dict[str, str] = {}
    mtime = archive_mtime()
    for dist in distributions.values():
        tops = tuple(sorted(t for t in set(dist.get("top_level", ())) if owners[t] == 1 and t not in local))
        if not tops:
            continue
        name = f"{dist['name']}-{dist['version']}"
        material = repr((SEGMENT_FORMAT, COMPRESSOR, mtime, name, dist.get("content_hash"), tops))
        plan[name] = tops
        keys[name] = hashlib.sha256(material.encode()).hexdigest()[:20]
    return plan, keys


def build_archive(config: BuildConfig) -> None:
    """Write the artifact for the current build folder, reusing cached segments."""
    from .archive import ROOT, assemble, walk_entries, write_segments_parallel

    paths = config.paths
    build = paths.build
    paths.segments.mkdir(parents=True, exist_ok=True)
    plan, keys = plan_segments(config)
    cached_tops = {top for tops in plan.values() for top in tops}

    fresh_entries = [ROOT] + [e for e in walk_entries(build, exclude_top=lambda top: top in cached_tops) if _keep(e.arcname)]
    fresh_path = paths.segments / f".fresh-{os.getpid()}.gz"
    jobs = [(fresh_entries, fresh_path)]
    segment_paths: dict[str, Path] = {}
    for name in sorted(plan, key=lambda n: plan[n]):
        target = paths.segments / f"{name}-{keys[name]}.gz"
        segment_paths[name] = target
        if not target.exists():
            tops = set(plan[name])
            entries = [e for e in walk_entries(build, exclude_top=lambda top, tops=tops: top not in tops) if _keep(e.arcname)]
            jobs.append((entries, target))
    try:
        write_segments_parallel(jobs)
        segments = [fresh_path] + [segment_paths[n] for n in sorted(plan, key=lambda n: plan[n])]
        total = sum(p.stat().st_size for p in segments)
        check_size(config, total)
        paths.artifact.parent.mkdir(parents=True, exist_ok=True)
        assemble(segments, paths.artifact)
    finally:
        fresh_path.unlink(missing_ok=True)
    keep = {p.name for p in segment_paths.values()}
    for old in paths.segments.glob("*.gz"):
        if old.name not in keep and not old.name.startswith("."):
            old.unlink(missing_ok=True)


def check_size(config: BuildConfig, compressed_bytes: int) -> None:
    """Refuse an artifact over the platform's limit, naming what makes it big."""
    from . import catalog

    limit = catalog.MAX_ARTIFACT_MB * 1024 * 1024
    if compressed_bytes <= limit:
        return
    state = read_json(config.paths.install_json, {}) or {}
    dists = sorted(state.get("distributions", {}).values(), key=lambda d: d.get("size", 0), reverse=True)[:10]
    biggest = "\n".join(f"  {d['name']} {d['version']}: {d.get('size', 0) / 1e6:,.0f} MB installed" for d in dists)
    raise BuildError(
        f"the artifact would be {compressed_bytes / 1024 / 1024:,.0f} MB, over the {catalog.MAX_ARTIFACT_MB} MB limit"
        + (f"; the biggest packages:\n{biggest}" if biggest else ""),
        hint="leave large packages out with --exclude a,b (torch, torchvision, torchaudio and triton always are), "
        "or install only direct dependencies with --no-deps; the previous artifact was left as it was",
    )
