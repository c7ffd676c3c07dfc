"""A small terminal for tests: what a user would see after some bytes were written to it.

It knows what the CLI's output may contain on a terminal (text, ``\\r``, ``\\n``,
erase-line, cursor up/down/column, cursor show/hide, and SGR colours and weights)
and fails on any other escape sequence, so a test notices new kinds of output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_COLOURS = {30: "black", 31: "red", 32: "green", 33: "yellow", 34: "blue", 35: "magenta", 36: "cyan", 37: "white"}
#: any SGR sequence (colour, weight or reset)
SGR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Screen:
    rows: list[list[tuple[str, frozenset[str]]]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0
    cursor_visible: bool = True
    cursor_hidden_once: bool = False
    _attrs: frozenset[str] = frozenset()

    def lines(self) -> list[str]:
        """The visible text, each line without trailing blanks, without the empty lines at the end."""
        text = ["".join(ch for ch, _ in row).rstrip() for row in self.rows]
        while text and not text[-1]:
            text.pop()
        return text

    def styles_of(self, needle: str) -> set[frozenset[str]]:
        """The sets of styles the characters of the first ``needle`` on screen are shown in."""
        for row in self.rows:
            plain = "".join(ch for ch, _ in row)
            at = plain.find(needle)
            if at >= 0:
                return {attrs for _, attrs in row[at : at + len(needle)]}
        raise AssertionError(f"{needle!r} is not on the screen: {self.lines()}")

    @property
    def at_line_start(self) -> bool:
        """The cursor is at the start of an empty line: no partial line is left."""
        return self.col == 0 and not "".join(ch for ch, _ in self.rows[self.row]).strip()

    def _put(self, ch: str) -> None:
        line = self.rows[self.row]
        while len(line) < self.col:
            line.append((" ", frozenset()))
        if self.col < len(line):
            line[self.col] = (ch, self._attrs)
        else:
            line.append((ch, self._attrs))
        self.col += 1

    def _sgr(self, params: str) -> None:
        attrs = set(self._attrs)
        for code in [int(p) if p else 0 for p in params.split(";")]:
            if code == 0:
                attrs.clear()
            elif code == 1:
                attrs.add("bold")
            elif code == 2:
                attrs.add("dim")
            elif code == 22:
                attrs -= {"bold", "dim"}
            elif code in _COLOURS:
                attrs = {a for a in attrs if a not in _COLOURS.values()} | {_COLOURS[code]}
            elif code == 39:
                attrs -= set(_COLOURS.values())
            else:
                raise AssertionError(f"unexpected SGR code {code} in {params!r}")
        self._attrs = frozenset(attrs)

    def _control(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        if final == "m":
            self._sgr(params)
        elif params.startswith("?"):
            if params != "?25" or final not in "hl":
                raise AssertionError(f"unexpected private mode \\x1b[{params}{final}")
            self.cursor_visible = final == "h"
            self.cursor_hidden_once |= final == "l"
        elif final == "K":
            line = self.rows[self.row]
            if params in ("", "0"):
                del line[self.col :]
            elif params == "2":
                line.clear()
            else:
                raise AssertionError(f"unexpected erase \\x1b[{params}K")
        elif final == "A":
            self.row = max(self.row - count, 0)
        elif final == "B":
            self.row += count
            while len(self.rows) <= self.row:
                self.rows.append([])
        elif final == "G":
            self.col = count - 1
        else:
            raise AssertionError(f"unexpected control sequence \\x1b[{params}{final}")

    def feed(self, data: str) -> Screen:
        pos = 0
        while pos < len(data):
            ch = data[pos]
            if ch == "\x1b":
                match = _CSI.match(data, pos)
                if match is None:
                    raise AssertionError(f"unexpected escape at {pos}: {data[pos : pos + 10]!r}")
                self._control(match.group(1), match.group(2))
                pos = match.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":  # a terminal's output post-processing turns it into CR LF
                self.row += 1
                self.col = 0
                while len(self.rows) <= self.row:
                    self.rows.append([])
            elif ch < " ":
                raise AssertionError(f"unexpected control character {ch!r}")
            else:
                self._put(ch)
            pos += 1
        return self


def play(data: str) -> Screen:
    """The screen after ``data`` was written to a fresh terminal."""
    return Screen().feed(data)
