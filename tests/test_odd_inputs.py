"""Odd inputs: names, sizes, depths, links, encodings and syntax that real app folders contain.

Each one either builds an artifact that ships exactly the right files, or fails with one clear,
located message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flash_tasks.cli import main
from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks

ENDPOINT = '''\
from runpod_flash import Endpoint


@Endpoint(name="{name}", cpu="cpu3c-1-2", workers={workers})
def {func}(payload: dict) -> dict:
    return payload
'''


def endpoint(name: str, func: str = "work", workers: object = 1) -> str:
    return ENDPOINT.format(name=name, func=func, workers=workers)


@pytest.fixture()
def index(local_index: Path) -> dict[str, object]:
    return {"find_links": (str(local_index),), "no_index": True}


def build(app: Path, index: dict[str, object], **options: object):  # type: ignore[no-untyped-def]
    return run_tasks(BuildConfig(app_dir=app, **{**index, **options}))  # type: ignore[arg-type]


def cli(app: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    args = ["build", "-C", str(app), "--no-index"]
    for link in index["find_links"]:  # type: ignore[attr-defined]
        args += ["--find-links", str(link)]
    code = main(args + list(extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def members(app: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def content(app: Path, name: str) -> bytes:
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None, name
        return handle.read()


def manifest(app: Path) -> dict:
    return json.loads((app / ".flash" / "flash_manifest.json").read_text(encoding="utf-8"))


def listing(app: Path) -> list[tuple[str, str, int]]:
    out = []
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        for m in tar:
            data = tar.extractfile(m).read() if m.isfile() else m.linkname.encode()  # type: ignore[union-attr]
            out.append((m.name, hashlib.sha256(data).hexdigest(), m.mode))
    return sorted(out)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def assert_one_clear_error(code: int, err: str, expected: int, *patterns: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err, err
    assert len(re.findall(r"(?m)^(?:\S.*?: )?error: ", err)) == 1, err
    assert re.search(r"(?im)^\s*hint: \S", err), err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)


# -- names -----------------------------------------------------------------------------------------


def test_spaces_and_unicode_in_file_and_folder_names(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "odd names"
    write(app / "my dir" / "my worker.py", endpoint("spaced", "spaced_work"))
    write(app / "my dir" / "ünï cödé" / "wörker.py", endpoint("unicode", "unicode_work"))
    write(app / "データ" / "表 1.csv", "a,b\n1,2\n")
    write(app / "emoji 🚀.txt", "lift-off\n")
    build(app, index)

    listed = members(app)
    for name in ("./my dir/my worker.py", "./my dir/ünï cödé/wörker.py", "./データ/表 1.csv", "./emoji 🚀.txt"):
        assert name in listed, name
    assert content(app, "./データ/表 1.csv") == b"a,b\n1,2\n"
    resources = manifest(app)["resources"]
    assert resources["spaced"]["module_path"] == "my dir.my worker"
    assert resources["unicode"]["module_path"] == "my dir.ünï cödé.wörker"

    # The worker imports each endpoint's module by that dotted name from the unpacked artifact.
    target = tmp_path / "unpacked"
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        tar.extractall(target, filter="data")
    script = "import importlib.util, json, sys; print(json.dumps([importlib.util.find_spec(m).origin for m in sys.argv[1:]]))"
    found = subprocess.run([sys.executable, "-c", script, "my dir.my worker", "my dir.ünï cödé.wörker"],
                           cwd=target, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert found.returncode == 0, found.stderr
    origins = json.loads(found.stdout)
    assert origins == [str(target / "my dir" / "my worker.py"), str(target / "my dir" / "ünï cödé" / "wörker.py")]
    handler = content(app, "./handler_unicode.py").decode()
    assert "'my dir.ünï cödé.wörker'" in handler

    # Renaming a unicode file is picked up incrementally.
    (app / "my dir" / "ünï cödé" / "wörker.py").rename(app / "my dir" / "ünï cödé" / "wörker 2.py")
    build(app, index)
    listed = members(app)
    assert "./my dir/ünï cödé/wörker 2.py" in listed and "./my dir/ünï cödé/wörker.py" not in listed
    assert manifest(app)["resources"]["unicode"]["module_path"] == "my dir.ünï cödé.wörker 2"


def test_colon_and_percent_in_file_names(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "colons"
    write(app / "main.py", endpoint("w"))
    write(app / "a:b.py", "X = 1\n")
    write(app / "a%3Ab.py", "X = 2\n")
    build(app, index)
    assert content(app, "./a:b.py") == b"X = 1\n" and content(app, "./a%3Ab.py") == b"X = 2\n"


def test_equals_sign_in_a_python_file_name(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "equals"
    write(app / "main.py", endpoint("w"))
    write(app / "a=b.py", "X = 1\n")
    build(app, index)
    assert content(app, "./a=b.py") == b"X = 1\n"


def test_colon_and_newline_in_file_names(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "strange"
    write(app / "main.py", endpoint("w"))
    write(app / "a:b.py", "X = 1\n")
    write(app / "new\nline.txt", "two\nlines\n")
    write(app / "-rf.py", "Y = 2\n")
    build(app, index)
    assert content(app, "./a:b.py") == b"X = 1\n"
    assert content(app, "./new\nline.txt") == b"two\nlines\n"
    assert content(app, "./-rf.py") == b"Y = 2\n"
    assert build(app, index).ran == []


def test_file_name_that_is_not_utf8(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "latin1"
    write(app / "main.py", endpoint("w"))
    (app / os.fsdecode(b"caf\xe9.py")).write_text("X = 1\n")
    code, out, err = cli(app, index, capsys)
    assert_one_clear_error(code, err, 1, r"(?i)utf-8|rename")


def test_longest_legal_file_names(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "long"
    write(app / "main.py", endpoint("w"))
    write(app / ("m" * 250 + ".py"), "X = 1\n")
    write(app / ("d" * 251 + ".txt"), "data\n")
    code, out, err = cli(app, index, capsys)
    assert code == 0, err
    assert content(app, "./" + "m" * 250 + ".py") == b"X = 1\n"


#: Any legal single path component (no '/', no NUL), short enough that the build's own names stay legal,
#: and names the built-in ignore rules are about.
FILE_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=24
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 120) | st.sampled_from(
    ["README.md", "notes.md", "test_a.py", "a_test.py", ".env", ".env.local", "x.pyc", "b.tar.gz", "=%3A.txt", "a:b%2F"]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(FILE_NAMES, min_size=1, max_size=4, unique=True), as_module=st.booleans())
def test_arbitrary_file_names_ship_exactly(
    tmp_path_factory: pytest.TempPathFactory, index: dict[str, object], names: list[str], as_module: bool
) -> None:
    """Whatever the names, the artifact holds exactly the files the ignore rules let through, byte for byte."""
    app = tmp_path_factory.mktemp("names") / "app"
    write(app / "main.py", endpoint("w"))
    sources = {}
    for i, name in enumerate(names):
        rel = f"data/{name}" + (".py" if as_module else "")
        sources[rel] = f"VALUE_{i} = {name!r}\n"
        write(app / rel, sources[rel])
    build(app, index)
    shipped = {name.removeprefix("./") for name, m in members(app).items() if m.isfile()}
    expected = {rel for rel in sources if not ignored_by_builtin_rules(rel.rsplit("/", 1)[1])}
    assert "main.py" in shipped
    assert {rel for rel in sources if rel in shipped} == expected
    for rel in expected:
        assert content(app, "./" + rel) == sources[rel].encode()
    assert build(app, index).ran == []


#: The built-in ignore patterns (README: "What flash build does") that can match a file's own name.
FILE_NAME_IGNORES = ("*.tar.gz", ".gitignore", "*.pyc", "*.pyo", "*.pyd", ".env", ".env.local", "test_*.py", "*_test.py", "*.md")


def ignored_by_builtin_rules(name: str) -> bool:
    """Whether a file of this name, in a folder no rule ignores, stays out: an oracle written from the rules."""
    if name == "README.md":
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in FILE_NAME_IGNORES)


def test_file_name_oracle_itself() -> None:
    assert ignored_by_builtin_rules("notes.md") and not ignored_by_builtin_rules("README.md")
    assert ignored_by_builtin_rules("test_x.py") and not ignored_by_builtin_rules("test_x.txt")
    assert ignored_by_builtin_rules("a.tar.gz") and not ignored_by_builtin_rules("a.tar.gz.txt")
    assert not ignored_by_builtin_rules("[x]*?.py")


def test_endpoint_in_a_file_whose_name_is_not_a_module_name(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """The worker imports the endpoint's module by name; "my.worker" would mean package "my", module "worker"."""
    app = tmp_path / "dotted"
    write(app / "my.worker.py", endpoint("dotted"))
    code, _out, err = cli(app, index, capsys)
    assert_one_clear_error(code, err, 1, r"(?m)^my\.worker\.py:5:1: error: ", r"contains a dot", r"hint: rename it without dots")
    assert not (app / ".flash" / "artifact.tar.gz").exists()


# -- sizes and depths ------------------------------------------------------------------------------


def test_empty_files(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "empties"
    write(app / "main.py", endpoint("w"))
    write(app / "empty.py", "")
    write(app / "pkg" / "__init__.py", "")
    write(app / "pkg" / "empty module.py", "")
    write(app / "data" / "empty.bin", b"")
    write(app / "requirements.txt", "")
    (app / "empty folder").mkdir()
    build(app, index)
    listed = members(app)
    for name in ("./empty.py", "./pkg/__init__.py", "./pkg/empty module.py", "./data/empty.bin", "./requirements.txt"):
        assert listed[name].isfile() and listed[name].size == 0, name
    assert build(app, index).ran == []


def test_very_large_source_file(tmp_path: Path, index: dict[str, object]) -> None:
    """A few MB of constants in one module: shipped byte for byte, and its constants usable by endpoints."""
    app = tmp_path / "big"
    rows = ",\n".join(f"    {i}: ({i * 7919 % 1_000_003}, 'label number {i:06d}')" for i in range(60_000))
    big = f"TABLE = {{\n{rows},\n}}\nWORKERS = 3\n"
    write(app / "constants.py", big)
    write(app / "main.py", endpoint("w").replace("workers=1", "workers=WORKERS").replace(
        "from runpod_flash import Endpoint\n", "from runpod_flash import Endpoint\n\nfrom constants import WORKERS\n"))
    assert len(big.encode()) > 2_500_000
    build(app, index)
    assert content(app, "./constants.py") == big.encode()
    assert manifest(app)["resources"]["w"]["workersMax"] == 3
    assert build(app, index).ran == []


SCAN_MANY_CONSTANTS = """
import sys, time
from flash_tasks.scan import scan_source
source = "\\n".join(f"C{i} = {i}" for i in range(int(sys.argv[1]))).encode()
started = time.perf_counter()
result = scan_source(source, "constants.py")
assert len(result["assigns"]) == int(sys.argv[1])
print(time.perf_counter() - started)
"""


def test_many_module_constants_scan_quickly() -> None:
    # 4,000 constants: linear scanning takes well under a second; the bound only catches the blow-up.
    try:
        result = subprocess.run([sys.executable, "-c", SCAN_MANY_CONSTANTS, "4000"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("scanning a module of 4,000 constants took more than 5 s")
    assert result.returncode == 0, result.stderr


def test_deep_tree(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "deep"
    folder = app
    for level in range(50):
        folder = folder / f"level{level:02d}"
    write(folder / "leaf.py", endpoint("deep", "deep_work"))
    write(folder / "data.txt", "bottom\n")
    write(app / "main.py", endpoint("top"))
    build(app, index)
    rel = "/".join(f"level{level:02d}" for level in range(50))
    assert len(rel) > 255  # pax headers, not ustar names
    listed = members(app)
    assert f"./{rel}/leaf.py" in listed and content(app, f"./{rel}/data.txt") == b"bottom\n"
    assert manifest(app)["resources"]["deep"]["module_path"] == rel.replace("/", ".") + ".leaf"
    assert build(app, index).ran == []


# -- symlinks ----------------------------------------------------------------------------------------


def test_symlinks_inside_the_app_are_shipped_as_files(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "links"
    write(app / "main.py", endpoint("w"))
    write(app / "real" / "settings.py", "VALUE = 1\n")
    write(app / "real" / "data.json", '{"a": 1}\n')
    (app / "linked_dir").symlink_to("real", target_is_directory=True)
    (app / "linked_file.py").symlink_to("real/settings.py")
    build(app, index)
    listed = members(app)
    assert listed["./linked_file.py"].isfile() and content(app, "./linked_file.py") == b"VALUE = 1\n"
    assert content(app, "./linked_dir/data.json") == b'{"a": 1}\n'
    assert content(app, "./real/settings.py") == b"VALUE = 1\n"
    # Editing the target through the link rebuilds.
    (app / "real" / "settings.py").write_text("VALUE = 22\n")
    build(app, index)
    assert content(app, "./linked_file.py") == b"VALUE = 22\n"
    assert build(app, index).ran == []


def test_symlinks_out_of_the_app_are_never_followed(tmp_path: Path, index: dict[str, object]) -> None:
    outside = tmp_path / "outside"
    write(outside / "private.py", "PRIVATE_TOKEN = 'do-not-ship'\n")
    write(outside / "notes.txt", "do-not-ship\n")
    app = tmp_path / "app"
    write(app / "main.py", endpoint("w"))
    (app / "out_dir").symlink_to(outside, target_is_directory=True)
    (app / "out_file.py").symlink_to(outside / "private.py")
    (app / "etc_passwd").symlink_to("/etc/passwd")
    (app / "relative_out").symlink_to("../outside/notes.txt")
    build(app, index)
    listed = members(app)
    assert not [n for n in listed if "out_" in n or "passwd" in n or "relative_out" in n], sorted(listed)
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        everything = b"".join(tar.extractfile(m).read() for m in tar if m.isfile())  # type: ignore[union-attr]
    assert b"do-not-ship" not in everything


def test_symlink_loops_do_not_hang(tmp_path: Path, local_index: Path) -> None:
    app = tmp_path / "loops"
    write(app / "main.py", endpoint("w"))
    write(app / "sub" / "mod.py", "X = 1\n")
    (app / "self").symlink_to(".", target_is_directory=True)
    (app / "sub" / "up").symlink_to("..", target_is_directory=True)
    (app / "a").symlink_to("b")
    (app / "b").symlink_to("a")
    (app / "broken.py").symlink_to("does-not-exist.py")
    result = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "build", "-C", str(app), "-q", "--no-index", "--find-links", str(local_index)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    names = set(members(app))
    assert {"./main.py", "./sub/mod.py"} <= names
    assert not [n for n in names if n.startswith(("./self/", "./sub/up/", "./a", "./b", "./broken"))], sorted(names)


def test_symlink_to_the_build_folder(tmp_path: Path, index: dict[str, object]) -> None:
    app = tmp_path / "selfref"
    write(app / "main.py", endpoint("w"))
    (app / "state").symlink_to(".flash", target_is_directory=True)
    build(app, index)
    build(app, index)
    assert not [n for n in members(app) if n.startswith("./state")]
    assert build(app, index).ran == []


# -- ignore rules --------------------------------------------------------------------------------------


def test_gitignore_that_ignores_everything(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "ignored"
    write(app / "main.py", endpoint("w"))
    write(app / ".gitignore", "*\n")
    code, out, err = cli(app, index, capsys)
    assert_one_clear_error(code, err, 1, r"no endpoints", r"\.gitignore")
    assert not (app / ".flash" / "artifact.tar.gz").exists()
    # Un-ignoring the endpoint file fixes it.
    write(app / ".gitignore", "*\n!main.py\n")
    code, out, err = cli(app, index, capsys)
    assert code == 0, err
    assert "./main.py" in members(app)


# -- encodings and line endings -----------------------------------------------------------------------


def test_crlf_line_endings_and_a_bom_in_an_endpoint_file(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "windows"
    source = (
        "\ufefffrom runpod_flash import Endpoint\r\n"
        "\r\n"
        "@Endpoint(\r\n"
        '    name="crlf",\r\n'
        '    cpu="cpu3c-1-2",\r\n'
        "    workers=(1, 4),\r\n"
        ")\r\n"
        "def work(payload: dict) -> dict:\r\n"
        "    return payload\r\n"
    )
    write(app / "main.py", source.encode("utf-8"))
    build(app, index)
    resource = manifest(app)["resources"]["crlf"]
    assert (resource["workersMin"], resource["workersMax"]) == (1, 4)
    assert content(app, "./main.py") == source.encode("utf-8")  # shipped as written

    # Errors in such a file point at the right line and column.
    write(app / "main.py", source.replace('cpu="cpu3c-1-2"', 'cpu="cpu3c-1-3"').encode("utf-8"))
    code, out, err = cli(app, index, capsys)
    assert_one_clear_error(code, err, 1, r"(?m)^main\.py:5:9: error: ", r"cpu3c-1-2")


def test_error_column_after_non_ascii_text(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "columns"
    write(app / "main.py", endpoint("w").replace('name="w", cpu="cpu3c-1-2"', 'name="ééé", cpu="cpu3c-1-3"'))
    line = (app / "main.py").read_text().splitlines()[3]
    column = line.index('"cpu3c-1-3"') + 1
    code, out, err = cli(app, index, capsys)
    assert code == 1
    assert re.search(rf"(?m)^main\.py:4:{column}: error: ", err), (column, err)


# -- syntax of other Python versions -----------------------------------------------------------------


MATCH_ENDPOINT = '''\
from runpod_flash import Endpoint


@Endpoint(name="matcher", cpu="cpu3c-1-2")
def work(payload: dict) -> dict:
    match payload:
        case {"op": "add", "a": int(a), "b": int(b)}:
            return {"sum": a + b}
        case _:
            return {"error": "unknown"}
'''

PEP695_ENDPOINT = '''\
from runpod_flash import Endpoint

type Vector = list[float]


@Endpoint(name="typed", cpu="cpu3c-1-2")
def work(payload: Vector) -> Vector:
    return payload
'''

EXCEPT_STAR_ENDPOINT = '''\
from runpod_flash import Endpoint


@Endpoint(name="groups", cpu="cpu3c-1-2")
def work(payload: dict) -> dict:
    try:
        return payload
    except* ValueError:
        return {}
'''


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_match_statement_builds_for_every_target(tmp_path: Path, index: dict[str, object], python: str) -> None:
    app = tmp_path / "matching"
    write(app / "main.py", MATCH_ENDPOINT)
    build(app, index, python_version=python)
    assert manifest(app)["resources"]["matcher"]["target_python_version"] == python


def test_pep695_syntax_targeting_python_310_fails_at_the_line(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """`type X = ...` is Python 3.12 syntax: a 3.10 worker could not import the module."""
    app = tmp_path / "typed"
    write(app / "main.py", PEP695_ENDPOINT)
    code, out, err = cli(app, index, capsys, "--python-version", "3.10")
    assert_one_clear_error(code, err, 1, r"(?m)^main\.py:3:\d+: error: ")


def test_pep695_syntax_targeting_python_312(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """flash reads sources with the Python it runs on: 3.12 syntax builds on 3.12 and newer, and only there."""
    app = tmp_path / "typed"
    write(app / "main.py", PEP695_ENDPOINT)
    code, _out, err = cli(app, index, capsys, "--python-version", "3.12")
    if sys.version_info >= (3, 12):
        assert code == 0, err
        assert manifest(app)["resources"]["typed"]["target_python_version"] == "3.12"
        assert content(app, "./main.py") == PEP695_ENDPOINT.encode()
    else:
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        assert_one_clear_error(code, err, 1, r"(?m)^main\.py:3:\d+: error: ", r"3\.12", re.escape(f"this is Python {host}"))
        assert not (app / ".flash" / "artifact.tar.gz").exists()


def test_newer_syntax_than_the_target_is_reported(tmp_path: Path, index: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "groups"
    write(app / "main.py", EXCEPT_STAR_ENDPOINT)
    code, _out, err = cli(app, index, capsys, "--python-version", "3.10")
    assert_one_clear_error(
        code, err, 1, r"(?m)^main\.py:8:5: error: ", r"needs Python 3\.11 but the workers run Python 3\.10", r"--python-version 3\.11"
    )
    assert not (app / ".flash" / "artifact.tar.gz").exists()
