"""Glue between the task graph and dependency resolution (provisional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import BuildConfig
from .stage import read_json, write_json


def lock_path(config: BuildConfig, group: str) -> Path:
    return config.paths.locks / f"{group}.txt"


def lock_inputs(config: BuildConfig, deps: list[dict[str, str]], python_version: str | None) -> tuple[dict[str, Any], list[str]]:
    files = [str(config.app_dir / name) for name in ("requirements.txt", "pyproject.toml") if (config.app_dir / name).is_file()]
    return {"deps": [d["requirement"] for d in deps], "python": python_version}, files


def lock_group_action(config: BuildConfig, group: str) -> None:
    info = read_json(config.paths.groups_json, {"groups": {}})
    deps = [d["requirement"] for d in info["groups"].get(group, [])]
    path = lock_path(config, group)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(deps) + "\n")


def install_action(config: BuildConfig, groups: list[str]) -> None:
    write_json(config.paths.install_json, {"distributions": {}})
