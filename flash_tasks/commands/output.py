"""Terminal output: colour, a spinner, aligned tables, sizes and times.

Two paths. Into a pipe or a file, with ``-q``, ``--json`` or ``--color never``,
a line is written as it is given and a table is ``render_table``'s columns:
no escape byte, and rich is not imported. On a terminal, or when colour is
forced, ``commands/terminal.py`` has rich style the text, print the lines,
draw the spinner (``rich.live.Live``, transient) and lay out tables
(``rich.table.Table``, fitted to the terminal's width); colour forced into a
pipe is styled by rich and written as on the first path.

rich is imported only then because it is not free. Measured on a 2-core
machine under a load average of 3 to 5 (so every number is a spread): with the
rest of a build already imported, ``import rich.console`` (15.0) took a median
of 31 ms (21-40 ms, 9 runs), and ``commands/terminal.py`` with it 28 ms
(22-39 ms; rich's live display and tables load only when first drawn). A no-op
``flash build`` on a terminal (``script -qc``) imports 48 modules more than the
same build into a pipe, 40 ms of import time (22-45 ms, 5 runs of ``-X
importtime``); its wall time was a median of 686 ms against 626 ms into a pipe
(15 runs each, spread 480-780 ms).

Colour follows the usual conventions: ``--color always|never`` wins; with
``auto`` (the default) ``NO_COLOR`` (non-empty) turns it off, ``FORCE_COLOR``
or ``CLICOLOR_FORCE`` (non-empty, not ``0``) turns it on, ``TERM=dumb`` turns it
off, else it is on only when the stream is a terminal. That decision is ours and
is passed to rich, whose own reading of these variables differs. The spinner is
drawn only on a terminal, never in ``--json``, ``-q`` or CI logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .terminal import Terminal

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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
        self.closed = False
        #: rich draws on a terminal (or a stream said to be live); made on first use.
        self._on_terminal = not quiet and (self.live or is_terminal(stream))
        self._terminal: Terminal | None = None

    @classmethod
    def create(cls, stream: IO[str], mode: str = "auto", *, quiet: bool = False, env: Mapping[str, str] | None = None) -> Console:
        env = os.environ if env is None else env
        live = is_terminal(stream) and env.get("TERM") != "dumb" and not _flag(env, "CI")
        return cls(stream, color=use_color(mode, stream, env), live=live, quiet=quiet)

    def _rich(self) -> Terminal:
        if self._terminal is None:
            from .terminal import Terminal

            self._terminal = Terminal(self.stream, color=self.color, live=self.live)
        return self._terminal

    # -- styling -----------------------------------------------------------------------

    def style(self, text: str, *styles: str) -> str:
        """``text`` with rich's escape codes for ``styles`` when colour is on (and not quiet), else as it is."""
        if not self.color or self.quiet or not styles or not text:
            return text
        from .terminal import render_style

        return render_style(text, styles)

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
        try:
            if self._on_terminal:
                self._rich().line(text)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()
        except BrokenPipeError:
            self._reader_left()

    def _reader_left(self) -> None:
        # `flash build | head`: the reader left. The build goes on; the rest
        # of the output goes nowhere, and so does the interpreter's final flush.
        self.closed = True
        self.live = False
        self.stop_spinner()
        _silence(self.stream)

    # -- spinner -----------------------------------------------------------------------

    def start_spinner(self, label: str) -> None:
        """Show ``label`` with a spinner and the time since it started (terminals only)."""
        if self.live and not self.closed:
            self._rich().start_spinner(label)

    def stop_spinner(self) -> None:
        """Clear the spinner's line and give the terminal its cursor back."""
        if self._terminal is not None:
            self._terminal.stop_spinner()

    def pause_spinner(self) -> None:
        """Hide the spinner while something else (uv's own progress) draws on the terminal."""
        self.stop_spinner()

    # -- tables ------------------------------------------------------------------------

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "  ", right: Sequence[int] = ()) -> None:
        """Columns aligned on the plain text width; the last column is not padded (outside a terminal)."""
        if self.quiet or self.closed:
            return
        if self._on_terminal:
            try:
                self._rich().table(header, rows, indent=indent, right=right)
            except BrokenPipeError:
                self._reader_left()
            return
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


def _silence(stream: IO[str]) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


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
