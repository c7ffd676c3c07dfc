"""Explaining an artifact over Runpod's size limit by its biggest dependencies."""

from __future__ import annotations

from .installer import InstallState
from .. import catalog
from .settings import _Model

# ---------------------------------------------------------------------------
# Size
# ---------------------------------------------------------------------------


class SizeReport(_Model):
    total_bytes: int
    limit_bytes: int
    #: ``(name, version, installed bytes)``, biggest first.
    biggest: tuple[tuple[str, str, int], ...]

    @property
    def over_limit(self) -> bool:
        return self.total_bytes > self.limit_bytes

    def explain(self) -> str:
        lines = [f"largest dependencies (installed size, {len(self.biggest)} shown):"]
        for name, version, size in self.biggest:
            lines.append(f"  {size / 2**20:9.1f} MB  {name}=={version}")
        lines.append("leave big packages out with --exclude a,b (the worker image may already have them),")
        lines.append("or skip transitive dependencies with --no-deps")
        return "\n".join(lines)


def check_size(
    state: InstallState, *, archive_bytes: int | None = None, limit_mb: int = catalog.MAX_ARTIFACT_MB, top: int = 10
) -> SizeReport:
    """The ``top`` biggest installed distributions, to explain an archive over ``limit_mb`` MiB.

    ``archive_bytes`` (the compressed size, if known) is what the limit applies
    to; without it the installed size stands in.
    """
    ranked = sorted(state.distributions.values(), key=lambda d: (-d.size, d.name))[:top]
    return SizeReport(
        total_bytes=archive_bytes if archive_bytes is not None else state.total_size,
        limit_bytes=limit_mb * 2**20,
        biggest=tuple((d.name, d.version, d.size) for d in ranked),
    )
