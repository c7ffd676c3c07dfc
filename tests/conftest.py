"""Shared fixtures: a local wheel index so builds in tests never need the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelfactory import make_wheel


@pytest.fixture(scope="session")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links folder with a stand-in runpod-flash 1.21.0 and a few tiny wheels."""
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(
        folder,
        "runpod-flash",
        "1.21.0",
        requires=["httpx", "pydantic"],  # never installed: the SDK's tree stays out
        files={"runpod_flash/__init__.py": "__version__ = '1.21.0'\n", "runpod_flash/runtime/__init__.py": ""},
    )
    make_wheel(folder, "tinydep", "1.0", files={"tinydep/__init__.py": "VALUE = 1\n"})
    make_wheel(folder, "tinydep", "2.0", files={"tinydep/__init__.py": "VALUE = 2\n"})
    make_wheel(folder, "leafdep", "1.0")
    make_wheel(folder, "middep", "1.0", requires=["leafdep"])
    make_wheel(folder, "nativedep", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64", files={"nativedep/__init__.py": "NATIVE = 312\n"})
    make_wheel(folder, "nativedep", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", files={"nativedep/__init__.py": "NATIVE = 311\n"})
    make_wheel(folder, "torch", "2.9.0", tag="cp312-cp312-manylinux_2_28_x86_64", requires=["nvidia-fake"])
    make_wheel(folder, "nvidia-fake", "1.0")
    make_wheel(folder, "usestorch", "1.0", requires=["torch", "leafdep"])
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_uv_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Builds in tests use their own uv cache, never the developer's."""
    import os

    os.environ.setdefault("UV_CACHE_DIR", str(tmp_path_factory.mktemp("uv-cache")))


@pytest.fixture()
def index_args(local_index: Path) -> list[str]:
    """CLI flags that point a build at the local index only."""
    return ["--no-index", "--find-links", str(local_index)]


@pytest.fixture(autouse=True)
def _isolated_flash_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own empty shared cache, never the developer's ~/.cache, and no remote cache."""
    monkeypatch.setenv("FLASH_TASKS_CACHE_DIR", str(tmp_path_factory.mktemp("flash-cache")))
    for name in ("FLASH_TASKS_CACHE_MAX", "FLASH_TASKS_REMOTE_CACHE", "FLASH_TASKS_REMOTE_CACHE_TOKEN", "FLASH_TASKS_REMOTE_CACHE_READ_ONLY"):
        monkeypatch.delenv(name, raising=False)
