"""Run-time stand-in for runpod-flash in tests (see ../README.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__version__ = "1.21.0-test-stand-in"


class Endpoint:
    """In a worker, decorating returns the function or class unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __call__(self, target: Any) -> Any:
        return target

    def _route(self, path: str) -> Callable[[Any], Any]:
        return lambda target: target

    get = post = put = delete = patch = _route


class _Inert:
    """Enum members and config objects: attribute access and calls give more of the same."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert(f"{self._name}(...)")


def remote(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    return lambda target: target


def __getattr__(name: str) -> _Inert:
    if name.startswith("__"):
        raise AttributeError(name)
    return _Inert(name)
