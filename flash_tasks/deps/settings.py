"""What decides a resolution: target, index, exclusions, and the constants behind them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from .. import catalog
from ..config import exclusion_names
from .base import LOCK_FORMAT, _Model

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

#: The Flash SDK: the worker image already has it and its dependency tree.
SDK_NAMES: tuple[str, ...] = ("runpod-flash",)
#: uv's target for the worker: accepts manylinux_2_28 down to manylinux2014/_2_17 wheels.
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"

PythonVersion = Literal["3.10", "3.11", "3.12"]
ExclusionReason = Literal["always", "user", "sdk"]

_PLATFORM_RE = re.compile(r"x86_64-(?:manylinux(?:2014|_2_\d+)|unknown-linux-gnu)")


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


class IndexSettings(_Model):
    """Where distributions come from; ``None``/empty means uv's own defaults (PyPI)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    #: Local folders or URLs of flat wheel listings. A local folder is read live
    #: on every resolution; a URL listing is cached by uv and so works offline.
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--default-index", self.index_url]
        if not self.no_index:
            for url in self.extra_index_urls:
                args += ["--index", url]
        for location in self.find_links:
            # uv runs in a scratch folder: make local paths absolute first.
            args += ["--find-links", location if "://" in location else str(Path(location).resolve())]
        return args


class DepsSettings(_Model):
    """Everything that decides which distributions end up in the artifact.

    ``resolution_key`` is the part that changes a lock; the rest (cache, link
    mode, progress) only changes how the work is done.
    """

    python_version: PythonVersion = catalog.DEFAULT_PYTHON_VERSION
    python_platform: str = DEFAULT_PLATFORM
    #: The user's ``--exclude`` names, on top of ``catalog.ALWAYS_EXCLUDED``.
    exclude: tuple[str, ...] = ()
    #: Always-excluded names the app keeps after all (``--include``).
    include: tuple[str, ...] = ()
    no_deps: bool = False
    index: IndexSettings = Field(default_factory=IndexSettings)
    generate_hashes: bool = True
    #: uv's cache (``UV_CACHE_DIR``); ``None`` keeps uv's default location.
    cache_dir: Path | None = None
    #: ``copy`` keeps the build folder independent of the cache (no shared inodes
    #: that a later in-place edit could corrupt) and never warns about a failed
    #: clone on filesystems without reflinks.
    link_mode: Literal["copy", "clone", "hardlink"] = "copy"
    #: ``auto``: show uv's progress on a terminal unless ``CI`` is set.
    progress: Literal["auto", "show", "quiet"] = "auto"

    @field_validator("exclude", mode="before")
    @classmethod
    def _split_exclude(cls, value: object) -> object:
        return tuple(value.split(",")) if isinstance(value, str) else value

    @field_validator("exclude")
    @classmethod
    def _normalize_exclude(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return exclusion_names(value)

    @field_validator("python_platform")
    @classmethod
    def _linux_x86_64_only(cls, value: str) -> str:
        if not _PLATFORM_RE.fullmatch(value):
            raise ValueError(f"workers run Linux x86_64; {value!r} is not an x86_64 manylinux target of uv")
        return value

    def excluded(self) -> dict[str, ExclusionReason]:
        """Normalised name -> why it never enters a resolution."""
        reasons: dict[str, ExclusionReason] = dict.fromkeys(self.exclude, "user")
        reasons.update(dict.fromkeys((n for n in catalog.ALWAYS_EXCLUDED if n not in self.include), "always"))
        reasons.update(dict.fromkeys(SDK_NAMES, "sdk"))
        return reasons

    def resolution_key(self) -> dict[str, object]:
        return {
            "format": LOCK_FORMAT,
            "python_version": self.python_version,
            "python_platform": self.python_platform,
            "excluded": sorted(self.excluded()),
            "no_deps": self.no_deps,
            "index": self.index.model_dump(mode="json"),
            "generate_hashes": self.generate_hashes,
        }

    def target_label(self) -> str:
        return f"CPython {self.python_version} on {self.python_platform}"

