"""Endpoint arguments that would exhaust the machine stop with one located error.

Each case is an app whose endpoint argument computes something huge or deep. The
real command runs in a child process that reports its peak memory
(``resource.getrusage``); every case must exit 1 with exactly one
``file:line:col: error:`` line, no traceback, and stay under a few hundred MB.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flash_tasks import evaluator
from flash_tasks.errors import BuildError
from flash_tasks.manifest import BuildOptions, build_manifest
from flash_tasks.scan import scan_source

#: Peak resident memory a refused build may reach (the interpreter and the tool take ~60 MB).
MEMORY_LIMIT_KB = 300 * 1024

WRAPPER = """\
import resource, sys
from flash_tasks.cli import main
code = main(sys.argv[1:])
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"PEAK_KB={peak}", file=sys.stderr)
sys.exit(code)
"""

HEADER = "import os\nfrom runpod_flash import Endpoint, GpuGroup\n"


def chain(n: int) -> str:
    """``C0 = 1`` then ``C1 = C0`` ... : n constants, each defined by the previous one."""
    return "C0 = 1\n" + "".join(f"C{i} = C{i - 1}\n" for i in range(1, n))


def endpoint(arg: str, prelude: str = "", name: str = "'w'") -> str:
    return HEADER + prelude + f"\n\n@Endpoint(name={name}, cpu='cpu3c-1-2', {arg})\ndef work(x):\n    return x\n"


#: (case id, app.py source, text the error message must contain, line of the error or None: any line)
HOSTILE: list[tuple[str, str, str, int | None]] = [
    ("fstring-width", endpoint("env={'A': f'{1:>1500000000}'}"), "width or precision 1500000000", 5),
    ("fstring-emoji-fill", endpoint("env={'A': f'{1:\N{GRINNING FACE}>1500000000}'}"), "width or precision", 5),
    ("fstring-nested-width", endpoint("env={'A': f'{1:>{10**9}}'}"), "width or precision", 5),
    ("format-method-width", endpoint("env={'A': '{:>1500000000}'.format(1)}"), "width or precision", 5),
    ("str-repeat", endpoint("env={'A': 'x' * 10**9}"), "too large", 5),
    ("emoji-repeat", endpoint("env={'A': '\N{GRINNING FACE}' * 10**9}"), "too large", 5),
    ("replace-blowup", endpoint("env={'A': S.replace('x', 'x' * 1000)}", "S = 'x' * 1000000\n"), "too large", 6),
    ("join-blowup", endpoint("env={'A': ','.join([S] * 1000)}", "S = 'x' * 1000000\n"), "too large", 6),
    ("center-width", endpoint("env={'A': 'x'.center(10**10)}"), "too large", 5),
    (
        "dict-of-megabyte-strings-spread-into-env",
        endpoint(
            "env={**BIG}",
            "BIG = {k + str(n): 'x' * 1000000 for k in 'abcdefghijklmnopqrst' for n in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}\n",
        ),
        "bytes",
        3,
    ),
    (
        "list-of-one-string-many-times",
        endpoint("env={'A': str(len(L))}", "L = ['x' * 1000000] * 100000\n"),
        "too large",
        3,
    ),
    (
        "comprehension-explosion",
        endpoint("env={'A': str(len([1 for a in S for b in S for c in S if False]))}", "S = 'x' * 1000\n"),
        "evaluation steps",
        6,
    ),
    ("list-repeat-items", endpoint("dependencies=['x'] * 200000"), "collection would be too large (200,000 > 100,000) items", 5),
    ("dict-comprehension-items", endpoint("env={a + b + c: '' for a in S for b in S for c in S}", "S = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX'\n"), "dict would be too large", 6),
    ("huge-power", endpoint("workers=(10**100) ** 100"), "too large", 5),
    ("huge-int-string", endpoint("workers=int('9' * 100000)"), "int() failed", 5),
    ("constant-chain-5000", endpoint("workers=C4999", chain(5000)), "nested too deeply", None),
    ("nested-brackets", endpoint("workers=" + "(1 + " * 150 + "1" + ")" * 150), "nested too deeply", 5),
    ("sum-100000-terms", endpoint("workers=" + " + ".join(["1"] * 100000)), "too deeply for Python's parser", 1),
    ("unary-100000", endpoint("workers=" + "-" * 100000 + "1"), "too deeply for Python's parser", 1),
]


def run_build(tmp_path: Path, source: str, local_index: Path) -> tuple[int, str, int]:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(source, encoding="utf-8")
    wrapper = tmp_path / "wrap.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(wrapper), "build", "-C", str(app), "--no-index", "--find-links", str(local_index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"^PEAK_KB=(\d+)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout[-2000:]
    return proc.returncode, proc.stdout[: match.start()], int(match.group(1))


@pytest.mark.parametrize(("source", "expected", "line"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_argument_gives_one_located_error_within_memory(
    tmp_path: Path, local_index: Path, source: str, expected: str, line: int | None
) -> None:
    code, output, peak_kb = run_build(tmp_path, source, local_index)
    assert code == 1, output
    assert "Traceback" not in output and "RecursionError" not in output and "MemoryError" not in output
    errors = [ln for ln in output.splitlines() if ": error: " in ln]
    assert len(errors) == 1, output
    assert re.match(rf"^app\.py:{line or '[0-9]+'}:\d+: error: ", errors[0]), errors[0]
    assert expected in output, output
    assert peak_kb < MEMORY_LIMIT_KB, f"peak memory {peak_kb // 1024} MB"


def manifest(source: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    scans = {"app.py": scan_source(textwrap.dedent(source).encode(), "app.py")}
    return build_manifest(scans, BuildOptions(project_name="app"), environ or {})


def test_a_long_flat_sum_is_evaluated_not_refused() -> None:
    """2,000 terms nest 2,000 deep in the ast; Python computes them, and so do we."""
    result = manifest(endpoint("workers=" + " + ".join(["1"] * 2000)))
    assert result.manifest.resources["w"].workersMax == 2000
    text = manifest(endpoint("env={'A': " + " + ".join(["'ab'"] * 2000) + "}")).manifest.resources["w"].env
    assert text == {"A": "ab" * 2000}


def test_a_short_constant_chain_is_followed() -> None:
    result = manifest(endpoint("workers=C40", chain(41)))
    assert result.manifest.resources["w"].workersMax == 1


def test_arguments_of_all_endpoints_together_are_limited() -> None:
    """Each env is under the per-value limit; the manifest would hold all of them."""
    prelude = "E = {k: 'x' * 1000000 for k in 'abcdefg'}\n"
    body = HEADER + prelude + "".join(
        f"\n@Endpoint(name='w{i}', cpu='cpu3c-1-2', env=E)\ndef work{i}(x):\n    return x\n" for i in range(4)
    )
    with pytest.raises(BuildError) as info:
        manifest(body)
    assert "add up to more than" in info.value.message
    assert (info.value.path, info.value.line) == ("app.py", 13)  # the third endpoint, w2
    # Two of them fit.
    body3 = HEADER + prelude + "".join(
        f"\n@Endpoint(name='w{i}', cpu='cpu3c-1-2', env=E)\ndef work{i}(x):\n    return x\n" for i in range(2)
    )
    assert len(manifest(body3).manifest.resources) == 2


def test_scans_recorded_before_functions_were_listed_still_evaluate() -> None:
    """A scan cached by an older build has no "defs"; constants still resolve."""
    scan = scan_source(endpoint("workers=C2", chain(3)).encode(), "app.py")
    del scan["defs"]
    result = build_manifest({"app.py": scan}, BuildOptions(project_name="app"), {})
    assert result.manifest.resources["w"].workersMax == 1


def test_limits_are_sane() -> None:
    """The documented limits keep one value and a whole build far below the machine's memory."""
    assert evaluator.MAX_STR * 4 <= evaluator.MAX_VALUE_SIZE
    assert evaluator.MAX_VALUE_SIZE <= evaluator.MAX_ARGUMENTS_SIZE <= evaluator.MAX_TOTAL_SIZE <= 64_000_000
    assert evaluator.MAX_DEPTH * 6 < sys.getrecursionlimit()
