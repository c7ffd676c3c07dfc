"""The safe subset of Python the evaluator understands, and the message for the rest.

Nothing is executed: expressions are walked as ``ast``. What real apps write
(SDK enum lookups by name or value, pure builtins, str methods, ``dict.get``,
comparisons, conditionals, comprehensions, environment reads) is computed; a call
to one of the app's own functions, or anything reached through one, is refused
with a message that says why and shows the value written as a constant.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flash_tasks.cli import main
from flash_tasks.errors import BuildError
from flash_tasks.manifest import BuildOptions, build_manifest
from flash_tasks.scan import scan_source

HEADER = "import os\nfrom runpod_flash import Endpoint, GpuGroup, GpuType, CpuInstanceType, DataCenter, CudaVersion\n"


def manifest(files: dict[str, str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    scans = {rel: scan_source(textwrap.dedent(text).encode(), rel) for rel, text in files.items()}
    return build_manifest(scans, BuildOptions(project_name="app"), environ or {})


def one(args: str, prelude: str = "", environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The resource of ``@Endpoint(name='w', <args>)`` in app.py."""
    source = HEADER + prelude + f"@Endpoint(name='w', {args})\ndef work(x):\n    return x\n"
    result = manifest({"app.py": source}, environ)
    return result.manifest.resources["w"], result


def env_value(expr: str, prelude: str = "", environ: dict[str, str] | None = None) -> str:
    resource, _ = one(f"env={{'V': {expr}}}", prelude, environ)
    return resource.env["V"]


def refused(args: str, prelude: str = "", files: dict[str, str] | None = None) -> BuildError:
    source = HEADER + prelude + f"@Endpoint(name='w', {args})\ndef work(x):\n    return x\n"
    with pytest.raises(BuildError) as info:
        manifest({"app.py": source, **(files or {})})
    return info.value


# -- SDK enums by name and by value ------------------------------------------------------------


def test_enum_lookup_by_name_and_by_value() -> None:
    resource, result = one("gpu=GpuGroup['AMPERE_80'], datacenter=DataCenter[os.environ.get('DC', 'EU_RO_1')]", environ={"DC": "US_KS_2"})
    assert (resource.gpuIds, resource.locations) == ("AMPERE_80", "US-KS-2")
    assert result.env_used["DC"] == "US_KS_2"
    resource, _ = one("gpu=GpuType('NVIDIA A100 80GB PCIe'), min_cuda_version=CudaVersion('12.4')")
    assert resource.minCudaVersion == "12.4" and "AMPERE_80" in resource.gpuIds
    assert env_value("DataCenter['EU_RO_1'].value + '/' + GpuGroup('ADA_24').name") == "EU-RO-1/ADA_24"


def test_unknown_enum_member_suggests_the_closest() -> None:
    err = refused("datacenter=DataCenter['EU_RO_2']")
    assert "DataCenter has no member 'EU_RO_2'" in err.message
    assert err.hint is not None and "EU_RO_1" in err.hint
    assert (err.line, err.col) == (3, len("@Endpoint(name='w', datacenter=") + 1)
    err = refused("gpu=GpuGroup('ADA_42')")
    assert "'ADA_42' is not a valid GpuGroup" in err.message and "ADA_24" in (err.hint or "")


# -- builtins, str methods, dict.get, comparisons, conditionals ---------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("str(int('42') + int(float('1.5')))", "43"),
        ("str(bool('') or len('abc'))", "3"),
        ("str(min(3, 1, 2)) + str(max([4, 9])) + str(abs(-2)) + str(round(2.567, 1))", "1922.6"),
        ("','.join(sorted({'b': 1, 'a': 2}))", "a,b"),
        ("','.join(sorted(set('banana')))", "a,b,n"),
        ("str(list((1, 2)) + list(tuple([3])))", "[1, 2, 3]"),
        ("str(dict(a=1, **{'b': 2}))", "{'a': 1, 'b': 2}"),
        ("str(sum([1, 2, 3])) + str(any([0, 1])) + str(all([]))", "6TrueTrue"),
        ("'  Mixed Case  '.strip().lower().replace(' ', '-')", "mixed-case"),
        ("'a,b,,c'.split(',')[3].upper() + 'x'.center(3, '*') + '7'.zfill(3)", "C*x*007"),
        ("'-'.join(p.title() for p in 'speech to text'.split())", "Speech-To-Text"),
        ("'{}:{name}:{}'.format('a', 'c', name='b') + '{1}{0}'.format('x', 'y')", "a:b:cyx"),
        ("'{:>5}|{:.2f}'.format('x', 3.14159)", "    x|3.14"),
        ("str('abc'.startswith(('x', 'a'))) + str('abc'.endswith('c')) + str('abc'.find('c'))", "TrueTrue2"),
        ("'Prefix-Name'.removeprefix('Prefix-').casefold()", "name"),
        ("{'a': 'x'}.get('b', 'default') + {'a': 'x'}.get('a')", "defaultx"),
        ("'yes' if 3 > 2 >= 2 and not 1 == 2 else 'no'", "yes"),
        ("'in' if 'b' in ['a', 'b'] and 'z' not in 'abc' else 'out'", "in"),
        ("str(None is None) + str([] or 'empty')", "Trueempty"),
        ("','.join(f'{k}={v}' for k, v in sorted({'b': 2, 'a': 1}.items()))", "a=1,b=2"),
        ("str([x * 2 for x in [1, 2, 3] if x != 2])", "[2, 6]"),
        ("str({x: y for x, y in [('a', 1)]}) + str(len({c for c in 'aab'}))", "{'a': 1}2"),
        ("str([a + b for a in 'xy' for b in '12'])", "['x1', 'x2', 'y1', 'y2']"),
        ("str({'k': [1, 2]}['k'][-1]) + 'abcdef'[1:4:2]", "2bd"),
        ("','.join(f'{i}:{c}' for i, c in enumerate('ab', 1)) + str(list(range(2, 8, 3)))", "1:a,2:b[2, 5]"),
        ("str(dict(zip(['a', 'b'], [1, 2]))) + ''.join(reversed('abc'))", "{'a': 1, 'b': 2}cba"),
    ],
)
def test_pure_expressions_compute_as_python_does(expr: str, expected: str) -> None:
    assert env_value(expr) == expected
    assert eval(expr) == expected  # the same expression run by Python, as the reference would


def test_comprehension_variables_stay_inside_the_comprehension() -> None:
    err = refused("env={'V': str([x for x in 'ab']) + x}")
    assert "'x' is not defined at module level" in err.message


def test_environment_reads_everywhere_are_recorded() -> None:
    prelude = "NAMES = ['A_ONE', 'A_TWO']\n"
    expr = "','.join(os.getenv(n, '-') for n in NAMES) + str('A_THREE' in os.environ) + os.environ['A_FOUR'].lower()"
    environ = {"A_ONE": "1", "A_FOUR": "LOUD"}
    assert env_value(expr, prelude, environ) == "1,-Falseloud"
    _, result = one(f"env={{'V': {expr}}}", prelude, environ)
    assert {k: result.env_used[k] for k in ("A_ONE", "A_TWO", "A_THREE", "A_FOUR")} == {
        "A_ONE": "1",
        "A_TWO": None,
        "A_THREE": None,
        "A_FOUR": "LOUD",
    }


# -- what stays out, and what the message says ----------------------------------------------------------


def test_call_to_an_app_function_says_why_and_shows_a_constant() -> None:
    err = refused("workers=pick_workers()", "def pick_workers():\n    return 3\n")
    assert err.message.startswith("pick_workers() is defined by the app: calls to the app's own functions are not evaluated at build time")
    assert (err.line, err.col) == (5, len("@Endpoint(name='w', workers=") + 1)
    assert err.hint is not None
    assert "WORKERS = 3" in err.hint and "workers=WORKERS" in err.hint


def test_call_to_a_function_imported_from_another_app_module_is_refused_the_same_way() -> None:
    err = refused(
        "idle_timeout=helpers.timeout() + 1",
        "import helpers\n",
        files={"helpers.py": "def timeout():\n    return 60\n"},
    )
    assert "timeout() is defined by the app" in err.message
    assert "IDLE_TIMEOUT = 3" in (err.hint or "")


def test_attribute_of_an_object_built_at_import_time_is_refused() -> None:
    prelude = "class Settings:\n    workers = 2\n\nsettings = Settings()\n"
    err = refused("workers=settings.workers", prelude)
    assert "Settings() is defined by the app" in err.message
    assert err.line == 6  # the call that builds the object
    err = refused("workers=Settings.workers", "class Settings:\n    workers = 2\n")
    assert "belongs to 'Settings', which the app defines" in err.message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("workers=math.ceil(2.5)", "'math' comes from outside the app"),
        ("env={'V': 'x'.encode()}", "str.encode cannot be used at build time"),
        ("env={'V': '{0.real}'.format(1)}", "only plain fields"),
        ("env={'V': '{}{0}'.format(1)}", "cannot switch from automatic field numbering"),
        ("env={'V': os.environ['NOT_SET_ANYWHERE']}", "environment variable 'NOT_SET_ANYWHERE' is not set"),
        ("env={'V': (lambda: 'x')()}", "cannot evaluate lambda expressions"),
        ("env={'V': str(len(range(10**9)))}", "range of 1,000,000,000 numbers is longer than 100,000"),
        ("env={'V': str(x := 1)}", "cannot evaluate namedexpr expressions"),
        ("env={'V': os.system('true')}", "os.system cannot be used here"),
        ("env={'V': open('/etc/passwd').read()}", "'open' is not defined at module level"),
    ],
)
def test_everything_else_is_refused_with_a_located_message(args: str, message: str) -> None:
    prelude = "import math\n" if "math" in args else ""
    err = refused(args, prelude)
    assert message in err.message
    assert err.path == "app.py" and err.line is not None and err.col is not None


_ATOMS = st.sampled_from(
    [
        "1", "'a-B'", "None", "[1, 2]", "{'k': 'v'}", "GpuGroup.ADA_24", "DataCenter['EU_RO_1']", "GpuGroup('x')",
        "os.getenv('X', 'y')", "'X' in os.environ", "X", "f'{X:>3}'", "pick()", "'{}'.format(1)", "'abc'.split('b')",
        "{'a': 1}.get('a')", "[c for c in 'ab']", "{k: 1 for k in 'ab'}", "len('abc')", "sorted([2, 1])",
        "'x'.center(10**9)", "'a' * 10**7", "int('12')", "max([])",
    ]
)  # fmt: skip
_EXPRS = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "*", " if 1 else ", " and ", " or ", " == ", " in "]), inner).map(
            lambda t: f"({t[0]}{t[1]}{t[2]})"
        ),
        inner.map(lambda x: f"str({x})"),
        inner.map(lambda x: f"{x}.upper()"),
        inner.map(lambda x: f"[v for v in {x}]"),
        inner.map(lambda x: f"{x}[0]"),
        inner.map(lambda x: f"'-'.join({x})"),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(_EXPRS)
def test_the_subset_only_ever_raises_located_build_errors(expr: str) -> None:
    files = {"app.py": HEADER + f"X = 3\ndef pick():\n    return 1\n@Endpoint(name='w', env={{'V': str({expr})}})\ndef f(): ...\n"}
    try:
        manifest(files)
    except BuildError as exc:
        assert exc.path == "app.py" and exc.line is not None and exc.col is not None


# -- environment values are build inputs, and --explain names them ---------------------------------------


def test_explain_names_environment_variables_read_by_new_constructs(
    tmp_path: Path, local_index: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(
        HEADER
        + "@Endpoint(name='w', datacenter=DataCenter[os.environ.get('SUB_DC', 'EU_RO_1')],\n"
        + "          env={k: os.getenv(k, 'unset') for k in ['SUB_A'] if 'SUB_B' not in os.environ})\n"
        + "def work(x):\n    return x\n",
        encoding="utf-8",
    )
    for name in ("SUB_DC", "SUB_A", "SUB_B"):
        monkeypatch.delenv(name, raising=False)
    flags = ["-C", str(app), "--no-index", "--find-links", str(local_index)]

    def build(*extra: str) -> str:
        code = main(["build", *extra, *flags])
        captured = capsys.readouterr()
        assert code == 0, captured.out + captured.err
        return captured.out + captured.err

    def published() -> dict:  # type: ignore[type-arg]
        return json.loads((app / ".flash" / "flash_manifest.json").read_text())["resources"]["w"]

    build()
    assert (published()["locations"], published()["env"]) == ("EU-RO-1", {"SUB_A": "unset"})
    for name, value in (("SUB_DC", "US_KS_2"), ("SUB_A", "set"), ("SUB_B", "1")):
        monkeypatch.setenv(name, value)
        out = build("--explain")
        assert re.search(rf"manifest\s+ran: environment variable {name} changed", out), out
    assert (published()["locations"], published()["env"]) == ("US-KS-2", {})
    out = build("--explain")
    assert not re.search(r"manifest\s+ran", out), out
