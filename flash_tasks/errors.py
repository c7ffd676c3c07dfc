"""The exceptions a build raises for its users.

Every problem a user can cause or fix is a ``FlashError``: it carries a message
meant for people, where it happened (``file:line:col``) and what to do about it.
The CLI prints ``render()`` and exits with ``exit_code``; it never shows a
traceback for these. Anything else that escapes is a bug in this tool.
"""

from __future__ import annotations


class FlashError(Exception):
    """A problem with the app or the request, explained for the user."""

    exit_code: int = 1
    kind: str = "build"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        self.hint = hint

    @property
    def location(self) -> str | None:
        """``file``, ``file:line`` or ``file:line:col``, whichever is known."""
        if self.path is None:
            return None
        loc = self.path
        if self.line is not None:
            loc += f":{self.line}"
            if self.col is not None:
                loc += f":{self.col}"
        return loc

    def render(self) -> str:
        """The message as printed: ``where: error: what`` then the hint."""
        head = f"{self.location}: error: {self.message}" if self.location else f"error: {self.message}"
        if self.hint:
            hint_lines = self.hint.splitlines()
            head += "\n  hint: " + "\n        ".join(hint_lines)
        return head

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "code": self.exit_code,
            "message": self.message,
            "file": self.path,
            "line": self.line,
            "col": self.col,
            "hint": self.hint,
        }


class BuildError(FlashError):
    """The app cannot be built as it is (source, configuration, size)."""

    exit_code = 1
    kind = "build"


class UsageError(FlashError):
    """The command line asks for something invalid."""

    exit_code = 2
    kind = "usage"


class DependencyError(FlashError):
    """Dependencies could not be resolved, downloaded or installed."""

    exit_code = 3
    kind = "dependency"


class ResolutionChanged(FlashError):
    """A lock taken from the shared cache was not what uv resolves: the build runs again from uv's.

    Raised by the archive step instead of publishing; the runner builds again
    and the user never sees it.
    """

    exit_code = 1
    kind = "build"
