"""``flash``: the command line. It parses, runs the build and reports.

Exit codes: 0 success, 1 a problem in the app, 2 a usage error, 3 a
dependency resolution or download failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from . import __version__
from .errors import FlashError, UsageError

EXIT_INTERRUPTED = 130

BUILD_EXAMPLES = """\
examples:
  flash build                          build the app in this folder
  flash build -C path/to/app           build another folder
  flash build --no-deps                install only direct dependencies
  flash build -o my-app.tar.gz         name the artifact (inside .flash/)
  flash build --exclude transformers   leave a large package out (torch & co. always are)
  flash build --python-version 3.11    target Python 3.11 workers
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``UsageError`` (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flash", description="Build Runpod Flash apps into deployable artifacts, incrementally.")
    parser.add_argument("--version", action="version", version=f"flash-tasks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    build = sub.add_parser(
        "build",
        help="build the app: manifest, handlers, dependencies and artifact",
        description="Build the Flash app: .flash/flash_manifest.json, .flash/.build/ and .flash/artifact.tar.gz. "
        "Only the phases whose inputs changed run again.",
        epilog=BUILD_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("-C", "--directory", default=".", metavar="DIR", help="the app folder (default: the current folder)")
    build.add_argument("--no-deps", action="store_true", help="install only direct dependencies, not what they depend on")
    build.add_argument("-o", "--output", default="artifact.tar.gz", metavar="NAME", help="artifact file name inside .flash/ (default: artifact.tar.gz)")
    build.add_argument("--exclude", default="", metavar="A,B", help="comma-separated packages to leave out (torch, torchvision, torchaudio, triton always are)")
    build.add_argument("--python-version", default=None, metavar="X.Y", help="worker Python: 3.10, 3.11 or 3.12 (default: 3.12)")
    build.add_argument("--upgrade", action="store_true", help="resolve dependencies again instead of reusing the locks")
    build.add_argument("--index-url", default=None, metavar="URL", help="package index to resolve from (default: PyPI)")
    build.add_argument("--find-links", action="append", default=[], metavar="DIR|URL", help="extra folder or page of wheels (repeatable)")
    build.add_argument("--no-index", action="store_true", help="use only --find-links locations, no index")
    build.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    build.add_argument("-v", "--verbose", action="store_true", help="show each task run or skipped, and tracebacks")
    return parser


def _print_report(report: object, stream: IO[str]) -> None:
    from .runner import BuildReport

    assert isinstance(report, BuildReport)
    for warning in report.warnings:
        stream.write(warning + "\n")
    artifact = report.artifact
    size = artifact.stat().st_size if artifact.exists() else 0
    try:
        shown = artifact.relative_to(Path.cwd())
    except ValueError:
        shown = artifact
    if report.ran:
        stream.write(f"built {shown} ({size / 1e6:.1f} MB) in {report.seconds:.2f}s: {len(report.ran)} tasks run, {len(report.skipped)} up to date\n")
    else:
        stream.write(f"{shown} is up to date ({size / 1e6:.1f} MB), nothing to do ({report.seconds:.2f}s)\n")


def cmd_build(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .config import BuildConfig
    from .runner import run_tasks

    config = BuildConfig(
        app_dir=Path(args.directory),
        no_deps=args.no_deps,
        output=args.output,
        exclude=tuple(args.exclude.split(",")) if args.exclude else (),
        python_version=args.python_version,
        upgrade=args.upgrade,
        index_url=args.index_url,
        find_links=tuple(args.find_links),
        no_index=args.no_index,
    )
    report = run_tasks(config, verbose_stream=err if args.verbose else None)
    if not args.quiet:
        _print_report(report, out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flash`` command; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv or bool(os.environ.get("FLASH_DEBUG"))
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(out)
            return 2
        if args.command == "build":
            return cmd_build(args, out, err)
        raise UsageError(f"unknown command {args.command!r}")
    except FlashError as exc:
        err.write(exc.render() + "\n")
        if verbose:
            import traceback

            traceback.print_exception(exc, file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("interrupted; the previous artifact was left as it was\n")
        return EXIT_INTERRUPTED


def entry() -> None:
    sys.exit(main())
