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
        from .cli import split_command
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    if _interrupted:
        sys.stderr.write("interrupted\n")
        return 130
    building = split_command(sys.argv[1:])[1] == "build"
    if building:
        # A build is a short process that allocates mostly objects that live as long as it
        # does (modules, pydantic's schemas): the cyclic collector ran some 70 times for
        # 20-30 ms of an edit build and freed nothing worth it. ``watch`` turns it back on.
        import gc

        gc.disable()
    code = cli_main()
    if building:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End the process now, without tearing the interpreter down.

    After a build, Python's own shutdown (collecting and clearing the objects of
    some 300 modules, pydantic's schemas among them) took 50 to 100 ms: a fifth
    of an edit build. Nothing a build leaves needs it: its files are closed, its
    threads and subprocesses waited for, doit's record written. Only ``build``
    ends this way; runpod-flash's commands, run in this process, keep their
    exit handlers.
    """
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the reader left (flash build | head) or the stream is closed: nothing more to say
    os._exit(code)
