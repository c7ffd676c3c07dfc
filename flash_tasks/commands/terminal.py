"""What ``commands/output.py`` draws with rich: styles, lines on a terminal, the spinner, tables.

Imported by ``output.Console`` only when colour is on or it writes to a terminal,
so a piped, ``-q`` or ``--json`` run never loads rich. Whether there is colour,
a terminal or a spinner is decided by ``output.use_color`` and
``output.Console.create`` and passed to rich explicitly: rich's own reading of
``FORCE_COLOR``, ``NO_COLOR``, ``TTY_COMPATIBLE`` or ``TTY_INTERACTIVE`` never
applies.
"""

from __future__ import annotations

import atexit
import functools
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from rich.ansi import AnsiDecoder
from rich.color import ColorSystem
from rich.console import Console as RichConsole
from rich.console import ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

from .output import format_seconds

if TYPE_CHECKING:
    from rich.live import Live

# rich.live, rich.spinner and rich.table are imported when first used: a no-op build on a
# terminal prints a line and needs neither a spinner nor a table.

#: A step shows the spinner only once it has taken this long: fast steps never flicker.
SPINNER_DELAY = 0.25
_REFRESHES_PER_SECOND = 12.5


@functools.lru_cache(maxsize=64)
def _style(styles: tuple[str, ...]) -> Style:
    return Style.parse(" ".join(styles))


def render_style(text: str, styles: Sequence[str]) -> str:
    """``text`` in ``styles`` (``"green"``, ``"bold"``, ...), as the escape codes of an 8-colour terminal."""
    return _style(tuple(styles)).render(text, color_system=ColorSystem.STANDARD)


def decode(text: str) -> Text:
    """Styled text back from what ``render_style`` wrote, line by line."""
    decoder = AnsiDecoder()
    return Text("\n").join(decoder.decode_line(line) for line in text.split("\n"))


class _Console(RichConsole):
    def on_broken_pipe(self) -> None:
        # rich would exit the process; output.Console goes quiet and the build goes on.
        self.quiet = True
        raise BrokenPipeError


class _Status:
    """The spinner's line: a frame, the label and the time since it was set (nothing while fast)."""

    def __init__(self, frames: str, style: str) -> None:
        from rich.spinner import Spinner

        self.spinner = Spinner(frames, style=style)
        self.style = style
        self.label = ""
        self.since = time.perf_counter()

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        elapsed = time.perf_counter() - self.since
        if elapsed < SPINNER_DELAY:
            return
        self.spinner.update(text=Text(f"{self.label} {format_seconds(elapsed)}", style=self.style))
        line = self.spinner.render(console.get_time())
        assert isinstance(line, Text)
        line.no_wrap = True
        line.overflow = "ellipsis"  # one line, whatever the terminal's width
        yield line


class Terminal:
    """rich's console on one terminal stream, with an optional spinner below what is printed."""

    def __init__(self, stream: IO[str], *, color: bool, live: bool) -> None:
        self.console = _Console(
            file=stream,
            force_terminal=True,
            force_interactive=live,
            no_color=not color,
            color_system="standard" if color else None,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=True,
        )
        self.color = color
        self._status: _Status | None = None
        self._live: Live | None = None

    def line(self, text: str) -> None:
        """One line (or several), above the spinner if it is shown; never wrapped or cut."""
        self.console.print(decode(text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str, right: Sequence[int]) -> None:
        """``output.render_table``'s columns, fitted to the terminal's width (a long cell wraps)."""
        from rich.padding import Padding
        from rich.table import Table

        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
        for index, title in enumerate(header):
            table.add_column(decode(title), justify="right" if index in right else "left", overflow="fold")
        for row in rows:
            table.add_row(*(decode(cell) for cell in row))
        self.console.print(Padding(table, (0, 0, 0, len(indent)), expand=False), soft_wrap=False)

    def start_spinner(self, label: str) -> None:
        if self._status is None:
            frames = "dots" if self.console.encoding.startswith("utf") else "line"
            self._status = _Status(frames, "cyan" if self.color else "")
        self._status.label = label
        self._status.since = time.perf_counter()
        if self._live is None:
            from rich.live import Live

            live = Live(
                self._status,
                console=self.console,
                transient=True,
                refresh_per_second=_REFRESHES_PER_SECOND,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            live.start()
            self._live = live
            _RUNNING.add(live)

    def stop_spinner(self) -> None:
        """Clear the spinner's line and show the cursor again."""
        live, self._live = self._live, None
        if live is not None:
            _RUNNING.discard(live)
            live.stop()


#: Spinners still drawn when the interpreter exits (an error no one caught): stopped, so the
#: terminal gets its cursor back.
_RUNNING: set[Live] = set()


@atexit.register
def _stop_all() -> None:
    for live in list(_RUNNING):
        try:
            live.stop()
        except (OSError, ValueError):
            pass  # the terminal is gone
