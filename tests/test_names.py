"""Endpoint names are checked in the manifest phase, before any lock or handler uses them.

A name becomes ``handler_<name>.py`` and a line of the lock files: control
characters (a newline would let ``name="x\\nsix==1.16.0 #"`` smuggle a requirement
into a lock), path separators and names longer than ``MAX_NAME_BYTES`` are refused
with one located error. Everything else runpod-flash 1.21.0 accepts (it takes any
``str``) and that is safe as a file name is accepted.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flash_tasks.cli import main
from flash_tasks.endpoints import MAX_NAME_BYTES
from flash_tasks.errors import BuildError
from flash_tasks.manifest import BuildOptions, build_manifest
from flash_tasks.scan import scan_source

HEADER = "from runpod_flash import Endpoint, remote, LiveServerless\n"


def manifest(source: str):  # type: ignore[no-untyped-def]
    scans = {"app.py": scan_source(source.encode("utf-8"), "app.py")}
    return build_manifest(scans, BuildOptions(project_name="app"), {})


def decorated(name_literal: str) -> str:
    return HEADER + f"\n@Endpoint(name={name_literal}, cpu='cpu3c-1-2')\ndef work(x):\n    return x\n"


REFUSED = {
    "newline": ("'x\\nsix==1.16.0 #'", "control character '\\n'"),
    "carriage-return": ("'a\\rb'", "control character '\\r'"),
    "tab": ("'a\\tb'", "control character '\\t'"),
    "nul": ("'a\\x00b'", "control character '\\x00'"),
    "delete": ("'a\\x7fb'", "control character '\\x7f'"),
    "next-line": ("'a\\x85b'", "control character '\\x85'"),
    "line-separator": ("'a\\u2028b'", "control character '\\u2028'"),
    "slash": ("'a/b'", "path separator '/'"),
    "backslash": ("'a\\\\b'", "path separator '\\\\'"),
    "dot": ("'.'", "special folder name"),
    "dot-dot": ("'..'", "special folder name"),
    "too-long-ascii": (repr("n" * (MAX_NAME_BYTES + 1)), f"{MAX_NAME_BYTES + 1} bytes in UTF-8; at most {MAX_NAME_BYTES}"),
    "too-long-utf8": (repr("é" * (MAX_NAME_BYTES // 2 + 1)), f"{MAX_NAME_BYTES + 2} bytes in UTF-8"),
    "too-long-300": (repr("n" * 300), "300 bytes in UTF-8"),
}


@pytest.mark.parametrize(("literal", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_name_is_refused_at_the_name(literal: str, reason: str) -> None:
    with pytest.raises(BuildError) as info:
        manifest(decorated(literal))
    err = info.value
    assert reason in err.message
    assert (err.path, err.line, err.col) == ("app.py", 3, len("@Endpoint(name=") + 1)
    assert "handler_<name>.py" in (err.hint or "")


ACCEPTED = [
    "my worker",  # spaces
    "héllo-wörld",
    "\N{GRINNING FACE}" * (MAX_NAME_BYTES // 4),  # exactly the limit, in 4-byte characters
    "n" * MAX_NAME_BYTES,
    "a.b",
    "a:b=c,d",
    "UPPER_case-1",
    " padded ",
    "x#y",
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_safe_names_are_accepted(name: str) -> None:
    result = manifest(decorated(repr(name)))
    assert list(result.manifest.resources) == [name]
    assert result.manifest.resources[name].handler_file == f"handler_{name}.py"
    assert len(f"handler_{name}.py".encode()) <= 255


@pytest.mark.parametrize(
    "source",
    [
        HEADER + "api = Endpoint(name='api\\nsix', cpu='cpu3c-1-2')\n\n@api.post('/run')\nasync def run(x):\n    return x\n",
        HEADER + "cfg = LiveServerless(name='legacy\\nsix')\n\n@remote(cfg)\ndef run(x):\n    return x\n",
        HEADER + "client = Endpoint(name='client\\nsix', image='org/image:1')\n",
    ],
    ids=["route-endpoint", "legacy-remote", "client-endpoint"],
)
def test_every_way_of_naming_an_endpoint_is_checked(source: str) -> None:
    with pytest.raises(BuildError, match="control character") as info:
        manifest(source)
    assert info.value.path == "app.py" and info.value.line == 2


def test_newline_name_never_reaches_a_lock_file(tmp_path: Path, local_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(
        textwrap.dedent(
            """\
            from runpod_flash import Endpoint


            @Endpoint(name="x\\nsix==1.16.0 #", cpu="cpu3c-1-2", dependencies=["tinydep"])
            def work(x):
                return x
            """
        ),
        encoding="utf-8",
    )
    code = main(["build", "-C", str(app), "--no-index", "--find-links", str(local_index)])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert code == 1
    assert "app.py:4:16: error: endpoint name 'x\\nsix==1.16.0 #' contains the control character '\\n'" in output
    assert "Traceback" not in output
    flash = app / ".flash"
    written = [p for p in flash.rglob("*") if p.is_file()] if flash.exists() else []
    # The source (and its staged copy) spell the name with a backslash; a real line break
    # before the requirement would mean the name was written into a line-based file.
    assert not any(b"\nsix==1.16.0" in p.read_bytes() for p in written), [str(p) for p in written]
    assert not (flash / "locks").exists() or not any((flash / "locks").iterdir())
