"""Making the build folder hold exactly the locked distributions, file by file from their RECORD."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import DependencyError
from .base import _Model
from .installed import InstalledDistribution, InstallState, file_sha256, load_install_state
from .locks import ExcludedPackage, LockEntry, _write_atomic, read_lock
from .settings import DepsSettings
from .uv import _dependency_error, _run_uv, _target_args, _UvRun, uv_says, uv_says_all

# ---------------------------------------------------------------------------
# Installing
# ---------------------------------------------------------------------------


class InstallResult(_Model):
    state: InstallState
    added: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    #: Packages left out although something installed requires them.
    excluded_needed: tuple[ExcludedPackage, ...]
    #: True when uv had to go online because its cache lacked something.
    used_network: bool


def _parse_record(text: str) -> list[tuple[str, str, str]]:
    """RECORD rows ``(path, hash, size)``: RECORD is CSV, and quotes paths holding commas or quotes."""
    import csv
    import io

    return [
        (row[0], row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
        for row in csv.reader(io.StringIO(text, newline=""))
        if row
    ]


def _inside(build_dir: Path, relative: str) -> Path | None:
    """``build_dir / relative`` if that stays inside the build folder (RECORD paths may say ``..``).

    A string check on the normalised path: resolving every RECORD line through the
    filesystem is slow, and the build folder holds no symlinks out of itself.
    """
    normal = os.path.normpath(relative)
    if os.path.isabs(normal) or normal in (".", "") or normal == ".." or normal.startswith(".." + os.sep):
        return None
    return build_dir / normal


def _scan_dist_infos(build_dir: Path) -> dict[str, Path]:
    from packaging.utils import canonicalize_name

    found: dict[str, Path] = {}
    if not build_dir.is_dir():
        return found
    for entry in build_dir.iterdir():
        if entry.is_dir() and entry.name.endswith(".dist-info"):
            name = entry.name[: -len(".dist-info")].rsplit("-", 1)[0]
            found[canonicalize_name(name)] = entry
    return found


def _remove_distribution(build_dir: Path, dist_info: Path) -> None:
    """Delete exactly the files a distribution's RECORD lists, then its dist-info.

    Byte-code next to a listed module goes too; directories left empty are pruned.
    """
    record = dist_info / "RECORD"
    parents: set[Path] = set()
    if record.is_file():
        # The dist-info (with RECORD) goes last: a removal interrupted half-way
        # can then be finished by the next build instead of orphaning files.
        # A damaged RECORD still names the files of its intact lines (a garbled line names none).
        for relative, _, _ in _parse_record(record.read_bytes().decode("utf-8", errors="replace")):
            target = _inside(build_dir, relative)
            if target is None or dist_info in target.parents:
                continue
            if target.suffix == ".py":
                for compiled in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
                    compiled.unlink(missing_ok=True)
                parents.add(target.parent / "__pycache__")
            if target.is_file() or target.is_symlink():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)  # a folder where the wheel had a file: damage, remove it too
            parents.add(target.parent)
    shutil.rmtree(dist_info, ignore_errors=True)
    root = build_dir.resolve()
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        current = directory
        while current != root and root in current.parents:
            try:
                current.rmdir()
            except OSError:
                break
            current = current.parent


def _drop_from_record(dist_info: Path, filename: str) -> None:
    """Remove a uv-only bookkeeping file (it holds a timestamp) so the artifact is reproducible."""
    extra = dist_info / filename
    if not extra.exists():
        return
    extra.unlink()
    record = dist_info / "RECORD"
    prefix = f"{dist_info.name}/{filename},"
    lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
    record.write_text("".join(line for line in lines if not line.startswith(prefix)), encoding="utf-8")


def _describe(
    build_dir: Path, dist_info: Path, entry: LockEntry, requires_excluded: Sequence[str]
) -> InstalledDistribution:
    from ..store import content_hash

    rows = _parse_record((dist_info / "RECORD").read_text(encoding="utf-8"))
    size = 0
    top: set[str] = set()
    count = 0
    for relative, digest, length in sorted(rows):
        top.add(relative.split("/", 1)[0])
        if relative == f"{dist_info.name}/RECORD":
            continue
        target = _inside(build_dir, relative)
        if target is None or not target.is_file():
            continue
        count += 1
        size += int(length) if digest and length.isdigit() else target.stat().st_size
    stem = dist_info.name[: -len(".dist-info")]
    version = stem.rsplit("-", 1)[1] if "-" in stem else (entry.version or "")
    return InstalledDistribution(
        name=entry.name,
        version=version,
        pin=entry.pin,
        hashes=entry.hashes,
        dist_info=dist_info.name,
        top_level=tuple(sorted(top)),
        size=size,
        files=count,
        content_hash=content_hash(build_dir, dist_info.name, rows),
        requires_excluded=tuple(sorted(set(requires_excluded))),
    )


def _missing_excluded(stderr: str, excluded: Mapping[str, str]) -> dict[str, list[str]]:
    """From uv's ``--strict`` warnings: distribution -> excluded names it needs on the target."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, list[str]] = {}
    for match in uv_says_all("missing-dependency", stderr):
        try:
            needed = canonicalize_name(Requirement(match.group("req")).name)
        except InvalidRequirement:
            continue
        if needed in excluded:
            found.setdefault(canonicalize_name(match.group("dist")), []).append(needed)
    return found


def _install_entries(entries: Sequence[LockEntry], build_dir: Path, settings: DepsSettings, *, online: bool = True) -> tuple[_UvRun, bool]:
    """Install pinned entries with uv, from its cache if it can (else online, unless not ``online``); says whether it went online."""
    lock_existed = (build_dir / ".lock").exists()
    with tempfile.TemporaryDirectory(prefix="flash-install-") as tmp:
        workdir = Path(tmp)
        (workdir / "install.txt").write_text("".join(f"{e.line()}\n" for e in entries), encoding="utf-8")
        args = [
            "pip",
            "install",
            "-r",
            "install.txt",
            "--target",
            str(build_dir),
            "--no-deps",
            "--strict",
            "--link-mode",
            settings.link_mode,
            *_target_args(settings),
        ]
        run = _run_uv([*args, "--offline"], settings, cwd=workdir, quiet=True)
        went_online = False
        if online and run.returncode != 0 and uv_says("offline-miss", run.stderr):
            went_online = True
            run = _run_uv(args, settings, cwd=workdir)
    if not lock_existed:
        (build_dir / ".lock").unlink(missing_ok=True)
    return run, went_online


def _intact(build_dir: Path, record: InstalledDistribution, *, verify: bool) -> bool:
    """Whether a distribution's RECORD still matches its install record (and, with ``verify``, its files)."""
    from ..store import content_hash, record_hash

    try:
        rows = _parse_record((build_dir / record.dist_info / "RECORD").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    if content_hash(build_dir, record.dist_info, rows) != record.content_hash:
        return False
    if not verify:
        return True
    for relative, digest, _ in rows:
        target = _inside(build_dir, relative)
        if not digest or target is None:
            continue
        try:
            if record_hash(target) != digest:
                return False
        except OSError:
            return False
    return True


def _mark_requested(dist_info: Path, requested: bool) -> None:
    """Leave a ``REQUESTED`` marker (listed in RECORD) exactly when the distribution was asked for directly."""
    marker = dist_info / "REQUESTED"
    if not requested:
        _drop_from_record(dist_info, "REQUESTED")
    elif not marker.exists():
        marker.write_bytes(b"")
        from ..store import record_digest

        empty = record_digest(hashlib.sha256(b"").digest())
        with open(dist_info / "RECORD", "a", encoding="utf-8", newline="") as record:
            record.write(f"{dist_info.name}/REQUESTED,{empty},0\n")


def install(
    lock_path: Path,
    build_dir: Path,
    settings: DepsSettings,
    *,
    state_path: Path,
    verify: bool = False,
    requested: frozenset[str] | None = None,
    restore: Callable[[Sequence[LockEntry], bool], dict[str, InstalledDistribution]] | None = None,
    background: bool = False,
) -> InstallResult:
    """Make the distributions in ``build_dir`` exactly those of ``lock_path``.

    Task inputs: ``lock_path`` and ``settings``. Outputs: ``state_path`` (the
    installed files themselves are described by it). Distributions no longer in
    the lock, or whose pin, wheel hashes or target changed, are removed file by
    file from their RECORD; only missing ones are installed, offline from uv's
    cache first. Files in ``build_dir`` that belong to no distribution (the
    app's own code, the bundled SDK) are left alone. ``restore`` may install
    some of the missing ones first (from the shared caches' segments); uv
    installs the rest. With ``background``, ``restore`` is asked first whether
    it can take every missing distribution with their files extracted after the
    build (``cache.fill``); that costs no file of them now, so it beats uv.
    """
    build_dir = build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = read_lock(lock_path)
    previous = load_install_state(state_path)
    same_target = (
        previous is not None
        and previous.python_version == settings.python_version
        and previous.python_platform == settings.python_platform
    )
    known = previous.distributions if previous is not None and same_target else {}
    present = _scan_dist_infos(build_dir)

    kept: dict[str, InstalledDistribution] = {}
    removed: list[str] = []
    for name, dist_info in sorted(present.items()):
        entry = lock.entries.get(name)
        record = known.get(name)
        if (
            entry is not None
            and record is not None
            and record.dist_info == dist_info.name
            and record.pin == entry.pin
            and record.hashes == entry.hashes
            and _intact(build_dir, record, verify=verify)
            and (requested is None or record.requested == (name in requested))
        ):
            kept[name] = record
            continue
        _remove_distribution(build_dir, dist_info)
        if entry is None:
            removed.append(name)

    to_add = [entry for name, entry in sorted(lock.entries.items()) if name not in kept]
    used_network = False
    installed: dict[str, InstalledDistribution] = {}
    run: _UvRun | None = None
    if to_add and restore is not None and background:
        installed.update(restore(to_add, True))  # all of them, or none
        to_add = [entry for entry in to_add if entry.name not in installed]
    if to_add and restore is not None:
        # From its own cache uv installs faster than segments extract; only when it would have
        # to download do the shared caches' segments stand in (uv fetches what they lack).
        run, _ = _install_entries(to_add, build_dir, settings, online=False)
        if run.returncode != 0 and uv_says("offline-miss", run.stderr):
            installed.update(restore(to_add, False))
            to_add = [entry for entry in to_add if entry.name not in installed]
            run = None
    if to_add:
        from ..cache.installs import install_key

        if run is None:
            run, used_network = _install_entries(to_add, build_dir, settings)
        if run.returncode != 0:
            _save_state(state_path, settings, {**kept, **installed})
            raise _dependency_error(run, settings, (), "installing dependencies")
        needs = _missing_excluded(run.stderr, settings.excluded())
        after = _scan_dist_infos(build_dir)
        for entry in to_add:
            new_info = after.get(entry.name)
            if new_info is None:
                _save_state(state_path, settings, {**kept, **installed})
                raise DependencyError(f"uv reported success but {entry.pin} is not in {build_dir}")
            _drop_from_record(new_info, "uv_cache.json")
            asked = requested is None or entry.name in requested
            _mark_requested(new_info, asked)
            described = _describe(build_dir, new_info, entry, needs.get(entry.name, ()))
            key = install_key(entry, settings, asked) or ""
            installed[entry.name] = described.model_copy(update={"requested": asked, "install_key": key})

    state = _save_state(state_path, settings, {**kept, **installed}, lock_sha256=file_sha256(lock_path))
    return InstallResult(
        state=state,
        added=tuple(sorted(installed)),
        removed=tuple(removed),
        unchanged=tuple(sorted(kept)),
        excluded_needed=state.excluded_needed(settings),
        used_network=used_network,
    )


def _save_state(
    path: Path, settings: DepsSettings, distributions: Mapping[str, InstalledDistribution], *, lock_sha256: str = ""
) -> InstallState:
    state = InstallState(
        python_version=settings.python_version,
        python_platform=settings.python_platform,
        distributions=dict(sorted(distributions.items())),
        lock_sha256=lock_sha256,
    )
    state = state.model_copy(update={"digest": state.computed_digest()})
    _write_atomic(path, state.model_dump_json(indent=2) + "\n")
    return state


def check_overlaps(build_dir: Path, state: InstallState, app_files: Sequence[str]) -> None:
    """Refuse files owned twice: by the app and a distribution, or by two distributions.

    Installing into one folder, the later writer silently wins; the artifact would
    then hold a mix nobody asked for. Two distributions may list the same file with
    the same content (old-style namespace ``__init__.py``): that is no clash.
    """
    from ..errors import BuildError

    owners: dict[str, tuple[str, str]] = {}
    clashes: dict[tuple[str, str], list[str]] = {}
    app = set(app_files)
    for dist in state.distributions.values():
        try:
            rows = _parse_record((build_dir / dist.dist_info / "RECORD").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        for relative, digest, _ in rows:
            path = os.path.normpath(relative).replace(os.sep, "/")
            if path in app:
                raise BuildError(
                    f"{path} is both a file of the app and a file of the distribution {dist.name} {dist.version}",
                    path=path,
                    hint=f"rename or remove the app's {path}, or leave {dist.name} out (--exclude {dist.name})",
                )
            seen = owners.setdefault(path, (dist.name, digest))
            if seen[0] != dist.name and (seen[1] != digest or not digest):
                clashes.setdefault(tuple(sorted((seen[0], dist.name))), []).append(path)  # type: ignore[arg-type]
    if clashes:
        (first, second), paths = sorted(clashes.items())[0]
        shown = ", ".join(sorted(paths)[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        raise BuildError(
            f"the distributions {first} and {second} both install the same files with different contents ({shown})",
            hint=f"keep one of them: --exclude {first} or --exclude {second}, or pin versions that do not overlap",
        )
