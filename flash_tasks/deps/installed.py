"""The install record: which distributions are in the build folder, as the archiver needs them.

Apart from the installer (``installer.py``), which writes it, every build reads
it (is the install still there? which segments does the artifact need?), so it
lives here, away from uv and the lock machinery.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from .base import LOCK_FORMAT, _Model

if TYPE_CHECKING:
    from .locks import ExcludedPackage
    from .settings import DepsSettings


class InstalledDistribution(_Model):
    """One distribution in the build folder, as the archiver needs to know it."""

    name: str
    version: str
    pin: str
    hashes: tuple[str, ...] = ()
    dist_info: str
    #: First path component of every RECORD entry (packages, modules, ``bin``, the dist-info).
    top_level: tuple[str, ...]
    size: int
    files: int
    #: sha256 over RECORD's (path, hash, size) lines: changes iff the installed files do.
    content_hash: str
    #: Excluded packages this distribution requires on the target (they are not installed).
    requires_excluded: tuple[str, ...] = ()
    #: Asked for directly (requirements.txt or an endpoint's dependencies): only these carry
    #: a ``REQUESTED`` marker, as pip writes them.
    requested: bool = False
    #: The key its install record has in the shared caches ("" when it has none: no wheel hashes).
    install_key: str = ""


class InstallState(_Model):
    format: int = LOCK_FORMAT
    python_version: str
    python_platform: str
    distributions: dict[str, InstalledDistribution] = Field(default_factory=dict)
    #: sha256 of the lock file this state was installed from ("" while incomplete): an
    #: older state put back in place no longer matches the lock and is not trusted.
    lock_sha256: str = ""
    #: sha256 of everything above: a state file changed by hand or damaged is not trusted.
    digest: str = ""

    def computed_digest(self) -> str:
        return hashlib.sha256(self.model_dump_json(exclude={"digest"}).encode()).hexdigest()

    def excluded_needed(self, settings: DepsSettings) -> tuple[ExcludedPackage, ...]:
        from .locks import ExcludedPackage

        reasons = settings.excluded()
        wanted: dict[str, list[str]] = {}
        for dist in self.distributions.values():
            for name in dist.requires_excluded:
                wanted.setdefault(name, []).append(dist.name)
        return tuple(
            ExcludedPackage(name=name, reason=reasons.get(name, "user"), required_by=tuple(sorted(by)))
            for name, by in sorted(wanted.items())
        )

    @property
    def total_size(self) -> int:
        return sum(d.size for d in self.distributions.values())


def load_install_state(path: Path) -> InstallState | None:
    """The saved state, or ``None`` if missing, unreadable or from another format."""
    try:
        state = InstallState.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    if state.format != LOCK_FORMAT or state.digest != state.computed_digest():
        return None
    return state


def file_sha256(path: Path) -> str:
    """sha256 of a small file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
