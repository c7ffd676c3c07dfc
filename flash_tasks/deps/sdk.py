"""The Flash SDK's own package folder in the artifact, fetched once per version and index."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import catalog
from ..errors import DependencyError
from ..stage import remove_path
from .installer import _install_entries
from .locks import LockEntry
from .settings import DepsSettings
from .uv import _dependency_error

if TYPE_CHECKING:
    from ..config import BuildConfig


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
    """Put the SDK's ``runpod_flash/`` package into the build, from a per-version cache.

    Fetching it through uv costs a process and a scratch folder; the extracted
    package is kept under ``.flash/.state/sdk/`` with a record of every file,
    checked before each use (a damaged cache is extracted again). The copy in
    ``.flash/.build`` gets its own record, which the archive ships from.
    """
    from ..store import TreeRecord, load, record_tree, save, tree_intact

    key = hashlib.sha256(repr((config.runpod_flash_version, settings.index.model_dump(mode="json"))).encode()).hexdigest()[:12]
    cache = config.paths.state / "sdk" / f"{config.runpod_flash_version}-{key}"
    cache_record = cache / "record.json"
    cached = load(TreeRecord, cache_record)
    if not cached or not tree_intact(cache, cached, verify=config.verify) or sorted(cached.files) != _package_files(cache):
        remove_path(cache)
        # -- shared cache (flash_tasks.cache): the same SDK, already fetched for another app
        from ..cache import queue_tree, restore_tree, restore_tree_remote, store_tree

        material = repr((config.runpod_flash_version, settings.index.model_dump(mode="json")))
        restored = restore_tree("sdk", material, cache)
        from_remote = not restored and restore_tree_remote("sdk", material, cache)
        if not restored and not from_remote:
            bundle_runpod_flash(cache, settings, version=config.runpod_flash_version)
        cached = record_tree(cache, _package_files(cache))
        save(cache_record, cached)
        if not restored:
            store_tree("sdk", material, cache, cached.files)
        if not restored and not from_remote:
            queue_tree("sdk", material, cache, cached.files)  # a remote that lacked it gets it
        # -- end shared cache
    from ..handlers import RESOURCE_CONFIG_PATH

    # The resource-config module is the handlers phase's (it replaces the SDK's placeholder).
    wanted = {rel: r.blob for rel, r in cached.files.items() if rel != RESOURCE_CONFIG_PATH}
    copy = load(TreeRecord, sdk_record_path(config))
    build = config.paths.build
    if copy is not None and {rel: r.blob for rel, r in copy.files.items()} == wanted and tree_intact(build, copy, verify=config.verify):
        return
    destination = build / "runpod_flash"
    staging = build / ".runpod_flash.tmp-sdk"
    remove_path(staging)
    shutil.copytree(cache / "runpod_flash", staging)
    remove_path(destination)
    staging.rename(destination)
    copied = record_tree(build, sorted(wanted))
    if {rel: r.blob for rel, r in copied.files.items()} != wanted:
        raise DependencyError("the SDK files changed while they were being copied into .flash/.build", hint="build again")
    save(sdk_record_path(config), copied)

