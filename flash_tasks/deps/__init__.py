"""Python dependencies of a Flash app: collect, lock per resource group, install.

A Runpod worker runs Linux x86_64 CPython 3.10-3.12 and imports the app's
dependencies from the artifact root (``.flash/.build``). Whatever machine runs
the build, the wheels put there must be the worker's, so every resolution and
install here targets an explicit Python version and manylinux platform and
refuses to build anything from source (a locally compiled extension would be for
the wrong machine).

The work is split into steps that a build graph can skip independently:

1. ``collect_app_requirements`` / ``parse_endpoint_dependencies`` / ``plan_groups``
   read what the user asked for and say which files were read.
2. ``lock_group`` resolves one resource group into ``<group>.txt``. The lock
   carries a digest of its inputs, so re-running it with unchanged inputs is a
   no-op that never touches the network, even without the graph's own check.
3. ``combine_locks`` merges the group locks into the one set of distributions the
   artifact can hold, and names the two groups (and requirements) that clash.
4. ``install`` makes the build folder match that lock: it removes what left the
   lock (exactly the files in their RECORD), installs only what is new, and keeps
   a state file with per-distribution sizes and content hashes for the archiver.
5. ``bundle_runpod_flash`` ships the SDK's own package folder.

uv does the resolving and installing. Its messages are mapped to
``DependencyError`` (exit code 3) for what the index cannot satisfy and to
``BuildError`` for requirement files that cannot be read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives. Loaded on first use: a no-op build needs only a few of them.
_HOMES = {
    "CollectedRequirements": "requirements",
    "DEFAULT_PLATFORM": "settings",
    "DepsSettings": "settings",
    "ExcludedPackage": "locks",
    "GroupSpec": "requirements",
    "IndexSettings": "settings",
    "InstallResult": "installer",
    "InstallState": "installed",
    "InstalledDistribution": "installed",
    "LOCK_FORMAT": "base",
    "LockEntry": "locks",
    "LockFile": "locks",
    "LockLayout": "locks",
    "LockResult": "locks",
    "RequirementSpec": "requirements",
    "SDK_NAMES": "settings",
    "bundle_runpod_flash": "sdk",
    "collect_app_requirements": "requirements",
    "combine_locks": "locks",
    "install": "installer",
    "load_install_state": "installed",
    "lock_group": "locks",
    "lock_inputs_digest": "locks",
    "parse_endpoint_dependencies": "requirements",
    "parse_requirement": "requirements",
    "plan_groups": "requirements",
    "read_lock": "locks",
    "read_pyproject_dependencies": "requirements",
    "read_requirements_file": "requirements",
}

if TYPE_CHECKING:
    from .base import LOCK_FORMAT
    from .installed import InstalledDistribution, InstallState, load_install_state
    from .installer import InstallResult, install
    from .locks import (
        ExcludedPackage,
        LockEntry,
        LockFile,
        LockLayout,
        LockResult,
        combine_locks,
        lock_group,
        lock_inputs_digest,
        read_lock,
    )
    from .requirements import (
        CollectedRequirements,
        GroupSpec,
        RequirementSpec,
        collect_app_requirements,
        parse_endpoint_dependencies,
        parse_requirement,
        plan_groups,
        read_pyproject_dependencies,
        read_requirements_file,
    )
    from .sdk import bundle_runpod_flash
    from .settings import (
        DEFAULT_PLATFORM,
        SDK_NAMES,
        DepsSettings,
        IndexSettings,
    )


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PLATFORM",
    "LOCK_FORMAT",
    "SDK_NAMES",
    "CollectedRequirements",
    "DepsSettings",
    "ExcludedPackage",
    "GroupSpec",
    "IndexSettings",
    "InstallResult",
    "InstallState",
    "InstalledDistribution",
    "LockEntry",
    "LockFile",
    "LockLayout",
    "LockResult",
    "RequirementSpec",
    "bundle_runpod_flash",
    "collect_app_requirements",
    "combine_locks",
    "install",
    "load_install_state",
    "lock_group",
    "lock_inputs_digest",
    "parse_endpoint_dependencies",
    "parse_requirement",
    "plan_groups",
    "read_lock",
    "read_pyproject_dependencies",
    "read_requirements_file",
]
