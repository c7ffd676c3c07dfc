"""Terminal output: colour, a spinner, aligned tables, sizes and times.

Hand-written on purpose. rich (15.0) was tried and writes other bytes for
every piece: ``\x1b[1;32m`` where we write ``\x1b[32;1m``; a live spinner that
hides the cursor, redraws after every line printed and leaves with ``\x1b[1A``;
tables padded to the end of the line and cut with ``…`` to 80 columns in a pipe;
``NO_COLOR`` that keeps bold and dim, ``FORCE_COLOR=0`` that forces colour, and no
``CLICOLOR_FORCE``. tests/test_output.py pins each of these. Importing
``rich.console`` also takes 45-75 ms here; this module costs well under 1 ms.

Colour follows the usual conventions: ``--color always|never`` wins; with
``auto`` (the default) ``NO_COLOR`` (non-empty) turns it off, ``FORCE_COLOR``
or ``CLICOLOR_FORCE`` (non-empty, not ``0``) turns it on, ``TERM=dumb`` turns it
off, else it is on only when the stream is a terminal. The spinner is drawn
only on a terminal, never in ``--json``, ``-q`` or CI logs.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_FRAMES = "|/-\\"


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "")
    return bool(value) and value != "0"


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_color(mode: str, stream: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether to write ANSI colours to ``stream`` for ``--color mode``."""
    env = os.environ if env is None else env
    if mode == "always":
        return True
    if mode == "never":
        return False
    if env.get("NO_COLOR"):
        return False
    if _flag(env, "FORCE_COLOR") or _flag(env, "CLICOLOR_FORCE"):
        return True
    if env.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def format_size(size: float) -> str:
    """Binary units, three significant digits: ``512 B``, ``4.2 KiB``, ``153 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_delta(delta: int) -> str:
    """``+12 B``, ``-3.1 KiB``, ``±0 B``."""
    if delta == 0:
        return "±0 B"
    return ("+" if delta > 0 else "-") + format_size(abs(delta))


def format_seconds(seconds: float) -> str:
    """``0.4ms``, ``12ms``, ``1.23s``, ``2m05s``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


class Console:
    """Writes lines to one stream, styled when colour is on, around an optional spinner."""

    def __init__(self, stream: IO[str], *, color: bool = False, live: bool = False, quiet: bool = False) -> None:
        self.stream = stream
        self.color = color
        self.live = live and not quiet
        self.quiet = quiet
        self._lock = threading.RLock()
        self._spinner: _Spinner | None = None
        self.closed = False

    @classmethod
    def create(cls, stream: IO[str], mode: str = "auto", *, quiet: bool = False, env: Mapping[str, str] | None = None) -> Console:
        env = os.environ if env is None else env
        live = is_terminal(stream) and env.get("TERM") != "dumb" and not _flag(env, "CI")
        return cls(stream, color=use_color(mode, stream, env), live=live, quiet=quiet)

    # -- styling -----------------------------------------------------------------------

    def style(self, text: str, *styles: str) -> str:
        if not self.color or not styles or not text:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.style(text, "bold")

    def dim(self, text: str) -> str:
        return self.style(text, "dim")

    # -- writing -----------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        """Write one line (nothing when quiet), keeping a running spinner below it."""
        if self.quiet:
            return
        self.write_always(text)

    def write_always(self, text: str) -> None:
        if self.closed:
            return
        with self._lock:
            try:
                self._clear_spinner()
                self.stream.write(text + "\n")
                self.stream.flush()
            except BrokenPipeError:
                # `flash build | head`: the reader left. The build goes on; the rest
                # of the output goes nowhere, and so does the interpreter's final flush.
                self.closed = True
                self.live = False
                _silence(self.stream)

    def _clear_spinner(self) -> None:
        if self._spinner is not None and self._spinner.drawn:
            self.stream.write("\r\x1b[2K")
            self._spinner.drawn = False

    # -- spinner -----------------------------------------------------------------------

    def start_spinner(self, label: str) -> None:
        """Show ``label`` with a spinner and the time since it started (terminals only)."""
        if not self.live:
            return
        with self._lock:
            if self._spinner is None:
                self._spinner = _Spinner(self)
                self._spinner.start()
            self._spinner.label = label
            self._spinner.since = time.perf_counter()

    def stop_spinner(self) -> None:
        spinner = self._spinner
        if spinner is None:
            return
        spinner.stop()
        with self._lock:
            self._clear_spinner()
            self.stream.flush()
            self._spinner = None

    def pause_spinner(self) -> None:
        """Hide the spinner while something else (uv's own progress) draws on the terminal."""
        with self._lock:
            if self._spinner is not None:
                self._spinner.label = None
                self._clear_spinner()
                self.stream.flush()

    # -- tables ------------------------------------------------------------------------

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "  ", right: Sequence[int] = ()) -> None:
        """Columns aligned on the plain text width; the last column is not padded."""
        for line in render_table(header, rows, indent=indent, right=right, style=self.style):
            self.line(line)


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "  ",
    right: Sequence[int] = (),
    style: object = None,
) -> list[str]:
    all_rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(strip_ansi(r[i])) for r in all_rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(all_rows):
        cells = []
        for i, cell in enumerate(row):
            pad = widths[i] - len(strip_ansi(cell))
            last = i == len(row) - 1
            if i in right:
                cells.append(" " * pad + cell)
            else:
                cells.append(cell if last else cell + " " * pad)
        text = indent + "  ".join(cells).rstrip()
        if n == 0 and callable(style):
            text = indent + style("  ".join(cells).rstrip(), "bold")
        lines.append(text)
    return lines


class _Spinner(threading.Thread):
    INTERVAL = 0.08

    def __init__(self, console: Console) -> None:
        super().__init__(name="flash-spinner", daemon=True)
        self.console = console
        self.label: str | None = None
        self.since = time.perf_counter()
        self.drawn = False
        self._stop_event = threading.Event()
        encoding = getattr(console.stream, "encoding", None) or "utf-8"
        try:
            _SPINNER_FRAMES.encode(encoding)
            self.frames = _SPINNER_FRAMES
        except (UnicodeEncodeError, LookupError):
            self.frames = _ASCII_FRAMES

    def run(self) -> None:
        n = 0
        # Draw only once a step has taken a moment: fast steps never flicker.
        while not self._stop_event.wait(self.INTERVAL):
            with self.console._lock:
                label = self.label
                if label is None:
                    continue
                elapsed = time.perf_counter() - self.since
                if elapsed < 0.25:
                    continue
                frame = self.frames[n % len(self.frames)]
                n += 1
                width = _terminal_width() - 1
                text = f"{frame} {label} {format_seconds(elapsed)}"
                if len(text) > width:
                    text = text[: max(width - 1, 0)]
                self.console.stream.write("\r\x1b[2K" + self.console.style(text, "cyan"))
                self.console.stream.flush()
                self.drawn = True

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=1)


def _silence(stream: IO[str]) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def render_error(exc: object, console: Console) -> str:
    """``FlashError.render()``, with the location bold, ``error:`` red and ``hint:`` cyan when colour is on."""
    from ..errors import FlashError

    assert isinstance(exc, FlashError)
    if not console.color:
        return exc.render()
    text = (f"{console.bold(exc.location)}: " if exc.location else "") + f"{console.style('error:', 'red', 'bold')} {exc.message}"
    if exc.hint:
        text += f"\n  {console.style('hint:', 'cyan', 'bold')} " + "\n        ".join(exc.hint.splitlines())
    return text
