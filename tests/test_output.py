"""What commands/output.py writes: plain bytes into a pipe, rich's drawing on a terminal.

Into a pipe the bytes are pinned (tables neither padded at the end of a line nor
cut to a width). On a terminal (a stream whose ``isatty()`` is true) the output is
played on ``support.screen``'s small terminal and what a user would see is
checked: which words are coloured, that ``NO_COLOR``, ``--color never`` and
``TERM=dumb`` leave no colour, that rich's own reading of the environment does
not leak through, and that the spinner leaves neither a partial line nor a
hidden cursor, even when the build stops on an error or Ctrl-C.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from support.screen import SGR, play

from flash_tasks.commands import build as build_command
from flash_tasks.commands.output import Console, render_table
from flash_tasks.config import BuildConfig


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


TERMINAL = {"TERM": "xterm"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich reads these itself; each test sets the ones it is about."""
    for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "CI", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")


# -- into a pipe: the bytes --------------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_spaces() -> None:
    lines = render_table(["size", "files", "from"], [["1.0 KiB", "3", "app"], ["12 B", "1", "numpy 2.1"]], right=(0, 1))
    assert lines == [
        "     size  files  from",
        "  1.0 KiB      3  app",
        "     12 B      1  numpy 2.1",
    ]


def test_table_rows_longer_than_a_terminal_are_kept_whole() -> None:
    long_path = "workers/" + "x" * 150 + ".py"
    stream = io.StringIO()  # a pipe: no terminal width to cut to
    Console(stream).table(["resource", "path"], [["api", long_path]])
    assert stream.getvalue() == f"  resource  path\n  api       {long_path}\n"


def test_plain_output_has_no_escape_byte() -> None:
    stream = io.StringIO()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.line(console.style("Built", "green", "bold") + " " + console.dim("(cached)"))
    console.table(["a", "b"], [[console.style("1", "cyan"), "2"]])
    console.start_spinner("Archiving")
    time.sleep(0.4)
    console.stop_spinner()
    assert stream.getvalue() == "Built (cached)\n  a  b\n  1  2\n"


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        ({"FORCE_COLOR": "0"}, False),
        ({"FORCE_COLOR": "1"}, True),
        ({"CLICOLOR_FORCE": "1"}, True),
        ({"CLICOLOR_FORCE": "0"}, False),
    ],
)
def test_forcing_colour_into_a_pipe(env: dict[str, str], coloured: bool) -> None:
    stream = io.StringIO()
    console = Console.create(stream, "auto", env=env)
    console.line(console.style("Built", "green", "bold") + " in 3ms")
    text = stream.getvalue()
    if not coloured:
        assert text == "Built in 3ms\n"
        return
    screen = play(text)
    assert screen.lines() == ["Built in 3ms"]
    assert screen.styles_of("Built") == {frozenset({"green", "bold"})}
    assert screen.styles_of(" in 3ms") == {frozenset()}  # the style ends with the word


def test_a_coloured_table_in_a_pipe_has_a_bold_header_and_the_same_columns() -> None:
    coloured = io.StringIO()
    Console(coloured, color=True).table(["a", "b"], [["1", "2"]])
    screen = play(coloured.getvalue())
    assert screen.lines() == ["  a  b", "  1  2"]
    assert screen.styles_of("a  b") == {frozenset({"bold"})}
    assert screen.styles_of("1  2") == {frozenset()}


# -- on a terminal: what is seen ---------------------------------------------------------------------


def test_styles_on_a_terminal() -> None:
    stream = _Tty()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.line(console.style("Built", "green", "bold") + " now " + console.dim("(cached)") + " " + console.style("hint:", "cyan", "bold"))
    screen = play(stream.getvalue())
    assert screen.lines() == ["Built now (cached) hint:"]
    assert screen.styles_of("Built") == {frozenset({"green", "bold"})}
    assert screen.styles_of("(cached)") == {frozenset({"dim"})}
    assert screen.styles_of("hint:") == {frozenset({"cyan", "bold"})}
    assert screen.styles_of(" now ") == {frozenset()}


@pytest.mark.parametrize(
    ("mode", "env"),
    [
        ("auto", {"NO_COLOR": "1", "TERM": "xterm"}),  # no bold or dim either, not just no colour
        ("never", {"TERM": "xterm"}),
        ("never", {"TERM": "xterm", "FORCE_COLOR": "1"}),
        ("auto", {"TERM": "dumb"}),
    ],
)
def test_no_colour_on_a_terminal_when_told_so(mode: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():  # also where rich would read them itself
        monkeypatch.setenv(name, value)
    stream = _Tty()
    console = Console.create(stream, mode, env=env)
    console.line(console.bold("Built") + " " + console.dim("(cached)") + " " + console.style("ok", "green"))
    console.table(["resource", "type"], [[console.style("api", "cyan"), "LB"]])
    console.start_spinner("Archiving")
    time.sleep(0.5)
    console.stop_spinner()
    text = stream.getvalue()
    assert not SGR.search(text), repr(text)
    assert play(text).lines() == ["Built (cached) ok", "  resource  type", "  api       LB"]


def test_force_color_zero_does_not_force_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich alone would take any FORCE_COLOR, even 0, as "force"; our rule reads 0 as not set."""
    monkeypatch.setenv("FORCE_COLOR", "0")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    stream = io.StringIO()
    console = Console.create(stream, "auto")
    console.line(console.style("Built", "green", "bold"))
    assert stream.getvalue() == "Built\n"


def test_color_always_wins_over_no_color_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich alone would drop colour for NO_COLOR; ``--color always`` is asked for explicitly."""
    monkeypatch.setenv("NO_COLOR", "1")
    stream = _Tty()
    console = Console.create(stream, "always")
    console.line(console.style("Built", "green", "bold"))
    assert play(stream.getvalue()).styles_of("Built") == {frozenset({"green", "bold"})}


@pytest.mark.parametrize("env", [{"TTY_COMPATIBLE": "0"}, {"FORCE_COLOR": ""}, {"TTY_INTERACTIVE": "0"}])
def test_a_terminal_stays_a_terminal_whatever_rich_would_read(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables rich alone would take to mean "not a terminal" or "not interactive" change nothing here."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = _Tty()
    console = Console.create(stream, "auto")
    console.start_spinner("Archiving")
    time.sleep(0.5)
    console.line(console.style("Built", "green", "bold"))
    console.stop_spinner()
    text = stream.getvalue()
    assert "Archiving" in text
    screen = play(text)
    assert screen.lines() == ["Built"] and screen.styles_of("Built") == {frozenset({"green", "bold"})}
    assert screen.cursor_visible


def test_a_terminal_table_has_the_pipe_tables_columns() -> None:
    header = ["size", "files", "from"]
    rows = [["1.0 KiB", "3", "app"], ["12 B", "1", "numpy 2.1"]]
    stream = _Tty()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.table(header, rows, right=(0, 1))
    screen = play(stream.getvalue())
    assert screen.lines() == render_table(header, rows, right=(0, 1))
    assert screen.styles_of("size") == {frozenset({"bold"})}
    assert screen.styles_of("numpy 2.1") == {frozenset()}


def test_a_terminal_table_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    long_path = "workers/" + "x" * 150 + ".py"
    stream = _Tty()
    Console.create(stream, "auto", env=TERMINAL).table(["resource", "path"], [["api", long_path]])
    lines = play(stream.getvalue()).lines()
    assert len(lines) > 2 and all(len(line) <= 60 for line in lines), lines
    assert lines[0].split() == ["resource", "path"] and lines[1].split()[0] == "api"
    assert "".join(line[lines[0].index("path") :] for line in lines[1:]) == long_path  # folded, nothing lost


# -- the spinner -------------------------------------------------------------------------------------


def test_spinner_keeps_printed_lines_whole_and_leaves_no_trace() -> None:
    stream = _Tty()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.start_spinner("Archiving")
    time.sleep(0.6)
    during = console.style("  Discovered", "green", "bold") + " 10 files, 6 Python modules"
    console.line(during)
    time.sleep(0.4)
    console.stop_spinner()
    console.line("Archived")
    text = stream.getvalue()
    assert "Archiving" in text  # it was drawn
    screen = play(text)
    assert screen.lines() == ["  Discovered 10 files, 6 Python modules", "Archived"]
    assert screen.styles_of("Discovered") == {frozenset({"green", "bold"})}
    assert screen.cursor_hidden_once and screen.cursor_visible
    assert screen.at_line_start
    # The line reached the terminal in one piece, not cut by a spinner frame.
    assert "  Discovered\x1b[0m 10 files, 6 Python modules\n" in text


def test_a_fast_step_draws_no_spinner() -> None:
    stream = _Tty()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.start_spinner("Archiving")
    console.stop_spinner()
    assert "Archiving" not in stream.getvalue()
    assert play(stream.getvalue()).cursor_visible


def test_pausing_the_spinner_clears_it_while_uv_draws() -> None:
    stream = _Tty()
    console = Console.create(stream, "auto", env=TERMINAL)
    console.start_spinner("Writing the manifest")
    time.sleep(0.5)
    console.pause_spinner()
    paused_at = len(stream.getvalue())
    time.sleep(0.4)
    assert len(stream.getvalue()) == paused_at  # nothing drawn over uv's own progress
    screen = play(stream.getvalue())
    assert screen.lines() == [] and screen.cursor_visible
    console.start_spinner("Generating handlers")
    time.sleep(0.5)
    assert "Generating handlers" in stream.getvalue()[paused_at:]
    console.stop_spinner()
    assert play(stream.getvalue()).lines() == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_a_build_that_stops_gives_the_terminal_its_cursor_back(
    error: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "main.py").write_text("X = 1\n")
    monkeypatch.chdir(tmp_path)

    def stopping(config: BuildConfig, listener: build_command.PhaseView, **_: object) -> None:
        listener.task_started("handlers")
        time.sleep(0.6)
        raise error

    monkeypatch.setattr(build_command, "run_tasks", stopping)
    out, err = _Tty(), _Tty()
    with pytest.raises(error):
        build_command.build_once(BuildConfig(app_dir=tmp_path), build_command.BuildOptions(), out, err)
    assert "Generating handlers" in out.getvalue()
    screen = play(out.getvalue())
    assert screen.cursor_hidden_once and screen.cursor_visible
    assert screen.lines() == [] and screen.at_line_start
