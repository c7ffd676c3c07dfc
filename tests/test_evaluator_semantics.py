"""The evaluator computes what Python computes, and refuses the rest at the right place.

Expectations come from Python itself: each accepted expression is also run by ``eval``
(after ``exec`` of the same module-level prelude), and the two results, shown as
``str([value])`` so that types show too (``'1'`` vs ``1``, ``True`` vs ``1``), must be
equal. Refused expressions must name the offending part of the line by its column.
"""

from __future__ import annotations

import json
import textwrap
import tracemalloc
from typing import Any

import pytest

from flash_tasks import evaluator_values
from flash_tasks.errors import BuildError
from flash_tasks.manifest import BuildOptions, build_manifest
from flash_tasks.scan import scan_source

HEADER = "import os\nfrom runpod_flash import Endpoint, GpuGroup, DataCenter, NetworkVolume, PodTemplate\n"


def build(files: dict[str, str], environ: dict[str, str] | None = None) -> Any:
    scans = {rel: scan_source(textwrap.dedent(text).encode(), rel) for rel, text in files.items()}
    return build_manifest(scans, BuildOptions(project_name="app"), environ or {})


def endpoint_line(expr: str) -> str:
    return f"@Endpoint(name='w', env={{'V': str([{expr}])}})"


def source(expr: str, prelude: str = "") -> str:
    return HEADER + prelude + endpoint_line(expr) + "\ndef work(x):\n    return x\n"


def ours(expr: str, prelude: str = "", environ: dict[str, str] | None = None, files: dict[str, str] | None = None) -> str:
    """``str([expr])`` as the build computes it, read back from the manifest."""
    result = build({"app.py": source(expr, prelude), **(files or {})}, environ)
    value: str = result.manifest.resources["w"].env["V"]
    return value


def python(expr: str, prelude: str = "") -> str:
    """``str([expr])`` as Python computes it after running the prelude."""
    namespace: dict[str, Any] = {}
    exec(prelude, namespace)
    return str(eval(f"[{expr}]", namespace))


def refusal(expr: str, prelude: str = "", environ: dict[str, str] | None = None,
            files: dict[str, str] | None = None) -> BuildError:
    with pytest.raises(BuildError) as info:
        build({"app.py": source(expr, prelude), **(files or {})}, environ)
    return info.value


def assert_refused_at(err: BuildError, expr: str, prelude: str, snippet: str, fragment: str) -> None:
    """The message says ``fragment`` and points at ``snippet``: its line, its column, its text."""
    line = endpoint_line(expr)
    assert err.message.startswith(fragment), err.message
    assert err.message.endswith(f" (in `{snippet}`)"), err.message
    assert err.path == "app.py"
    assert err.line == (HEADER + prelude).count("\n") + 1, (err.line, err.message)
    assert err.col == line.index(snippet) + 1, (err.col, line.index(snippet) + 1, err.message)


# -- what Python computes, we compute ----------------------------------------------------------------------

S = "S = 'Hello, World'\nN = 7\nL = [3, 1, 2]\nD = {'b': 2, 'a': 1}\nT = ('x', 'y')\n"

EQUIVALENT: list[tuple[str, str]] = [
    # literals and containers
    ("[1, 'a', None, True, 2.5, (1, 2), {'k': [1]}]", ""),
    ("[*[1, 2], *(3,), 4, *L]", S),
    ("(*T, *L)", S),
    ("{**D, 'c': 3, **{'a': 9}}", S),
    ("{'a': 1, 'a': 2}", ""),
    ("{1: 'x', 2.5: 'y', True: 'z'}", ""),
    # arithmetic
    ("N + 3, N - 10, N * 3, N / 2, N // 2, N % 3, N ** 2, -N // 2, -N % 3", S),
    ("2 ** -1, 2.0 ** 3, 7.5 // 2, 7.5 % 2, 1 | 6, 0 | 0", ""),
    ("{'a': 1} | {'b': 2, 'a': 3}", ""),
    ("2 ** 128, (-2) ** 127, 2 ** -128", ""),
    ("(2 ** 31) ** 128", ""),
    ("S + '!', S * 2, 2 * S, L * 2, 2 * L, T + T, T * 0, L + [4]", S),
    ("1 + 2 + 3 - 4 * 5 + 6 // 4 - 7 % 3", ""),
    ("'a' + 'b' + 'c' + 'd'", ""),
    # unary and boolean
    ("-N, +N, -2.5, +2.5, not N, not 0, not '', not 'x', not [], - -N", S),
    ("0 or '' or 'z', 1 and 2 and 0, 1 and 'y', 0 or [], 0 and 1, 'a' or 1", ""),
    ("N > 3 and S or L", S),
    # comparisons
    ("1 < 2 < 3, 1 < 3 < 2, 3 > 2 == 2, 2 >= 2 > 1, 2 <= 1, 1 != 1, 1 != 2", ""),
    ("'a' < 'b', [1, 2] < [1, 3], (1,) == (1,), 'x' in S, 'H' in S, 2 in L, 9 not in L, 'a' in D", S),
    ("None is None, N is not None, None is not None, 1 == 1.0, 3 > 2 > 5 > 0", S),
    ("'yes' if N > 5 else 'no', 'yes' if not L else 'no', 1 if '' else 2 if 0 else 3", S),
    # subscripts and slices
    ("S[0], S[-1], S[1:4], S[:3], S[7:], S[::2], S[::-1], S[-5:-1], S[1:10:3], L[1], D['a'], T[-1]", S),
    ("L[:], L[2:0:-1], T[0:1], [1, 2, 3][1:][0]", S),
    # f-strings
    ("f'{S}|{N:>4}|{N:<4}|{N:^5}|{N:04}|{2.5:.3f}|{N!r}|{S!s:>15}|{\"é\"!a}|{\"x\"!r}'", S),
    ("f'{N:{N}}|{S:{\"*\"}^{N + 10}}|{N:x}|{255:#06x}|{1234567:,}'", S),
    ("f'{True}{None}{1.5e3}'", ""),
    ("f'{S[0]}{L[0]}' f'{N}' '-plain-'", S),
    # builtins
    ("str(N), int('42'), int(3.9), int('-7'), float('2.5'), bool(''), bool('x'), len(S), len(L)", S),
    ("min(L), max(L), min(3, 1, 2), max('ab', 'b'), abs(-N), round(2.567, 1), round(2.5)", S),
    ("sorted(L), sorted(D), sorted(S), sorted(L, reverse=True), list(T), tuple(L), list(D), dict(a=1)", S),
    ("sum(L), sum([1.5, 2]), sum(L, 10), any([]), any([0, 1]), all([1, 0]), all([])", S),
    ("list(range(5)), list(range(2, 9, 3)), list(range(5, 0, -2)), list(range(0))", ""),
    ("list(enumerate('ab')), list(enumerate(L, 5)), list(zip(L, S)), list(zip(L, T, 'abc'))", S),
    ("list(reversed(L)), list(reversed(S[:3])), list(reversed(T))", S),
    ("dict(zip('ab', [1, 2])), dict([('x', 1)], y=2), max(*L), min(*L, 0)", S),
    # methods
    ("S.lower(), S.upper(), S.title(), S.swapcase(), S.casefold(), S.capitalize(), '  x  '.strip()", S),
    ("S.replace('l', 'L'), S.replace('l', 'L', 1), S.replace('l', '', -1), S.replace('', '.'), 'ab'.replace('', '-', 2)", S),
    ("S.split(', '), S.split(), S.rsplit('o', 1), 'a\\nb'.splitlines(), S.partition(','), S.rpartition('o')", S),
    ("'-'.join(str(L[i]) + 'x' for i in range(2)), ','.join(T), ''.join([]), '-'.join('abc'), S.join(['1', '2'])", S),
    ("S.startswith('He'), S.endswith(('x', 'd')), S.find('o'), S.rfind('o'), S.index('W'), S.count('l')", S),
    ("S.removeprefix('Hello'), S.removesuffix('World'), '7'.zfill(4), 'x'.ljust(3, '.'), 'x'.rjust(3), 'x'.center(6, '*')", S),
    ("'12'.isdigit(), 'ab'.isalpha(), 'a1'.isalnum(), ' '.isspace(), 'a'.islower(), 'A'.isupper(), 'x_1'.isidentifier()", S),
    ("'½'.isnumeric(), '1'.isdecimal(), 'Ab Cd'.istitle(), 'é'.isascii(), S.lstrip('H'), S.rstrip('d')", S),
    ("D.get('a'), D.get('z'), D.get('z', 0), list(D.keys()), list(D.values()), list(D.items()), D.copy()", S),
    ("L.index(2), L.count(1), T.index('y'), T.count('x'), L.copy()", S),
    ("'a,b'.split(sep=','), 'a b c'.split(maxsplit=1)", S),
    ("'{}-{}'.format(N, S), '{1}{0}{1}'.format('a', 'b'), '{x}{y}'.format(x=1, y='2'), '{{}}{}'.format(1)", S),
    ("'{:>6}|{:.2f}|{!r}|{:{}}|{:>{w}}|'.format('a', 3.14159, 'q', 'b', 3, 'c', w=4)", ""),
    ("'{0:{1}}|{0!s:>{1}}'.format('z', 5), '{}'.format(True), ''.format(), 'plain'.format(1)", ""),
    ("'{:>{w}}|{x:{w}}'.format('c', w=4, x='y'), '{!r}{!s}{!a}'.format('q', 1, 'é')", ""),
    ("'{:{:d}}'.format('a', 5), '{:{}}{}'.format('a', 3, 'b')", ""),
    ("int('ff', base=16), int('11', 2), int(' 7 ')", ""),
    # comprehensions
    ("[x * 2 for x in L if x != 2], [c for c in S if c.isupper()], [k for k in D], [x for x in L if x if x > 1]", S),
    ("[(a, b) for a in 'xy' for b in range(2)], [a + b for a, b in [('p', 'q'), ('r', 's')]]", ""),
    ("[a + b + c for a, (b, c) in [('1', '23'), ('4', ['5', '6'])]], [x for [x, y] in ['ab', 'cd']]", ""),
    ("{k: v * 2 for k, v in D.items()}, {c: i for i, c in enumerate(S[:3])}, {i: 1 for i in L if i > 1}", S),
    ("sorted({c for c in S}), sorted(c for c in S if c != 'l'), sum(x for x in L), sorted(set(L))", S),
    ("[[y for y in range(x)] for x in range(3)], [x for x in [y for y in range(4)] if x % 2]", ""),
    ("[x for x in range(3)], [x for x in 'abc'], [x for x in ('a', 1)], [x for x in {'k': 1, 'j': 2}]", ""),
]


@pytest.mark.parametrize(("expr", "prelude"), EQUIVALENT, ids=[e[0][:40] for e in EQUIVALENT])
def test_accepted_expressions_compute_what_python_computes(expr: str, prelude: str) -> None:
    assert ours(expr, prelude) == python(expr, prelude)


def test_sets_keep_their_first_seen_order() -> None:
    """Sets come out as lists in first-seen order, so builds are reproducible."""
    expected = str([list(dict.fromkeys("banana")), list(dict.fromkeys([3, 1, 3, 2, 1]))])
    assert ours("{c for c in 'banana'}, {3, 1, 3, 2, 1}") == expected
    assert ours("set('banana'), set([3, 1, 3, 2, 1])") == expected
    assert ours("set()") == "[[]]"


def test_enum_members_as_values() -> None:
    """A str-enum member behaves as its value: in f-strings, str(), dict keys and formats."""
    expected = str(["EU-RO-1", "EU-RO-1|ADA_24", {"EU-RO-1": 1}, "   EU-RO-1", True, True, "ADA_24", "EU_RO_1"])
    expr = ("f'{DataCenter.EU_RO_1}', f'{DataCenter[\"EU_RO_1\"]}|{GpuGroup(\"ADA_24\")}', {DataCenter.EU_RO_1: 1},"
            " f'{DataCenter.EU_RO_1:>10}', DataCenter('EU-RO-1') == DataCenter.EU_RO_1,"
            " GpuGroup(GpuGroup.ADA_24) == GpuGroup.ADA_24, GpuGroup.ADA_24.value, DataCenter['EU_RO_1'].name")
    assert ours(expr) == expected


def test_dict_holds_sdk_values_as_a_literal_does() -> None:
    """Settings written as dict(...) to be unpacked into Endpoint(**...) hold enum members."""
    literal = ours("{'gpu': [GpuGroup.ADA_24], 'datacenter': DataCenter.EU_RO_1, 'n': 2}")
    assert ours("dict(gpu=[GpuGroup.ADA_24], datacenter=DataCenter.EU_RO_1, n=2)") == literal
    assert ours("dict({'gpu': [GpuGroup.ADA_24]}, datacenter=DataCenter.EU_RO_1, n=2)") == literal
    assert "member='ADA_24'" in literal and "member='EU_RO_1'" in literal


# -- module constants: the value Python would see when the decorator runs ------------------------------------

MODULE_CASES: list[tuple[str, str]] = [
    ("A, B", "A = 1\nB = A + 1\nA = 5\n"),
    ("A", "A = 1\nA = A + 1\nA = A * 10\n"),
    ("[A for A in 'xy'], A", "A = 3\n"),
    ("{k: A for k in 'ab'}, A", "A = 'z'\nA = A + A\n"),
    ("X, Y", "X = 1\nY = X\nX = 2\nY = Y + X\n"),
    ("len(S), str(N), sorted(L)", S),
]


@pytest.mark.parametrize(("expr", "prelude"), MODULE_CASES)
def test_constants_have_the_value_they_have_when_the_decorator_runs(expr: str, prelude: str) -> None:
    after = "A = 'later'\nX = 'later'\nN = 0\n"
    result = build({"app.py": source(expr, prelude) + after})
    assert result.manifest.resources["w"].env["V"] == python(expr, prelude)


def test_constants_imported_from_other_modules() -> None:
    files = {
        "helpers.py": "BASE = 'b'\nNAME = BASE + '-x'\nBASE = 'c'\n",
        "pkg/__init__.py": "",
        "pkg/consts.py": "from helpers import NAME as HN\nVALUE = HN.upper()\nimport helpers\nALSO = helpers.BASE\n",
    }
    prelude = "import helpers\nimport pkg.consts\nfrom pkg.consts import VALUE, ALSO as Z\nfrom pkg import consts\n"
    expr = "helpers.NAME, helpers.BASE, VALUE, Z, pkg.consts.HN, consts.VALUE"
    assert ours(expr, prelude, files=files) == str(["b-x", "c", "B-X", "c", "b-x", "B-X"])


def test_environment_reads() -> None:
    environ = {"SET": "value", "EMPTY": ""}
    expr = ("os.environ.get('SET'), os.environ.get('UNSET'), os.environ.get('UNSET', 'd'), os.getenv('EMPTY', 'd'),"
            " os.getenv('SET', 'd'), 'SET' in os.environ, 'UNSET' in os.environ, 'UNSET' not in os.environ,"
            " 'EMPTY' not in os.environ, os.environ['SET']")
    result = build({"app.py": source(expr)}, environ)
    assert result.manifest.resources["w"].env["V"] == str(
        ["value", None, "d", "", "value", True, False, True, False, "value"]
    )
    assert {k: result.env_used[k] for k in ("SET", "UNSET", "EMPTY")} == {"SET": "value", "UNSET": None, "EMPTY": ""}


def test_environment_through_imported_names() -> None:
    prelude = "from os import environ, getenv\nimport os as o\n"
    expr = "environ.get('A'), getenv('B', 'dflt'), o.environ['A'], 'A' in environ"
    assert ours(expr, prelude, {"A": "1"}) == str(["1", "dflt", "1", True])


# -- refused, with the offending part located ---------------------------------------------------------------

REFUSED: list[tuple[str, str, str, str]] = [
    # (expression, prelude, offending snippet, message fragment)
    ("b'x'", "", "b'x'", "bytes values are not supported here"),
    ("1 + 2j", "", "2j", "complex values are not supported here"),
    ("[...]", "", "...", "ellipsis values are not supported here"),
    ("[1, *'ab']", "", "*'ab'", "only lists and tuples can be unpacked with *"),
    ("{'a': 1, **L}", "L = [1]\n", "L", "only dicts can be unpacked with **"),
    ("{(1, 2): 3}", "", "(1, 2)", "dict keys must be strings or numbers"),
    ("{k: 1 for k in [None]}", "", "k", "dict keys must be strings or numbers"),
    ("[a for a, b in [(1, 2, 3)]]", "", "a, b", "cannot unpack (1, 2, 3) into 2 names"),
    ("[a for a, b in [5]]", "", "a, b", "cannot unpack 5 into 2 names"),
    ("[a for a, *b in ['xyz']]", "", "a, *b", "loop variables must be plain names or tuples of names"),
    ("[1 for x in 5]", "", "5", "cannot loop over a int at build time"),
    ("[1 for x in GpuGroup.ADA_24]", "", "GpuGroup.ADA_24", "cannot loop over a GpuGroup at build time"),
    ("GpuGroup.ADA_24 + 'x'", "", "GpuGroup.ADA_24", "operators work on plain values only, not on a GpuGroup"),
    ("'x' + GpuGroup.ADA_24", "", "GpuGroup.ADA_24", "operators work on plain values only, not on a GpuGroup"),
    ("2 ** 129", "", "2 ** 129", "exponent is too large"),
    ("2 ** -129", "", "2 ** -129", "exponent is too large"),
    ("(2 ** 32) ** 128", "", "(2 ** 32) ** 128", "number is too large (more than 4096 bits)"),
    ("'%s' % 1", "", "'%s' % 1", "use an f-string instead of % formatting"),
    ("1 << 2", "", "1 << 2", "the LShift operator is not supported here"),
    ("-'x'", "", "-'x'", "unary operators work on numbers only"),
    ("-True", "", "-True", "unary operators work on numbers only"),
    ("~1", "", "~1", "this unary operator is not supported here"),
    ("GpuGroup < 1", "", "GpuGroup < 1", "a GpuGroup cannot be compared at build time"),
    ("1 < GpuGroup", "", "1 < GpuGroup", "a GpuGroup cannot be compared at build time"),
    ("os.environ[1]", "", "os.environ[1]", "environment variable names must be strings"),
    ("1 in os.environ", "", "1 in os.environ", "environment variable names must be strings"),
    ("os.environ['NOPE_UNSET']", "", "os.environ['NOPE_UNSET']", "environment variable 'NOPE_UNSET' is not set"),
    ("DataCenter['EU_RO_9']", "", "DataCenter['EU_RO_9']", "DataCenter has no member 'EU_RO_9'"),
    ("DataCenter[1]", "", "DataCenter[1]", "DataCenter has no member 1"),
    ("N[0]", "N = 5\n", "N", "a int cannot be indexed at build time"),
    ("GpuGroup.ADA_99", "", "GpuGroup.ADA_99", "GpuGroup has no member 'ADA_99'"),
    ("NetworkVolume.size", "", "NetworkVolume.size", "NetworkVolume.size cannot be used here"),
    ("DataCenter.EU_RO_1.lower", "", "DataCenter.EU_RO_1.lower", "DataCenter.EU_RO_1.lower is not supported here"),
    ("os.path", "", "os.path", "os.path cannot be used here"),
    ("os.environ.keys()", "", "os.environ.keys", "os.environ.keys cannot be used here"),
    ("'x'.encode()", "", "'x'.encode", "str.encode cannot be used at build time"),
    ("[1].append(2)", "", "[1].append", "list.append cannot be used at build time"),
    ("len.x", "", "len.x", "attribute 'x' cannot be read at build time"),
    ("os.getenv()", "", "os.getenv()", "os.getenv takes a name and an optional default"),
    ("os.environ.get('A', 'b', 'c')", "", "os.environ.get('A', 'b', 'c')", "os.environ.get takes a name and an optional default"),
    ("os.getenv('A', default='b')", "", "os.getenv('A', default='b')", "os.getenv takes a name and an optional default"),
    ("str(GpuGroup)", "", "str(GpuGroup)", "str() works on plain values only, not on a GpuGroup"),
    ("len(x=DataCenter)", "", "len(x=DataCenter)", "len() works on plain values only, not on a DataCenter"),
    ("'x'.startswith(GpuGroup)", "", "'x'.startswith(GpuGroup)", ".startswith() works on plain values only, not on a GpuGroup"),
    ("dict(**{1: 2})", "", "{1: 2}", "only dicts with string keys can be unpacked with **"),
    ("dict(**[1])", "", "[1]", "only dicts with string keys can be unpacked with **"),
    ("dict(a=1, **{'a': 2})", "", "{'a': 2}", "the argument 'a' is given twice"),
    ("dict(**{'a': 1}, a=2)", "", "2", "the argument 'a' is given twice"),
    ("NetworkVolume('x')", "", "NetworkVolume('x')", "pass NetworkVolume arguments by keyword"),
    ("GpuGroup('ADA_99')", "", "GpuGroup('ADA_99')", "'ADA_99' is not a valid GpuGroup"),
    ("GpuGroup()", "", "GpuGroup()", "function calls cannot be evaluated at build time"),
    ("GpuGroup('ADA_24', 1)", "", "GpuGroup('ADA_24', 1)", "function calls cannot be evaluated at build time"),
    ("[x async for x in 'ab']", "", "'ab'", "async comprehensions cannot be evaluated at build time"),
    ("'{0.real}'.format(1)", "", "'{0.real}'.format(1)", ".format() failed: only plain fields like {}, {0} or {name} are supported, not {0.real}"),
    ("'{2}'.format(1)", "", "'{2}'.format(1)", ".format() failed: no positional argument 2"),
    ("'{1}'.format('a')", "", "'{1}'.format('a')", ".format() failed: no positional argument 1"),
    ("'{:q}'.format(1)", "", "'{:q}'.format(1)", "bad format: Unknown format code 'q' for object of type 'int'"),
    ("'{a}'.format(b=1)", "", "'{a}'.format(b=1)", ".format() failed: no argument named 'a'"),
    ("'{:{:{}}}'.format(1, 2, 3)", "", "'{:{:{}}}'.format(1, 2, 3)", ".format() failed: format specs nest too deeply"),
    ("sum(['a'])", "", "sum(['a'])", "sum() failed: sum() adds numbers only here"),
    ("sum([1], True)", "", "sum([1], True)", "sum() failed: sum() adds numbers only here"),
    ("range(1.5)", "", "range(1.5)", "range() failed: range() takes integers"),
    ("range(True)", "", "range(True)", "range() failed: range() takes integers"),
    ("int('9' * 5001)", "", "int('9' * 5001)", "int() failed: the string has too many digits"),
    ("Q", "", "Q", "'Q' is not defined at module level in app.py"),
    ("math.pi", "import math\n", "math", "module 'math' comes from outside the app"),
    ("pi", "from math import pi\n", "pi", "'math.pi' comes from outside the app"),
    ("helpers.nothing", "import helpers\n", "helpers.nothing", "'nothing' is not a module-level constant of 'helpers'"),
    ("(lambda: 1)", "", "lambda: 1", "cannot evaluate lambda expressions at build time"),
    ("runpod_flash.Secret", "import runpod_flash\n", "runpod_flash.Secret", "runpod_flash.Secret cannot be used in endpoint arguments"),
]


HINTS = {
    "(lambda: 1)": evaluator_values.WHAT_WORKS,
    "Q": evaluator_values.WHAT_WORKS,
    "runpod_flash.Secret": evaluator_values.WHAT_WORKS,
    "math.pi": evaluator_values.WHAT_WORKS,
    "pi": evaluator_values.WHAT_WORKS,
    "helpers.nothing": evaluator_values.WHAT_WORKS,
    "[1 for x in 5]": "loop over a list, tuple, dict or string",
    "os.environ['NOPE_UNSET']": "set NOPE_UNSET before building, or use os.environ.get('NOPE_UNSET', 'default')",
}


@pytest.mark.parametrize(("expr", "prelude", "snippet", "fragment"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_refused_expressions_name_the_offending_part(expr: str, prelude: str, snippet: str, fragment: str) -> None:
    files = {"helpers.py": "X = 1\n"}
    err = refusal(expr, prelude, files=files)
    assert_refused_at(err, expr, prelude, snippet, fragment)
    if expr in HINTS:
        assert err.hint == HINTS[expr]


@pytest.mark.parametrize(
    "expr",
    ["1 / 0", "1 // 0", "1 % 0", "[1] + (2,)", "'a' - 'b'", "[1] * 1.5", "1e300 ** 2"],
)
def test_operator_failures_say_what_python_says(expr: str) -> None:
    with pytest.raises((ArithmeticError, TypeError, ValueError)) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", expr, f"cannot compute this: {python_error.value}")


@pytest.mark.parametrize(
    ("expr", "snippet"),
    [("1 < 'a'", "1 < 'a'"), ("[1] > 'a'", "[1] > 'a'"), ("1 in 2", "1 in 2")],
)
def test_comparison_failures_say_what_python_says(expr: str, snippet: str) -> None:
    with pytest.raises(TypeError) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", snippet, f"cannot compare: {python_error.value}")


@pytest.mark.parametrize(("expr", "snippet"), [("[1][5]", "[1][5]"), ("{'a': 1}['b']", "{'a': 1}['b']"), ("'ab'['x']", "'ab'['x']")])
def test_lookup_failures_say_what_python_says(expr: str, snippet: str) -> None:
    with pytest.raises((KeyError, IndexError, TypeError)) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", snippet, f"lookup failed: {python_error.value!r}")


@pytest.mark.parametrize(
    ("expr", "name"),
    [("int('x')", "int"), ("int('9' * 5000)", "int"), ("int('-' + '1' * 4999)", "int"), ("float('y')", "float"), ("max([])", "max"), ("round(1.5, 'x')", "round"), ("dict(1)", "dict")],
)
def test_builtin_failures_say_what_python_says(expr: str, name: str) -> None:
    with pytest.raises((TypeError, ValueError)) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", expr, f"{name}() failed: {python_error.value}")


@pytest.mark.parametrize(("expr", "method"), [("'abc'.index('z')", "index"), ("'a'.center('x')", "center"), ("{'a': 1}.keys(1)", "keys"),
                                              ("{'a': 1}.items(x=1)", "items"),
                                              ("'a'.join([1])", "join"), ("[1].index(2)", "index")])
def test_method_failures_say_what_python_says(expr: str, method: str) -> None:
    with pytest.raises((TypeError, ValueError)) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", expr, f".{method}() failed: {python_error.value}")


@pytest.mark.parametrize(("expr", "snippet"), [("'{}{0}'.format(1, 2)", "'{}{0}'.format(1, 2)"),
                                               ("'{0}{}'.format(1, 2)", "'{0}{}'.format(1, 2)")])
def test_format_numbering_switches_say_what_python_says(expr: str, snippet: str) -> None:
    with pytest.raises(ValueError) as python_error:
        eval(expr)
    err = refusal(expr)
    assert_refused_at(err, expr, "", snippet, f".format() failed: {python_error.value}")


@pytest.mark.parametrize(("value", "spec"), [("1", "q"), ("1", ".2d"), ("'x'", "=5"), ("2.5", "d")])
def test_bad_format_specs_say_what_python_says(value: str, spec: str) -> None:
    with pytest.raises(ValueError) as python_error:
        format(eval(value), spec)
    prelude = f"V = {value}\n"
    expr = f"f'{{V:{spec}}}'"
    err = refusal(expr, prelude)
    assert f"bad format: {python_error.value}" in err.message, err.message
    # The f-string (Python 3.11 places its fields there) or the field itself.
    assert err.col in (endpoint_line(expr).index("f'") + 1, endpoint_line(expr).index("V:") + 1), err.col
    assert "V:" in err.message


def test_a_call_to_an_app_function_through_its_attribute() -> None:
    err = refusal("pick.x", "def pick():\n    return 1\n")
    assert_refused_at(err, "pick.x", "def pick():\n    return 1\n", "pick.x", "pick.x belongs to 'pick', which the app defines")
    assert err.hint is not None and "pick() returns as a constant" in err.hint
    assert "ENV = 3" in err.hint and "pass env=ENV" in err.hint


def test_the_whole_expression_is_quoted_without_in() -> None:
    """When the offending part is the whole argument, the message quotes it once."""
    src = HEADER + "@Endpoint(name='w', workers=2 ** 200)\ndef work(x):\n    return x\n"
    with pytest.raises(BuildError) as info:
        build({"app.py": src})
    assert info.value.message == "exponent is too large (`2 ** 200`)"
    assert (info.value.line, info.value.col) == (3, src.splitlines()[2].index("2 **") + 1)


def test_long_snippets_are_shortened_to_80_characters() -> None:
    inner = "(" + " + ".join(["'abcdefghij'"] * 10) + ") - 1"
    err = refusal(inner)
    shown = err.message.split("`")[1]
    assert len(shown) == 80 and shown.endswith("...")
    assert inner.startswith(shown[:-3])


def test_multiline_snippets_are_shown_on_one_line_and_located_on_their_line() -> None:
    src = HEADER + "@Endpoint(name='w', env={'V': str([1,\n    2 ** 200,\n  3])})\ndef work(x):\n    return x\n"
    with pytest.raises(BuildError) as info:
        build({"app.py": src})
    assert "exponent is too large (in `2 ** 200`)" in info.value.message
    assert (info.value.line, info.value.col) == (4, 5)


def test_columns_count_characters_not_bytes() -> None:
    expr = "'ééé' + GpuGroup.ADA_24"
    err = refusal(expr)
    assert_refused_at(err, expr, "", "GpuGroup.ADA_24", "operators work on plain values only")


# -- limits: just under is computed, just over is refused ---------------------------------------------------

BIG = "K = 'k' * 1000\nH = 'h' * 500000\n"

LIMITS: list[tuple[str, str | None]] = [
    # (expression, None if accepted else the message fragment); strings may have 1,000,000 characters
    ("len('ab' * 500000)", None),
    ("len('ab' * 500001)", "string would be too large (1,000,002 > 1,000,000) characters"),
    ("len(500001 * 'ab')", "string would be too large (1,000,002 > 1,000,000) characters"),
    ("len(H + H)", None),
    ("len(H + H + 'x')", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len(f'{H}{H}')", None),
    ("len(f'{H}{H}x')", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len(f'{H}x{H}')", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len(f'{H:>1000000}')", None),
    ("len(f'{H:>1000001}')", "bad format: width or precision 1000001 is larger than 1,000,000"),
    ("len(f'{1:.10000000}')", "bad format: width or precision 10000000 is larger than 1,000,000"),
    ("len('{}{}'.format(H, H))", None),
    ("len('{}{}x'.format(H, H))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len('{}{}{}'.format(H, H, 1))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len('x'.center(1000000))", None),
    ("len('x'.center(1000001))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len('x'.zfill(1000001))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len('x'.ljust(1000001, '-'))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len(K.replace('k', 'r' * 1000))", None),
    ("len(K.replace('k', 'r' * 1001))", "string would be too large (1,001,000 > 1,000,000) characters"),
    ("len(K.replace('k', 'r' * 2000, 500))", "string would be too large (1,000,500 > 1,000,000) characters"),
    ("len(K.replace('k', 'r' * 2000, 499))", None),
    ("len(K.replace('k', 'r' * 1001, -1))", "string would be too large (1,001,000 > 1,000,000) characters"),
    ("len(K[1:].replace('', 'r' * 999))", None),
    ("len(K[1:].replace('', 'r' * 1000))", "string would be too large (1,000,999 > 1,000,000) characters"),
    ("len(K.replace('kk', 'r' * 2000))", None),
    ("len('-'.join([K] * 999 + ['k']))", None),
    ("len('-'.join([K] * 999 + ['kk']))", "string would be too large (1,000,001 > 1,000,000) characters"),
    ("len('--'.join([K[1:]] * 1000))", "string would be too large (1,000,998 > 1,000,000) characters"),
    ("int('9' * 1000) > 0", None),
    ("int('9' * 5001)", "int() failed: the string has too many digits"),
    ("len(str(2 ** 128 * 2 ** 128))", None),
    ("(2 ** 128) ** 31 * 2 ** 127 > 0", None),
    ("(2 ** 128) ** 31 * 2 ** 127 * 2 > 0", "number is too large (more than 4096 bits)"),
    ("(2 ** 128) ** 31 * 2 ** 127 * 2 // 4 > 0", "number is too large (more than 4096 bits)"),
    ("len(K.replace('k', 'r' * 2000, 0))", None),
    ("len(str([K] * 990))", None),
    ("len(str([K] * 1000))", f"string would be too large ({len(str(['k' * 1000] * 1000)):,} > 1,000,000) characters"),
    ("len(list(K * 100))", None),
    ("len(list(K * 101))", "collection would be too large (101,000 > 100,000) items"),
    ("H.startswith((H, H))", None),
    ("len((H + H).join(['x']))", None),
    ("len((K + '{}{}').format('k', H))", None),
]

#: The part of a refused limit case the error points at, where it is not the argument of len().
SNIPPETS = {
    "(2 ** 128) ** 31 * 2 ** 127 * 2 // 4 > 0": "(2 ** 128) ** 31 * 2 ** 127 * 2",
    "len(f'{H:>1000001}')": None,
    "len(f'{1:.10000000}')": None,
    "len([*I, *I, *[1]])": "*[1]",
    "len({**E, **F, **{-1: 0}})": "{-1: 0}",
    "len(sorted({a * 10 + b for a in range(11) for b in range(10)}))": "{a * 10 + b for a in range(11) for b in range(10)}",
}


def check_refused(expr: str, prelude: str, fragment: str) -> None:
    err = refusal(expr, prelude)
    if expr in SNIPPETS:
        snippet = SNIPPETS[expr]
    elif expr.startswith("len("):
        snippet = expr[4:-1]
    else:
        snippet = expr.removesuffix(" > 0")
    if snippet is None:
        assert err.message.startswith(fragment), err.message
        assert err.line == (HEADER + prelude).count("\n") + 1
    else:
        assert_refused_at(err, expr, prelude, snippet, fragment)

#: Collections may have MAX_ITEMS items; the limit is lowered to 100 here so that the
#: boundary is quick to reach (every check reads the module constant).
ITEMS = "I = [0] * 50\nE = {i: 0 for i in range(50)}\nF = {i: 0 for i in range(50, 100)}\n"
ITEM_LIMITS: list[tuple[str, str | None]] = [
    ("len([0, 1] * 50)", None),
    ("len([0] * 101)", "collection would be too large (101 > 100) items"),
    ("len(101 * (0,))", "collection would be too large (101 > 100) items"),
    ("len(I + I)", None),
    ("len(I + I + [1])", "collection would be too large (101 > 100) items"),
    ("len(tuple(I) + tuple(I) + (1,))", "collection would be too large (101 > 100) items"),
    ("len([*I, *I])", None),
    ("len([*I, *I, *[1]])", "collection would be too large (101 > 100) items"),
    ("len({**E, **F})", None),
    ("len({**E, **F, **{-1: 0}})", "dict would be too large (101 > 100) items"),
    ("len([0 for a in range(10) for b in range(10)])", None),
    ("len([0 for a in range(11) for b in range(10)])", "collection would be too large (101 > 100) items"),
    ("len(sorted({a * 10 + b for a in range(11) for b in range(10)}))", "collection would be too large (101 > 100) items"),
    ("len({a * 10 + b: 0 for a in range(10) for b in range(10)})", None),
    ("len({a * 10 + b: 0 for a in range(11) for b in range(10)})", "dict would be too large (101 > 100) items"),
    ("len({a: 0 for a in range(10) for b in range(11)})", None),
    ("len(list(range(100)))", None),
    ("len(range(101))", "range() failed: range of 101 numbers is longer than 100"),
]


@pytest.fixture
def hundred_items(monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks import evaluator, evaluator_values, expressions

    for module in (evaluator, evaluator_values, expressions):
        monkeypatch.setattr(module, "MAX_ITEMS", 100)


@pytest.mark.parametrize(("expr", "fragment"), ITEM_LIMITS, ids=[c[0][:50] for c in ITEM_LIMITS])
def test_item_limits_just_under_and_just_over(hundred_items: None, expr: str, fragment: str | None) -> None:
    if fragment is None:
        assert ours(expr, ITEMS) == python(expr, ITEMS)
    else:
        check_refused(expr, ITEMS, fragment)


@pytest.mark.parametrize(("expr", "fragment"), LIMITS, ids=[c[0][:50] for c in LIMITS])
def test_limits_just_under_and_just_over(expr: str, fragment: str | None) -> None:
    if fragment is None:
        assert ours(expr, BIG) == python(expr, BIG)
    else:
        check_refused(expr, BIG, fragment)


@pytest.mark.parametrize(
    "expr",
    [
        "len('x'.center(40000000))",
        "len(K.replace('k', 'r' * 40000))",
        "len(K.replace('', 'r' * 40000))",
        "len((K * 1000).replace('kk', 'r' * 80000, 300))",
        "len('x' * 40000000)",
        "len([K] * 40000000)",
        "len(('-' * 1000).join([K] * 7000))",
        "len(40000000 * 'x')",
        "len(f'" + "{H}" * 60 + "')",
        "len(('{0}x' * 60).format(H))",
        "len(('{0}' * 60).format(H))",
        "len([0] * 999999)",
        "len('{:>40000000}'.format(1))",
    ],
)
def test_oversized_results_are_refused_before_they_are_computed(expr: str) -> None:
    """A result over the limit is refused from its size, without building it (tens of MB here)."""
    tracemalloc.start()
    try:
        err = refusal(expr, BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "too large" in err.message or "larger than" in err.message, err.message
    assert peak < 6_000_000, f"peak {peak:,} bytes"


def test_a_comprehension_that_runs_too_long_is_refused_at_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks import evaluator, expressions

    for module in (evaluator, expressions):
        monkeypatch.setattr(module, "MAX_STEPS", 20_000)
    expr = "len([1 for a in R for b in R for c in R if False])"
    prelude = "R = list(range(50))\n"
    err = refusal(expr, prelude)
    assert "the endpoint arguments take more than 20,000 evaluation steps" in err.message
    line = endpoint_line(expr)
    assert err.col == line.index("[1 for") + 1


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    chain = "C0 = 1\n" + "".join(f"C{i} = C{i - 1} + 1\n" for i in range(1, 120))
    err = refusal("C119", chain)
    assert "nested too deeply (more than 100 levels" in err.message
    assert ours("C30", chain) == str([31])


@pytest.mark.parametrize(
    ("prelude", "line", "snippet", "fragment"),
    [
        ("A = B\nB = A\n", 3, "B", "'B' is used before it is assigned in app.py"),
        ("A = 1 + A\n", 3, "A", "'A' is used before it is assigned in app.py"),
        ("Z = 1\nA = [Z, Y]\nY = 2\n", 4, "Y", "'Y' is used before it is assigned in app.py"),
    ],
)
def test_a_name_used_before_python_would_have_it_is_refused_where_it_is_used(
    prelude: str, line: int, snippet: str, fragment: str
) -> None:
    with pytest.raises(NameError):
        exec(prelude, {})
    err = refusal("A", prelude)
    assert fragment in err.message
    assert (err.line, err.col) == (line, prelude.splitlines()[line - 3].index(snippet, 3) + 1)


def test_constants_that_import_each_other_in_a_cycle_are_refused() -> None:
    files = {"a.py": "from b import Y\nX = Y\n", "b.py": "from a import X\nY = X\n"}
    err = refusal("X", "from a import X\n", files=files)
    assert "is defined in terms of itself" in err.message


@pytest.mark.parametrize("value", ["[1]", "GpuGroup", "None if 1 else 2", "L"])
def test_only_plain_values_and_enum_members_can_be_formatted(value: str) -> None:
    expr = f"f'{{{value}}}'"
    accepted = value == "None if 1 else 2"
    if accepted:
        assert ours(expr) == str(["None"])
        return
    err = refusal(expr, "L = [1]\n")
    assert "only strings, numbers and enum members can be formatted" in err.message
    line = endpoint_line(expr)
    assert err.col in (line.index("f'") + 1, line.index(value) + 1), err.col


@pytest.mark.parametrize(
    ("expr", "snippet"),
    [
        ("len([1 for a in R for b in R for c in R if False])", "[1 for a in R for b in R for c in R if False]"),
        ("len({1 for a in R for b in R for c in R if False})", "{1 for a in R for b in R for c in R if False}"),
        ("len({1: 1 for a in R for b in R for c in R if False})", "{1: 1 for a in R for b in R for c in R if False}"),
        ("sum(1 for a in R for b in R for c in R if False)", "1 for a in R for b in R for c in R if False"),
    ],
)
def test_running_out_of_steps_points_at_the_comprehension(monkeypatch: pytest.MonkeyPatch, expr: str, snippet: str) -> None:
    from flash_tasks import evaluator, expressions

    for module in (evaluator, expressions):
        monkeypatch.setattr(module, "MAX_STEPS", 20_000)
    err = refusal(expr, "R = list(range(50))\n")
    assert err.message.startswith("the endpoint arguments take more than 20,000 evaluation steps"), err.message
    assert snippet in err.message
    assert err.col in (endpoint_line(expr).index(snippet) + 1, endpoint_line(expr).index(snippet)), err.col


@pytest.mark.parametrize("steps", [200, 201, 202, 203])
def test_running_out_of_steps_in_a_long_sum_points_into_the_sum(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    from flash_tasks import evaluator, expressions

    for module in (evaluator, expressions):
        monkeypatch.setattr(module, "MAX_STEPS", steps)
    expr = " + ".join(["1"] * 300)
    err = refusal(expr)
    assert err.message.startswith(f"the endpoint arguments take more than {steps:,} evaluation steps"), err.message
    assert err.col > endpoint_line(expr).index(expr), (err.col, err.message)
    assert "(in `1 + 1" in err.message or "(in `1`)" in err.message, err.message


def test_a_snippet_of_80_characters_is_shown_whole_and_one_of_81_is_shortened() -> None:
    for length in (80, 81):
        snippet = "('" + "a" * (length - len("('') - 1")) + "') - 1"
        assert len(snippet) == length
        err = refusal(snippet)
        shown = err.message.split("`")[1]
        if length == 80:
            assert shown == snippet
        else:
            assert shown == snippet[:77] + "..."


@pytest.mark.parametrize(
    ("expr", "near"),
    [("DataCenter['eu_ro_1']", "EU_RO_1"), ("GpuGroup['ADA_2']", "ADA_24"), ("GpuGroup.ADA_2", "ADA_24"),
     ("GpuGroup['QQQQQQQQ']", None)],
)
def test_unknown_enum_members_get_the_closest_names_as_a_hint(expr: str, near: str | None) -> None:
    import difflib

    from flash_tasks import catalog

    enum, name = expr.split("[") if "[" in expr else expr.split(".")
    name = name.strip("[]'")
    members = list(catalog.ENUMS[enum])
    err = refusal(expr)
    assert err.message.startswith(f"{enum} has no member {name!r}")
    # Close names as difflib ranks them, else close names ignoring case.
    close = difflib.get_close_matches(name, members, n=3, cutoff=0.5) or difflib.get_close_matches(
        name.upper(), members, n=3, cutoff=0.4
    )
    if near is None:
        assert err.hint == "valid values: " + ", ".join(members)
    else:
        assert near in close
        assert err.hint is not None and err.hint.startswith("did you mean " + near)
        assert err.hint == "did you mean " + " or ".join(close) + "?"


def test_a_namespace_package_module_is_imported_by_its_parent_name() -> None:
    files = {"ns/consts.py": "X = 'from-ns'\n"}
    assert ours("ns.consts.X", "import ns.consts\n", files=files) == str(["from-ns"])


X_MB = "X = 'x' * 1000000\nU = '\\N{GRINNING FACE}' * 1000000\nB = (2 ** 125) ** 32\n"


@pytest.mark.parametrize(
    "expr",
    ["[X] * 7", "[X] * 8", "{'a': X, 'b': [X] * 6}", "{'a': X, 'b': [X] * 7}", "[U]", "[U, U]", "[B] * 5000", "[B] * 7000",
     "[[X] * 4] * 2"],
)
def test_one_value_may_take_8_mb_as_json(expr: str) -> None:
    """The size of a value is counted like its JSON text: over 8,000,000 bytes it is refused."""
    namespace: dict[str, Any] = {}
    exec(X_MB, namespace)
    as_json = len(json.dumps(eval(expr, namespace), ensure_ascii=False).encode())
    if as_json <= 8_000_000:
        assert ours(f"len({expr})", X_MB) == python(f"len({expr})", X_MB)
    else:
        err = refusal(f"len({expr})", X_MB)
        assert err.message.startswith("value is too large (over 8,000,000 bytes)"), err.message


def test_a_constant_nested_to_the_parsers_limit_is_refused_where_it_is_written() -> None:
    """200 brackets parse as a module line; re-read as an expression they are one level too deep."""
    value = "[" * 200 + "]" * 200
    prelude = f"X = {value}\n"
    err = refusal("X", prelude)
    assert err.message == f"expression is nested too deeply to evaluate (`{value[:77]}...`)"
    assert (err.path, err.line, err.col) == ("app.py", 3, len("X = ") + 1)
    assert err.hint is not None and "at most 100 levels" in err.hint


@pytest.mark.parametrize(
    ("width", "shown"),
    [("1000001", "1000001"), ("123456789012", "123456789012"), ("1234567890123", "123456789012..."),
     ("12345678901234", "123456789012...")],
)
def test_a_huge_format_width_is_named_in_the_message(width: str, shown: str) -> None:
    """The width is quoted, its first 12 digits only when it is longer."""
    err = refusal(f"f'{{1:>{width}}}'")
    assert err.message.startswith(f"bad format: width or precision {shown} is larger than 1,000,000 ("), err.message
