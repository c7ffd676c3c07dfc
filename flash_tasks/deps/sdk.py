"""The Flash SDK's own package folder in the artifact, fetched once per version and index."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DependencyError
from .installer import _install_entries
from .locks import LockEntry
from .settings import RUNPOD_FLASH_VERSION, DepsSettings
from .uv import _dependency_error

if TYPE_CHECKING:
    from ..config import BuildConfig


# ---------------------------------------------------------------------------
# The SDK
# ---------------------------------------------------------------------------


def bundle_runpod_flash(target: Path, settings: DepsSettings, *, version: str = RUNPOD_FLASH_VERSION) -> Path:
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




def bundle_sdk(config: BuildConfig, settings: Any) -> None:
    """Put the SDK's ``runpod_flash/`` package into the build, from a per-version cache.

    Fetching it through uv costs a process and a scratch folder; the extracted
    package is kept under ``.flash/.state/sdk/`` and copied from there.
    """
    key = hashlib.sha256(repr((config.runpod_flash_version, settings.index.model_dump(mode="json"))).encode()).hexdigest()[:12]
    cache = config.paths.state / "sdk" / f"{config.runpod_flash_version}-{key}"
    if not (cache / "runpod_flash" / "__init__.py").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        bundle_runpod_flash(cache, settings, version=config.runpod_flash_version)
    destination = config.paths.build / "runpod_flash"
    staging = config.paths.build / ".runpod_flash.tmp-sdk"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cache / "runpod_flash", staging)
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
