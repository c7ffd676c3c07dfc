"""The bytes commands/output.py writes, where a general-purpose terminal library writes others.

Each test pins one thing a user sees (or a terminal receives) that rich 15 does
differently: tables are neither padded at the end of a line nor cut to the width
of a pipe, ``NO_COLOR`` drops bold and dim too, ``FORCE_COLOR=0`` does not force,
``CLICOLOR_FORCE`` does, and a style names its colour before its weight.
"""

from __future__ import annotations

import io

import pytest

from flash_tasks.commands.output import Console, render_table


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


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


def test_table_header_is_bold_only_when_colour_is_on() -> None:
    coloured = io.StringIO()
    Console(coloured, color=True).table(["a", "b"], [["1", "2"]])
    assert coloured.getvalue() == "  \x1b[1ma  b\x1b[0m\n  1  2\n"
    plain = io.StringIO()
    Console(plain, color=False).table(["a", "b"], [["1", "2"]])
    assert plain.getvalue() == "  a  b\n  1  2\n"


def test_styles_put_the_colour_before_the_weight() -> None:
    console = Console(io.StringIO(), color=True)
    assert console.style("Built", "green", "bold") == "\x1b[32;1mBuilt\x1b[0m"
    assert console.style("hint:", "cyan", "bold") == "\x1b[36;1mhint:\x1b[0m"
    assert console.dim("waiting") == "\x1b[2mwaiting\x1b[0m"


@pytest.mark.parametrize(
    ("env", "styled"),
    [
        ({"NO_COLOR": "1", "TERM": "xterm"}, False),  # no bold or dim either, not just no colour
        ({"TERM": "xterm"}, True),
    ],
)
def test_no_color_drops_every_style_on_a_terminal(env: dict[str, str], styled: bool) -> None:
    stream = _Tty()
    console = Console.create(stream, "auto", env=env)
    console.line(console.bold("Built") + " " + console.dim("(cached)"))
    expected = "\x1b[1mBuilt\x1b[0m \x1b[2m(cached)\x1b[0m\n" if styled else "Built (cached)\n"
    assert stream.getvalue() == expected


@pytest.mark.parametrize(
    ("env", "styled"),
    [
        ({"FORCE_COLOR": "0"}, False),
        ({"FORCE_COLOR": "1"}, True),
        ({"CLICOLOR_FORCE": "1"}, True),
        ({"CLICOLOR_FORCE": "0"}, False),
    ],
)
def test_forcing_colour_into_a_pipe(env: dict[str, str], styled: bool) -> None:
    stream = io.StringIO()
    console = Console.create(stream, "auto", env=env)
    console.line(console.style("Built", "green", "bold"))
    assert stream.getvalue() == ("\x1b[32;1mBuilt\x1b[0m\n" if styled else "Built\n")
