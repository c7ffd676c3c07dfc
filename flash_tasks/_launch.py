"""The ``flash`` command's entry point: as small as possible, so Ctrl-C during start-up is clean."""

import sys


def main() -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return cli_main()
