"""The archive phase: pack the build folder into the artifact."""

from __future__ import annotations

from .config import BuildConfig


def build_archive(config: BuildConfig) -> None:
    from .archive import write_archive

    config.paths.artifact.parent.mkdir(parents=True, exist_ok=True)
    write_archive(config.paths.build, config.paths.artifact)
