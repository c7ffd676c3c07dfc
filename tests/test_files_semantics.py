"""Which files ship, checked against git itself and against the documented rules.

flash_tasks.files promises git's ignore semantics, with the built-in patterns
acting as lines appended to the root ``.gitignore``. So each scenario below is
also laid out as a git work tree (the built-ins appended to its root
``.gitignore``) and ``git ls-files --others --exclude-standard`` /
``git check-ignore`` give the expected answer: the files that ship, and the
``.gitignore`` files of the folders git would look into. The edge cases are the
ones the random comparison in test_files.py rarely draws: escaped and trailing
spaces, CRLF, a byte order mark, comments, invalid lines, directory-only
patterns next to files of the same name. Symbolic links and unreadable input
are checked against the module's docstrings (git does not follow links).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flash_tasks import files as files_module
from flash_tasks.errors import BuildError
from flash_tasks.files import BUILTIN_IGNORES, list_app_files, read_gitignores, scan_app_tree

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")

# Scenario: (files, {folder: raw .gitignore bytes}).
Scenario = tuple[list[str], dict[str, bytes]]

SCENARIOS: dict[str, Scenario] = {
    "spaces": (
        [
            "trim.py",
            "esc.py ",
            "esc2.py ",
            "two.py  ",
            "bs\\",
            "keep me.py",
            "a.py",
            "spc /x.py",
            "plain/x.py",
            "cache/y.py",
            " ",
            "sub/ ",
        ],
        {"": b"trim.py   \nesc.py\\ \nesc2.py\\  \nbs\\\\ \nspc /\ncache/ \n\\ \n"},
    ),
    "comments-and-escapes": (
        ["#hash.py", "!bang.py", "normal.py", "x.py", "b.py", "dangling", "range.py", "ab.py", "c.py"],
        {"": b"# a comment\n\n\\#hash.py\n\\!bang.py\n!\n/\ndangling\\\n[a-\n[ab].py\n   \n"},
    ),
    "crlf-and-bom": (
        ["crlf.py", "bom.py", "kept.py", "d/e.py"],
        {"": b"\xef\xbb\xbfbom.py\r\ncrlf.py\r\nd/\r\n"},
    ),
    "negation-and-order": (
        ["a.log", "keep.log", "logs/a.txt", "logs/b.log", "out/skip.txt", "out/keep.txt", "sub/c.log", "z.tmp"],
        {"": b"*.log\n!keep.log\nlogs/\n!logs/a.txt\nout/**\n!out/keep.txt\n*.tmp\n!z.tmp\nz.tmp\n"},
    ),
    "anchoring": (
        [
            "root_only.py",
            "sub/root_only.py",
            "sub/x.py",
            "deep/sub/x.py",
            "a/b.py",
            "a/m/n/b.py",
            "q/deep.py",
            "deep.py",
            "w/deep.py",
        ],
        {"": b"/root_only.py\nsub/x.py\na/**/b.py\n**/deep.py\n!/w/deep.py\n"},
    ),
    "dir-only-vs-file": (
        ["data", "sub/data/x.py", "cfg/data", "dist", "build/x.py", "env", "docs"],
        {"": b"data/\n"},
    ),
    "nested": (
        [
            "notes.md",
            "README.md",
            "sub/notes.md",
            "sub/x.py",
            "sub/deeper/x.py",
            "sub/deeper/y.py",
            "sub/deeper/notes.md",
            "other/x.py",
            "sub/tests/t.py",
            "sub/.env",
        ],
        {
            "": b"x.py\n",
            "sub": b"!*.md\n!x.py\n/deeper/y.py\n!tests/\n!.env\n",
            "sub/deeper": b"*.md\n!y.py\n",
        },
    ),
    "ignored-folder-keeps-its-gitignore-unread": (
        ["big/a.py", "big/keep.py", "ok/b.py", "ok/inner/c.py", ".venv/lib.py", "venv/x.py"],
        {"": b"big/\n", "big": b"!keep.py\n", "ok": b"inner/c.py\n", "ok/inner": b"!c.py\n", ".venv": b"!*\n"},
    ),
    "builtins": (
        [
            "app.py",
            "x.pyc",
            "pkg/__pycache__/m.pyc",
            "a.tar.gz",
            "test_app.py",
            "app_test.py",
            "docs/i.md",
            "CHANGES.md",
            "README.md",
            "pkg/README.md",
            ".env",
            ".env.local",
            "m.egg-info/PKG",
            ".flash/f",
            ".idea/w",
            "tests/t.py",
        ],
        {},
    ),
    "builtins-beat-root": (
        ["CHANGES.md", "test_app.py", "tests/t.py", "README.md"],
        {"": b"!CHANGES.md\n!test_app.py\n!tests/\nREADME.md\n"},
    ),
    "unicode": (
        ["ünï.py", "日本/データ.py", "ünï.txt", "é/x.py"],
        {"": b"*.txt\n\xc3\xa9/\n"},
    ),
}


def _write(root: Path, rel: str, data: bytes) -> None:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def build_app(root: Path, scenario: Scenario) -> Path:
    paths, ignores = scenario
    for rel in paths:
        _write(root, rel, b"x\n")
    for folder, data in ignores.items():
        _write(root, f"{folder}/.gitignore" if folder else ".gitignore", data)
    return root


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    home = repo.parent / "git-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }
    done = subprocess.run(
        [GIT or "git", "-c", "core.ignoreCase=false", "-c", "core.quotePath=false", *args],
        cwd=repo, env=env, input=stdin, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


def git_answer(tmp_path: Path, scenario: Scenario) -> tuple[list[str], list[str]]:
    """(files git would add, .gitignore files of folders git descends into), built-ins appended to the root file."""
    repo = build_app(tmp_path / "repo", scenario)
    root_ignore = repo / ".gitignore"
    own = root_ignore.read_bytes() if root_ignore.exists() else b""
    if own and not own.endswith(b"\n"):
        own += b"\n"
    root_ignore.write_bytes(own + "".join(f"{line}\n" for line in BUILTIN_IGNORES).encode("utf-8"))
    _git(repo, "init", "-q", ".")
    listed = [
        p.decode("utf-8") for p in _git(repo, "ls-files", "--others", "--exclude-standard", "-z").split(b"\0") if p
    ]
    shipped = sorted(p for p in listed if p.rsplit("/", 1)[-1] != ".gitignore")

    folders = sorted(
        {str(Path(rel).parent) for rel in scenario[1] if rel}
        | {"/".join(p.split("/")[:i]) for p in scenario[0] for i in range(1, p.count("/") + 1)}
    )
    ignored = set()
    if folders:
        out = _git(
            repo,
            "check-ignore",
            "--no-index",
            "-z",
            "--stdin",
            stdin=b"\0".join(f.encode("utf-8") for f in folders) + b"\0",
        )
        ignored = {p.decode("utf-8") for p in out.split(b"\0") if p}

    def entered(folder: str) -> bool:
        parts = folder.split("/")
        return not any("/".join(parts[:i]) in ignored for i in range(1, len(parts) + 1))

    gitignores = sorted(
        (f"{folder}/.gitignore" if folder else ".gitignore") for folder in scenario[1] if not folder or entered(folder)
    )
    return shipped, gitignores


@needs_git
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_shipped_files_and_ignore_files_agree_with_git(tmp_path: Path, name: str) -> None:
    scenario = SCENARIOS[name]
    app = build_app(tmp_path / "app", scenario)
    want_files, want_ignores = git_answer(tmp_path, scenario)
    found = scan_app_tree(app)
    assert found.files == want_files
    assert found.ignore_files == want_ignores
    assert list_app_files(app) == want_files
    assert read_gitignores(app) == want_ignores


@needs_git
def test_scan_of_the_app_folder_given_as_a_string_with_a_trailing_slash(tmp_path: Path) -> None:
    scenario = SCENARIOS["nested"]
    app = build_app(tmp_path / "app", scenario)
    want_files, _ = git_answer(tmp_path, scenario)
    assert scan_app_tree(Path(str(app) + os.sep)).files == want_files


# --------------------------------------------------------------------------- symbolic links


def test_links_to_folders_and_files_inside_ship_under_the_link_path(tmp_path: Path) -> None:
    app = build_app(
        tmp_path / "app", (["pkg/m.py", "pkg/.env", "real.py", ".env", "ignored/i.py"], {"": b"ignored/\n"})
    )
    (app / "alias").symlink_to("pkg", target_is_directory=True)
    (app / "alias.py").symlink_to("real.py")
    (app / "secret.py").symlink_to(".env")  # shows a file that does not ship itself
    (app / "peek").symlink_to("ignored", target_is_directory=True)
    (app / "peek.py").symlink_to("ignored/i.py")
    (app / "self").symlink_to(".", target_is_directory=True)  # the app folder itself: nothing new
    (app / "pkg" / "up").symlink_to("..", target_is_directory=True)  # a cycle
    assert list_app_files(app) == ["alias.py", "alias/m.py", "pkg/m.py", "real.py"]


def test_links_leading_out_of_the_app_are_not_followed(tmp_path: Path) -> None:
    """Following them would read folders the user never put in the app: here, a name that is not UTF-8."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.py").write_text("x\n", encoding="utf-8")
    os.close(os.open(os.fsencode(outside) + b"/\xff.py", os.O_CREAT | os.O_WRONLY, 0o644))
    app = build_app(tmp_path / "app", (["a.py"], {}))
    (app / "out").symlink_to(outside, target_is_directory=True)
    (app / "o.py").symlink_to(outside / "o.py")
    (app / "prefix-twin").symlink_to(tmp_path / "app-twin", target_is_directory=True)
    build_app(tmp_path / "app-twin", (["t.py"], {}))
    assert list_app_files(app) == ["a.py"]


def test_broken_links_and_links_to_special_files_are_skipped(tmp_path: Path) -> None:
    app = build_app(tmp_path / "app", (["a.py"], {}))
    (app / "gone.py").symlink_to("missing.py")
    os.mkfifo(app / "pipe")
    (app / "pipe.py").symlink_to("pipe")
    (app / "loop.py").symlink_to("loop.py")
    assert list_app_files(app) == ["a.py"]


# --------------------------------------------------------------------------- bad input


def test_a_name_that_is_not_utf8_stops_the_build_unless_ignored(tmp_path: Path) -> None:
    app = build_app(tmp_path / "app", (["a.py", "subX/b.py"], {}))
    os.close(os.open(os.fsencode(app) + b"/subX/\xff.py", os.O_CREAT | os.O_WRONLY, 0o644))
    with pytest.raises(BuildError) as info:
        scan_app_tree(app)
    assert "subX/\\xff.py" in info.value.message
    assert info.value.path == "subX"
    assert info.value.hint is not None and ".gitignore" in info.value.hint
    (app / ".gitignore").write_bytes(b"subX/*.py\n!b.py\n")
    assert list_app_files(app) == ["a.py", "subX/b.py"]


def test_a_root_level_name_that_is_not_utf8_is_reported_at_the_app_folder(tmp_path: Path) -> None:
    app = build_app(tmp_path / "app", (["a.py"], {}))
    os.mkdir(os.fsencode(app) + b"/\xfe\xfe")
    with pytest.raises(BuildError) as info:
        scan_app_tree(app)
    assert info.value.path == "." and "\\xfe\\xfe" in info.value.message


@pytest.mark.parametrize("folder", ["", "sub/deeper"])
def test_gitignore_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path, folder: str) -> None:
    data = b"ok.py\n# caf\xe9\n"
    app = build_app(tmp_path / "app", (["a.py", "sub/deeper/x.py"], {folder: data}))
    rel = f"{folder}/.gitignore" if folder else ".gitignore"
    with pytest.raises(BuildError) as info:
        scan_app_tree(app)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.start
    assert f"'{rel}'" in info.value.message and f"byte {byte}" in info.value.message
    assert info.value.path == rel
    assert info.value.hint is not None and "UTF-8" in info.value.hint


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (OSError("no strerror here"), "no strerror here"),
    ],
)
def test_gitignore_that_cannot_be_opened_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, reason: str
) -> None:
    app = build_app(tmp_path / "app", (["a.py", "sub/x.py"], {"sub": b"x.py\n"}))

    def refuse(path: str, mode: str = "r") -> object:
        raise error

    monkeypatch.setattr(files_module, "open", refuse, raising=False)
    with pytest.raises(BuildError) as info:
        scan_app_tree(app)
    assert info.value.message == f"cannot read 'sub/.gitignore': {reason}"
    assert info.value.path == "sub/.gitignore"
    assert info.value.hint is not None and "permission" in info.value.hint


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (OSError("no strerror here"), "no strerror here"),
    ],
)
@pytest.mark.parametrize("folder", ["", "sub/innerX"])
def test_unreadable_folder_stops_the_build_with_a_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, reason: str, folder: str
) -> None:
    app = build_app(tmp_path / "app", (["a.py", "sub/innerX/x.py"], {}))
    broken = os.fspath(app / folder) if folder else os.fspath(app)
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if os.path.normpath(path) == os.path.normpath(broken):
            raise error
        return real_scandir(path)

    monkeypatch.setattr(files_module.os, "scandir", scandir)
    with pytest.raises(BuildError) as info:
        scan_app_tree(app)
    rel = folder or "."
    assert info.value.message == f"cannot read folder '{rel}': {reason}"
    assert info.value.path == rel
    assert info.value.hint is not None
    if folder:
        assert f"chmod u+rx '{rel}'" in info.value.hint and f"'/{rel}/'" in info.value.hint
    else:
        assert "app folder" in info.value.hint and "chmod" not in info.value.hint
    monkeypatch.setattr(files_module.os, "scandir", real_scandir)
    if folder:  # an ignored folder is never read, so it cannot stop the build
        (app / ".gitignore").write_text(f"/{folder}/\n", encoding="utf-8")
        monkeypatch.setattr(files_module.os, "scandir", scandir)
        assert list_app_files(app) == ["a.py"]


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_app_folder_that_is_not_a_folder(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "app"
    if kind == "file":
        target.write_text("x", encoding="utf-8")
    with pytest.raises(BuildError) as info:
        scan_app_tree(target)
    assert str(target) in info.value.message and info.value.path == str(target)
    assert info.value.hint is not None and "app folder" in info.value.hint


@needs_git
def test_a_gitignore_that_is_a_symbolic_link_is_not_read(tmp_path: Path) -> None:
    """Git refuses to follow an in-tree .gitignore that is a link; so does the walk."""
    scenario: Scenario = (["a.py", "sub/x.py", "sub/y.py", "sub/rules.txt"], {})
    app = build_app(tmp_path / "app", scenario)
    (app / "sub" / "rules.txt").write_bytes(b"x.py\n")
    (app / "sub" / ".gitignore").symlink_to("rules.txt")
    repo = tmp_path / "repo"
    shutil.copytree(app, repo, symlinks=True)
    (repo / ".gitignore").write_text("".join(f"{line}\n" for line in BUILTIN_IGNORES), encoding="utf-8")
    _git(repo, "init", "-q", ".")
    listed = _git(repo, "ls-files", "--others", "--exclude-standard", "-z").split(b"\0")
    want = sorted(p.decode("utf-8") for p in listed if p and not p.endswith(b".gitignore"))
    assert "sub/x.py" in want
    found = scan_app_tree(app)
    assert found.files == want
    assert found.ignore_files == []


def test_a_folder_beside_the_app_with_a_similar_name_is_outside(tmp_path: Path) -> None:
    """An app in "app " (trailing space) does not contain "app/": a link there is not followed."""
    app = build_app(tmp_path / "app ", (["a.py"], {}))
    sibling = build_app(tmp_path / "app", (["b.py"], {}))
    os.close(os.open(os.fsencode(sibling) + b"/\xff.py", os.O_CREAT | os.O_WRONLY, 0o644))
    (app / "peek").symlink_to("../app", target_is_directory=True)
    assert list_app_files(app) == ["a.py"]
