"""The Flash SDK's own package folder in the artifact, fetched once per version and index."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import catalog
from ..errors import DependencyError
from ..stage import remove_path
from .installer import _install_entries
from .locks import LockEntry
from .settings import DepsSettings
from .uv import _dependency_error

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..store import Blob, BlobRecord, TreeRecord

T = TypeVar("T")

#: The SDK's package folder, the one part of its wheel the artifact ships.
SDK_PACKAGE = "runpod_flash"


# ---------------------------------------------------------------------------
# The SDK
# ---------------------------------------------------------------------------


def bundle_runpod_flash(target: Path, settings: DepsSettings, *, version: str = catalog.DEFAULT_RUNPOD_FLASH_VERSION) -> Path:
    """Put the SDK's own ``runpod_flash/`` package (no dist-info, no byte-code) into ``target``.

    The worker image provides the SDK's dependencies, so only the package folder
    is shipped: the pure wheel ``runpod_flash-<version>-py3-none-any.whl`` is
    installed by uv into a scratch folder (offline from uv's cache when it can)
    and its package folder moved into place. Task inputs: ``version`` and the
    index settings; output: ``target / "runpod_flash"``.
    """
    target = target.resolve()
    target.mkdir(parents=True, exist_ok=True)
    destination = target / "runpod_flash"
    with tempfile.TemporaryDirectory(prefix=".flash-sdk-", dir=target.parent) as tmp:
        scratch = Path(tmp)
        entry = LockEntry(name="runpod-flash", pin=f"runpod-flash=={version}")
        run, _ = _install_entries([entry], scratch / "site", settings)
        if run.returncode != 0:
            raise _dependency_error(run, settings, (), f"fetching runpod-flash {version}")
        package = scratch / "site" / "runpod_flash"
        if not (package / "__init__.py").is_file():
            raise DependencyError(f"the runpod-flash {version} wheel has no runpod_flash package")
        staged = scratch / "runpod_flash"
        shutil.copytree(package, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if destination.exists():
            shutil.rmtree(destination)
        shutil.move(str(staged), str(destination))
    return destination




def sdk_record_path(config: BuildConfig) -> Path:
    """The record of the SDK files copied into ``.flash/.build`` (what the artifact ships of it)."""
    return config.paths.sdk_copy_json


def _package_files(root: Path) -> list[str]:
    """Every file under ``root/runpod_flash`` (dotfiles included), relative to ``root``."""
    out: list[str] = []
    base = root / "runpod_flash"
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        out.extend(f"{rel_dir}/{name}" for name in filenames if not name.endswith((".pyc", ".pyo")))
    return sorted(out)


def bundle_sdk(config: BuildConfig, settings: Any) -> None:
    """Put the SDK's ``runpod_flash/`` package into the build, checked file by file.

    What each file must hold comes from this app's own copy of the package
    under ``.flash/.state/sdk/`` (checked before each use), else from the
    shared cache's record of it (``flash_tasks.cache``). When the copy in
    ``.flash/.build`` already matches, nothing is written. Otherwise it is made
    from the shared cache directly, each file checked against its digest on the
    way, and the app keeps no second copy; without a usable shared cache the
    package is fetched (from the remote cache, else through uv) into
    ``.flash/.state/sdk/`` first. The copy in ``.flash/.build`` gets its own
    record (``sdk-copy.json``), made from the digests checked while copying,
    which the archive ships from.
    """
    from ..cache import restore_tree, tree_files
    from ..store import TreeRecord, load

    material = repr((config.runpod_flash_version, settings.index.model_dump(mode="json")))
    key = hashlib.sha256(material.encode()).hexdigest()[:12]
    cache = config.paths.state / "sdk" / f"{config.runpod_flash_version}-{key}"
    build = config.paths.build
    copy = load(TreeRecord, sdk_record_path(config))
    cached = _own_copy(cache, config.verify)
    if cached is not None:
        if _copy_holds(build, copy, _blobs(cached), config.verify) or _copy_into_build(config, cache, cached):
            return
        remove_path(cache)  # its bytes no longer match its record: changed behind unchanged stamps
    shared = tree_files("sdk", material)
    if shared is not None:
        if _copy_holds(build, copy, {rel: f.blob for rel, f in shared.items()}, config.verify):
            return
        restored = restore_tree("sdk", material, build / SDK_PACKAGE, folder=SDK_PACKAGE, files=shared)
        if restored is not None:
            _save_copy(config, restored)
            return
    cached = _fetch(config, settings, material, cache)
    if _copy_holds(build, copy, _blobs(cached), config.verify) or _copy_into_build(config, cache, cached):
        return
    raise DependencyError("the SDK files changed while they were being copied into .flash/.build", hint="build again")


def _own_copy(cache: Path, verify: bool) -> TreeRecord | None:
    """The record of the app's own copy of the package, if the copy checks out (a damaged one is deleted)."""
    from ..store import TreeRecord, load, tree_intact

    cached = load(TreeRecord, cache / "record.json")
    if cached is not None and tree_intact(cache, cached, verify=verify) and sorted(cached.files) == _package_files(cache):
        return cached
    if os.path.lexists(cache):
        remove_path(cache)
    return None


def _shipped(files: dict[str, T]) -> dict[str, T]:
    """The files of the package the build's copy is recorded with, in path order.

    The resource-config module is the handlers phase's (it replaces the SDK's placeholder).
    """
    from ..handlers import RESOURCE_CONFIG_PATH

    return {rel: files[rel] for rel in sorted(files) if rel != RESOURCE_CONFIG_PATH}


def _copy_holds(build: Path, copy: TreeRecord | None, expected: dict[str, Blob], verify: bool) -> bool:
    """Whether the build's copy, as recorded, holds exactly the expected files and is still as recorded."""
    from ..store import tree_intact

    return copy is not None and {rel: r.blob for rel, r in copy.files.items()} == _shipped(expected) and tree_intact(build, copy, verify=verify)


def _save_copy(config: BuildConfig, files: dict[str, BlobRecord]) -> None:
    from ..store import TreeRecord, save

    save(sdk_record_path(config), TreeRecord(files=_shipped(files)))


def _fetch(config: BuildConfig, settings: Any, material: str, cache: Path) -> TreeRecord:
    """Fetch the package into the app's own copy (from the remote cache, else through uv), record it and share it."""
    from ..cache import queue_tree, restore_tree_remote, store_tree
    from ..store import record_tree, save

    from_remote = restore_tree_remote("sdk", material, cache)
    if not from_remote:
        bundle_runpod_flash(cache, settings, version=config.runpod_flash_version)
    cached = record_tree(cache, _package_files(cache))
    save(cache / "record.json", cached)
    store_tree("sdk", material, cache, cached.files)
    if not from_remote:
        queue_tree("sdk", material, cache, cached.files)  # a remote that lacked it gets it
    return cached


def _blobs(tree: TreeRecord) -> dict[str, Blob]:
    return {rel: r.blob for rel, r in tree.files.items()}


def _copy_into_build(config: BuildConfig, cache: Path, cached: TreeRecord) -> bool:
    """Copy the app's own copy of the package into ``.flash/.build``, each file checked against its record on the way.

    False (and ``.flash/.build`` as it was) when a file does not hold what its record says.
    """
    from ..store import copy_recorded, make_folders

    build = config.paths.build
    staging = build / f".{SDK_PACKAGE}.tmp-sdk"
    prefix = f"{SDK_PACKAGE}/"
    remove_path(staging)
    try:
        make_folders(staging, [rel.removeprefix(prefix) for rel in cached.files])
        copied: dict[str, BlobRecord] = {}
        for rel, record in cached.files.items():
            done = copy_recorded(cache / rel, staging / rel.removeprefix(prefix), record.blob, record.stamp.mode)
            if done is None:
                return False
            copied[rel] = done
        remove_path(build / SDK_PACKAGE)
        staging.rename(build / SDK_PACKAGE)
    finally:
        remove_path(staging)
    _save_copy(config, copied)
    return True
