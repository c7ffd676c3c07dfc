"""Shared fixtures and the meaning of the suite's markers.

Markers (declared in pyproject.toml):

* ``network``: needs the real package index;
* ``reference``: needs runpod-flash 1.21.0, installed from the index into a
  scratch venv (or given with ``FLASH_REFERENCE_PYTHON``); every such test is
  also ``slow``, since the first one pays for that install;
* ``slow``: over 10 s; the README's test command leaves them to ``.ci/run``.

Whether the index is reachable is decided once per run, before any test: a
2-second HEAD request to it, skipped when ``FLASH_TASKS_OFFLINE=1`` or
``UV_OFFLINE=1`` says the answer. Offline, ``network`` tests and ``reference``
tests without ``FLASH_REFERENCE_PYTHON`` are skipped with that reason instead
of failing. Nothing is written under ``~``: uv's cache and the reference venv
live under pytest's temporary and cache folders.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from wheelfactory import make_wheel

OFFLINE_ENV = "FLASH_TASKS_OFFLINE"
#: Set by the controlling process so xdist workers reuse its probe: "" (online) or the reason.
_PROBE_ENV = "_FLASH_TASKS_INDEX_PROBE"
_PROBE_TIMEOUT_S = 2.0
_DEFAULT_INDEX = "https://pypi.org/simple/"


def _index_url() -> str:
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        value = os.environ.get(var, "").strip()
        if value.startswith(("http://", "https://")):
            return value
    return _DEFAULT_INDEX


def _probe_index() -> str:
    """Why the package index is unusable, or "" when a HEAD request to it answers."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]}"
    if os.environ.get("UV_OFFLINE", "") not in ("", "0", "false"):
        return "UV_OFFLINE is set"
    url = _index_url()
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_PROBE_TIMEOUT_S):
            return ""
    except urllib.error.HTTPError:
        return ""  # the index answered, even if not with 200
    except (OSError, ValueError) as exc:
        return f"{url} unreachable ({getattr(exc, 'reason', exc)})"


def offline_reason() -> str:
    """The session's verdict on the index ("" when online); probed at most once per run."""
    if _PROBE_ENV not in os.environ:
        os.environ[_PROBE_ENV] = _probe_index()
    return os.environ[_PROBE_ENV]


def _no_proxy_for_local_servers() -> None:
    """Tests serve wheels from 127.0.0.1; a configured proxy must never see those requests."""
    local = ["127.0.0.1", "localhost", "::1"]
    for var in ("NO_PROXY", "no_proxy"):
        present = [h.strip() for h in os.environ.get(var, "").split(",") if h.strip()]
        os.environ[var] = ",".join(present + [h for h in local if h not in present])


def _test_cache_dir(config: pytest.Config) -> Path:
    """Where environments that outlive one run go: pytest's cache folder, else the temp folder."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("flash-tasks"))
    return Path(tempfile.gettempdir()) / f"flash-tasks-tests-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def pytest_configure(config: pytest.Config) -> None:
    _no_proxy_for_local_servers()
    os.environ.setdefault("FLASH_TASKS_TEST_CACHE", str(_test_cache_dir(config)))
    if not hasattr(config, "workerinput"):
        offline_reason()  # once, in the controlling process; xdist workers inherit the answer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        if item.get_closest_marker("reference") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(slow)
    needs_index = [
        item
        for item in items
        if item.get_closest_marker("network") is not None
        or (item.get_closest_marker("reference") is not None and not os.environ.get("FLASH_REFERENCE_PYTHON"))
    ]
    if not needs_index:
        return
    reason = offline_reason()
    if not reason:
        return
    for item in needs_index:
        what = "the package index" if item.get_closest_marker("network") else "runpod-flash 1.21.0 from the package index"
        item.add_marker(pytest.mark.skip(reason=f"offline: needs {what}; {reason}"))


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
    os.environ.setdefault("UV_CACHE_DIR", str(tmp_path_factory.mktemp("uv-cache")))


_REMOTE_CACHE_VARIABLES = (
    "FLASH_TASKS_CACHE_MAX",
    "FLASH_TASKS_REMOTE_CACHE",
    "FLASH_TASKS_REMOTE_CACHE_TOKEN",
    "FLASH_TASKS_REMOTE_CACHE_READ_ONLY",
)


@pytest.fixture(scope="session", autouse=True)
def _session_flash_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Module- and session-scoped fixtures build before any per-test fixture applies: their builds
    get a shared cache of the session's own too, never the developer's ~/.cache, and no remote."""
    os.environ["FLASH_TASKS_CACHE_DIR"] = str(tmp_path_factory.mktemp("flash-cache-session"))
    for name in _REMOTE_CACHE_VARIABLES:
        os.environ.pop(name, None)
    # A build that restores every dependency from the shared cache would complete .flash/.build in a
    # process of its own after returning; tests look at .build right away. tests/test_fill.py turns it on.
    os.environ["FLASH_TASKS_BACKGROUND_FILL"] = "0"


@pytest.fixture()
def index_args(local_index: Path) -> list[str]:
    """CLI flags that point a build at the local index only."""
    return ["--no-index", "--find-links", str(local_index)]


@pytest.fixture(autouse=True)
def _isolated_flash_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own empty shared cache, never the developer's ~/.cache, and no remote cache."""
    monkeypatch.setenv("FLASH_TASKS_CACHE_DIR", str(tmp_path_factory.mktemp("flash-cache")))
    for name in _REMOTE_CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLASH_TASKS_BACKGROUND_FILL", "0")
