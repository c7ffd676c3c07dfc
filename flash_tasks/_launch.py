"""The ``flash`` command's entry point: as small as possible, so Ctrl-C during start-up is clean."""

import sys
from typing import Any

_interrupted = False


def _quiet_interrupts(unraisable: Any) -> None:
    """A Ctrl-C that lands where Python cannot raise it (pydantic builds validators in C while
    modules import) is printed as "Exception ignored ..." with a traceback; note it instead."""
    global _interrupted
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _interrupted = True
        return
    sys.__unraisablehook__(unraisable)


def main() -> int:
    sys.unraisablehook = _quiet_interrupts
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    if _interrupted:
        sys.stderr.write("interrupted\n")
        return 130
    return cli_main()
