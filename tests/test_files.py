"""Tests for flash_tasks.files: which files of an app folder ship."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flash_tasks.errors import BuildError
from flash_tasks.files import (
    BUILTIN_IGNORES,
    AppFiles,
    list_app_files,
    read_gitignores,
    scan_app_tree,
)


def make_tree(root: Path, paths: list[str] | dict[str, str]) -> Path:
    """Create files (parents included); a dict maps path -> content."""
    items = paths.items() if isinstance(paths, dict) else ((p, "x\n") for p in paths)
    for rel, content in items:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return root


def gitignore(root: Path, *lines: str, folder: str = "") -> None:
    path = root / folder / ".gitignore" if folder else root / ".gitignore"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- built-ins


def test_builtin_patterns_are_exactly_the_documented_list() -> None:
    assert BUILTIN_IGNORES == (
        ".build/", ".flash/", ".runpod/", "*.tar.gz", ".git/", ".gitignore", "__pycache__/", "*.pyc",
        "*.pyo", "*.pyd", "*.egg-info/", "dist/", "build/", ".venv/", "venv/", "env/", ".vscode/",
        ".idea/", ".env", ".env.local", "tests/", "test_*.py", "*_test.py", "docs/", "*.md", "!README.md",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("path", "ships"),
    [
        ("app.py", True),
        ("pkg/handler.py", True),
        ("tests/test_app.py", False),
        ("pkg/tests/helpers.py", False),
        ("test_app.py", False),
        ("pkg/test_app.py", False),
        ("app_test.py", False),
        ("pkg/app_test.py", False),
        ("testing.py", True),
        ("docs/index.html", False),
        ("pkg/docs/guide.txt", False),
        ("CHANGES.md", False),
        ("pkg/notes.md", False),
        ("README.md", True),
        ("pkg/deep/README.md", True),
        (".env", False),
        ("pkg/.env", False),
        (".env.local", False),
        (".env.example", True),
        (".venv/lib/site.py", False),
        ("venv/bin/python", False),
        ("env/bin/python", False),
        ("environment.py", True),
        ("__pycache__/app.cpython-311.pyc", False),
        ("pkg/__pycache__/x.txt", False),
        ("mod.pyc", False),
        ("mod.pyo", False),
        ("mod.pyd", False),
        ("bundle.tar.gz", False),
        ("pkg/archive.tar.gz", False),
        ("data.gz", True),
        (".flash/manifest.json", False),
        (".build/out.txt", False),
        (".runpod/cfg", False),
        (".git/HEAD", False),
        ("dist/pkg.whl", False),
        ("build/lib/x.py", False),
        ("pkg/build/x.py", False),
        ("app.egg-info/PKG-INFO", False),
        (".vscode/settings.json", False),
        (".idea/workspace.xml", False),
    ],
)
def test_builtin_ignores(tmp_path: Path, path: str, ships: bool) -> None:
    make_tree(tmp_path, ["main.py", path])
    shipped = list_app_files(tmp_path)
    assert "main.py" in shipped
    assert (path in shipped) is ships


def test_dir_only_builtins_do_not_hide_files_with_that_name(tmp_path: Path) -> None:
    make_tree(tmp_path, ["build", "tests", "docs", "env"])
    assert list_app_files(tmp_path) == ["build", "docs", "env", "tests"]


def test_gitignore_files_never_ship_even_when_negated(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py", "sub/b.py"])
    gitignore(tmp_path, "!.gitignore")
    gitignore(tmp_path, "!.gitignore", folder="sub")
    assert list_app_files(tmp_path) == ["a.py", "sub/b.py"]


def test_builtins_apply_after_the_root_gitignore(tmp_path: Path) -> None:
    make_tree(tmp_path, ["README.md", "pkg/README.md", "notes.md", "app.py"])
    # The user cannot drop README.md nor re-include another markdown file from
    # the root file: the built-ins come later and win.
    gitignore(tmp_path, "README.md", "!notes.md")
    assert list_app_files(tmp_path) == ["README.md", "app.py", "pkg/README.md"]


def test_nested_gitignore_overrides_builtins(tmp_path: Path) -> None:
    # Built-ins behave like lines of the root file, so a deeper file wins.
    make_tree(tmp_path, ["pkg/guide.md", "other/guide.md"])
    gitignore(tmp_path, "!guide.md", folder="pkg")
    assert list_app_files(tmp_path) == ["pkg/guide.md"]


# --------------------------------------------------------------------------- user .gitignore


def test_negation(tmp_path: Path) -> None:
    make_tree(
        tmp_path, ["a.log", "important.log", "sub/important.log", "sub/b.log", "c.py"]
    )
    gitignore(tmp_path, "*.log", "!important.log")
    assert list_app_files(tmp_path) == ["c.py", "important.log", "sub/important.log"]


def test_last_matching_line_wins(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.txt", "b.txt"])
    gitignore(tmp_path, "!a.txt", "*.txt")
    assert list_app_files(tmp_path) == []


def test_directory_only_pattern(tmp_path: Path) -> None:
    make_tree(tmp_path, ["logs/today.txt", "pkg/logs/x.txt", "other/logs", "keep.py"])
    gitignore(tmp_path, "logs/")
    assert list_app_files(tmp_path) == ["keep.py", "other/logs"]


def test_anchored_patterns(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        ["config.py", "pkg/config.py", "a/b.py", "x/a/b.py", "secret", "pkg/secret"],
    )
    gitignore(tmp_path, "/config.py", "a/b.py", "secret")
    assert list_app_files(tmp_path) == ["pkg/config.py", "x/a/b.py"]


def test_double_star(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "cache/x",
            "a/cache/y",
            "a/b/cache/z",
            "lib/z.txt",
            "lib/q/r/z.txt",
            "lib/z.py",
            "gen/1",
            "gen/2/3",
            "k.py",
        ],
    )
    gitignore(tmp_path, "**/cache", "lib/**/z.txt", "gen/**")
    assert list_app_files(tmp_path) == ["k.py", "lib/z.py"]


def test_double_star_content_pattern_keeps_the_folder_open_for_negation(
    tmp_path: Path,
) -> None:
    # "a/**" matches what is inside a/, not a/ itself, so a/keep can come back.
    make_tree(tmp_path, ["a/drop", "a/keep", "a/sub/x"])
    gitignore(tmp_path, "a/**", "!a/keep")
    assert list_app_files(tmp_path) == ["a/keep"]


def test_escapes_comments_and_trailing_spaces(tmp_path: Path) -> None:
    make_tree(
        tmp_path, ["#hash.txt", "!bang.txt", "trail.txt", "sp ", "sp", "plain.py"]
    )
    gitignore(
        tmp_path,
        "# a comment",
        "",
        "\\#hash.txt",
        "\\!bang.txt",
        "trail.txt   ",
        "sp\\ ",
    )
    assert list_app_files(tmp_path) == ["plain.py", "sp"]


def test_trailing_spaces_after_directory_slash(tmp_path: Path) -> None:
    make_tree(tmp_path, ["logs/x.txt", "logs2", "k.py"])
    gitignore(tmp_path, "logs/   ", "logs2/  ")
    assert list_app_files(tmp_path) == ["k.py", "logs2"]


def test_crlf_and_bom_gitignore(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.txt", "b.txt", "c.py"])
    (tmp_path / ".gitignore").write_bytes(b"\xef\xbb\xbfa.txt\r\nb.txt\r\n")
    assert list_app_files(tmp_path) == ["c.py"]


def test_nested_gitignore_is_relative_to_its_folder(tmp_path: Path) -> None:
    make_tree(tmp_path, ["data/x", "sub/data/y", "sub/deeper/data/z", "sub/keep.py"])
    gitignore(tmp_path, "/data", folder="sub")
    assert list_app_files(tmp_path) == ["data/x", "sub/deeper/data/z", "sub/keep.py"]


def test_deeper_gitignore_overrides_shallower(tmp_path: Path) -> None:
    make_tree(
        tmp_path, ["keep.txt", "a.txt", "sub/keep.txt", "sub/a.txt", "sub/inner/a.txt"]
    )
    gitignore(tmp_path, "*.txt")
    gitignore(tmp_path, "!keep.txt", folder="sub")
    gitignore(tmp_path, "!*.txt", folder="sub/inner")
    assert list_app_files(tmp_path) == ["sub/inner/a.txt", "sub/keep.txt"]


def test_nothing_inside_an_ignored_folder_can_come_back(tmp_path: Path) -> None:
    make_tree(tmp_path, ["out/keep.txt", "out/drop.txt", "main.py"])
    gitignore(tmp_path, "out/", "!out/keep.txt")
    gitignore(tmp_path, "!*", folder="out")
    result = scan_app_tree(tmp_path)
    assert result.files == ["main.py"]
    assert result.ignore_files == [".gitignore"]  # out/.gitignore was never read


def test_negated_folder_does_not_reinclude_its_files(tmp_path: Path) -> None:
    # "!b/" only concerns the folder b itself, never the files in it: git still
    # applies "*.txt" (from any level) to b/c.txt.
    make_tree(tmp_path, ["b/c.txt", "a/b/c.txt", "b/c.py"])
    gitignore(tmp_path, "*.txt", "!b/")
    assert list_app_files(tmp_path) == ["b/c.py"]
    gitignore(tmp_path, "*.txt")
    gitignore(tmp_path, "!b/", folder="a")
    assert list_app_files(tmp_path) == ["b/c.py"]


def test_pattern_matching_a_folder_name_does_not_match_a_file_below_it(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path, ["b/b", "b/x"])
    gitignore(tmp_path, "b", "!b/")
    assert list_app_files(tmp_path) == ["b/x"]


def test_ignore_files_lists_every_consulted_gitignore(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py", "pkg/b.py", "pkg/sub/c.py", ".venv/x.py"])
    gitignore(tmp_path, "*.log")
    gitignore(tmp_path, "*.tmp", folder="pkg/sub")
    gitignore(tmp_path, "*", folder=".venv")
    result = scan_app_tree(tmp_path)
    assert isinstance(result, AppFiles)
    assert result.ignore_files == [".gitignore", "pkg/sub/.gitignore"]
    assert read_gitignores(tmp_path) == result.ignore_files
    assert result.files == ["a.py", "pkg/b.py", "pkg/sub/c.py"]
    assert result.dirs == ["", "pkg", "pkg/sub"]  # the folders entered; never an ignored one
    assert result.links is False


def test_without_gitignore(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py", "tests/t.py"])
    assert scan_app_tree(tmp_path) == AppFiles(files=["a.py"], ignore_files=[], dirs=[""], links=False)


def test_a_followed_link_is_reported(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py", "lib/b.py"])
    assert scan_app_tree(tmp_path).links is False
    (tmp_path / "alias").symlink_to(tmp_path / "lib")
    result = scan_app_tree(tmp_path)
    assert result.links is True
    assert result.files == ["a.py", "alias/b.py", "lib/b.py"]


# --------------------------------------------------------------------------- names and ordering


def test_unicode_and_spaces(tmp_path: Path) -> None:
    names = [
        "my file.py",
        "dïr with space/ünïcødé.py",
        "日本/モジュール.py",
        "skip me.txt",
        "ñ.log",
    ]
    make_tree(tmp_path, names)
    gitignore(tmp_path, "skip me.txt", "ñ.log")
    assert list_app_files(tmp_path) == [
        "dïr with space/ünïcødé.py",
        "my file.py",
        "日本/モジュール.py",
    ]


def test_sorted_by_posix_string(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/b", "a.b", "B.py", "a-c", "Z/z"])
    result = list_app_files(tmp_path)
    assert result == ["B.py", "Z/z", "a-c", "a.b", "a/b"]
    assert result == sorted(result)


# --------------------------------------------------------------------------- symlinks


needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks"
)


@needs_symlinks
def test_symlink_inside_app_ships_under_the_link_path(tmp_path: Path) -> None:
    app = make_tree(tmp_path / "app", ["real/mod.py", "data.txt"])
    (app / "alias").symlink_to("real", target_is_directory=True)
    (app / "copy.txt").symlink_to("data.txt")
    assert list_app_files(app) == [
        "alias/mod.py",
        "copy.txt",
        "data.txt",
        "real/mod.py",
    ]


@needs_symlinks
def test_symlinked_entries_obey_ignore_rules(tmp_path: Path) -> None:
    app = make_tree(tmp_path / "app", ["real/mod.py"])
    (app / "linkdir").symlink_to("real", target_is_directory=True)
    gitignore(app, "linkdir/")
    assert list_app_files(app) == ["real/mod.py"]


@needs_symlinks
def test_symlink_leaving_the_app_is_skipped(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", ["secret.txt", "dir/leak.py"])
    app = make_tree(tmp_path / "app", ["main.py"])
    (app / "secret.txt").symlink_to(outside / "secret.txt")
    (app / "dir").symlink_to(outside / "dir", target_is_directory=True)
    (app / "rel").symlink_to("../outside/dir", target_is_directory=True)
    assert list_app_files(app) == ["main.py"]


@needs_symlinks
def test_symlink_loops_terminate(tmp_path: Path) -> None:
    app = make_tree(tmp_path / "app", ["main.py", "a/b/x.py"])
    (app / "a" / "b" / "up").symlink_to(
        "../..", target_is_directory=True
    )  # back to the app root
    (app / "a" / "self").symlink_to(".", target_is_directory=True)
    (app / "root").symlink_to(app, target_is_directory=True)
    (app / "p").symlink_to("q")
    (app / "q").symlink_to("p")  # p <-> q cycle, resolves to nothing
    (app / "me").symlink_to("me")
    assert list_app_files(app) == ["a/b/x.py", "main.py"]


@needs_symlinks
def test_broken_symlink_is_skipped(tmp_path: Path) -> None:
    app = make_tree(tmp_path / "app", ["main.py"])
    (app / "dangling.py").symlink_to("missing.py")
    (app / "gone").symlink_to("missing_dir", target_is_directory=True)
    assert list_app_files(app) == ["main.py"]


# --------------------------------------------------------------------------- errors


def test_unreadable_folder_raises(tmp_path: Path) -> None:
    make_tree(tmp_path, ["main.py", "private/key.pem"])
    private = tmp_path / "private"
    private.chmod(0)
    try:
        if os.access(private, os.R_OK):
            pytest.skip("permissions are not enforced for this user (root?)")
        with pytest.raises(BuildError) as info:
            list_app_files(tmp_path)
        assert "private" in info.value.message
        assert info.value.hint is not None and ".gitignore" in info.value.hint
    finally:
        private.chmod(0o755)


def test_unreadable_folder_raises_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, ["main.py", "pkg/private/key.pem"])
    real_scandir = os.scandir
    blocked = str(tmp_path / "pkg" / "private")

    def fake_scandir(path: str) -> object:
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    with pytest.raises(BuildError) as info:
        list_app_files(tmp_path)
    err = info.value
    assert "pkg/private" in err.message and "permission" in err.message
    assert err.path == "pkg/private"
    assert (
        err.hint is not None and "permission" in err.hint and ".gitignore" in err.hint
    )


def test_unreadable_folder_that_is_ignored_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, ["main.py", "private/key.pem"])
    gitignore(tmp_path, "/private/")
    real_scandir = os.scandir
    blocked = str(tmp_path / "private")

    def fake_scandir(path: str) -> object:
        if os.fspath(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    assert list_app_files(tmp_path) == ["main.py"]


def test_non_utf8_gitignore_raises(tmp_path: Path) -> None:
    make_tree(tmp_path, ["main.py", "sub/x.py"])
    (tmp_path / "sub" / ".gitignore").write_bytes(b"caf\xe9.txt\n")
    with pytest.raises(BuildError) as info:
        list_app_files(tmp_path)
    assert "sub/.gitignore" in info.value.message
    assert info.value.path == "sub/.gitignore"


def test_missing_app_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(BuildError):
        list_app_files(tmp_path / "nope")


# --------------------------------------------------------------------------- performance


def test_ignored_venv_is_never_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, [f"pkg{i % 10}/mod{i}.py" for i in range(300)])
    make_tree(tmp_path, [f".venv/lib/p{i % 20}/f{i}.py" for i in range(400)])
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path: str) -> object:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    start = time.perf_counter()
    shipped = list_app_files(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(shipped) == 300
    assert not [p for p in listed if ".venv" in p]
    assert elapsed < 0.5


# --------------------------------------------------------------------------- agreement with git

GIT = shutil.which("git")

_NAMES = [
    "a",
    "b",
    "c.py",
    "d.md",
    "README.md",
    "tests",
    "test_x.py",
    "x_test.py",
    "build",
    ".env",
    "e f",
    "ü.py",
    "a.b",
]
_SEGMENTS = [
    "a",
    "b",
    "*",
    "**",
    "?",
    "*.py",
    "*.md",
    "c.py",
    "d.md",
    "README.md",
    "tests",
    "te*",
    "[ab]",
    "e f",
    "ü.py",
    "*.b",
    "a*",
]
_RAW_LINES = [
    "",
    "# comment",
    "\\#a",
    "\\!a",
    "a   ",
    "e\\ f",
    "!",
    "/",
    "**/",
    "*/",
    "!*/",
    "!**",
    "!*.md",
]


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 6)) == 0:
        return draw(st.sampled_from(_RAW_LINES))
    segments = draw(st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=3))
    return (
        ("!" if draw(st.booleans()) else "")
        + ("/" if draw(st.integers(0, 3)) == 0 else "")
        + "/".join(segments)
        + ("/" if draw(st.integers(0, 2)) == 0 else "")
        + ("  " if draw(st.integers(0, 9)) == 0 else "")
    )


@st.composite
def _trees(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """Random files and .gitignore contents (root and up to two nested folders)."""
    raw = draw(
        st.lists(
            st.lists(st.sampled_from(_NAMES), min_size=1, max_size=3),
            min_size=1,
            max_size=10,
        )
    )
    files: list[str] = []
    dirs: set[str] = set()
    for parts in raw:
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        path = "/".join(parts)
        if path in dirs or path in files or any(p in files for p in prefixes):
            continue
        files.append(path)
        dirs.update(prefixes)
    ignores = {"": draw(st.lists(_patterns(), max_size=6))}
    if dirs:
        for folder in draw(
            st.lists(st.sampled_from(sorted(dirs)), max_size=2, unique=True)
        ):
            ignores[folder] = draw(st.lists(_patterns(), min_size=1, max_size=4))
    return files, ignores


def _git_shipped(repo: Path) -> set[str]:
    home = repo.parent / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }
    subprocess.run([GIT or "git", "init", "-q", str(repo)], check=True, env=env)
    out = subprocess.run(
        [
            GIT or "git",
            "-c",
            "core.ignoreCase=false",
            "ls-files",
            "--others",
            "--exclude-standard",
            "-z",
        ],
        cwd=repo,
        check=True,
        env=env,
        capture_output=True,
    ).stdout
    listed = {p.decode("utf-8") for p in out.split(b"\0") if p}
    return {p for p in listed if p.rsplit("/", 1)[-1] != ".gitignore"}


@pytest.mark.skipif(GIT is None, reason="git is not installed")
@settings(max_examples=100, deadline=None)
@given(_trees())
def test_agrees_with_git(tree: tuple[list[str], dict[str, list[str]]]) -> None:
    paths, ignores = tree
    with tempfile.TemporaryDirectory() as tmp:
        app = make_tree(Path(tmp) / "app", paths)
        for folder, lines in ignores.items():
            (app / folder / ".gitignore").write_text(
                "".join(f"{line}\n" for line in lines), encoding="utf-8"
            )
        repo = Path(tmp) / "repo"
        shutil.copytree(app, repo)
        # In git the built-ins are simply lines at the end of the root .gitignore.
        (repo / ".gitignore").write_text(
            "".join(f"{line}\n" for line in [*ignores[""], *BUILTIN_IGNORES]),
            encoding="utf-8",
        )
        expected = _git_shipped(repo)
        assert list_app_files(app) == sorted(expected)


# --------------------------------------------------------------------------- rules known without pathspec


def _verdict(regex: object, path: str) -> bool:
    """Whether a rule's regex matches ``path`` itself (not through the "below a directory" group)."""
    match = regex.search(path)  # type: ignore[attr-defined]
    return match is not None and match.lastindex is None


def _sample_paths(line: str) -> list[str]:
    name = line.lstrip("!")
    names = {name.replace("*", ""), name.replace("*", "x"), name.replace("*", "a.b"), name.upper(), "x" + name, name + "x"}
    names.discard("")
    out = []
    for n in sorted(names):
        out += [n, f"sub/{n}", f"a/b/{n}", f"{n}/inner.py", f"sub/{n}/deeper/file", f"{n}.bak", f".{n}", "plain.py"]
    return out


def test_every_known_line_is_what_pathspec_makes_of_it() -> None:
    """The table that spares most builds the pathspec import must not say anything pathspec would not."""
    from pathspec import GitIgnoreSpec

    from flash_tasks.files import KNOWN_LINES

    for line, (pattern, include) in KNOWN_LINES.items():
        theirs = GitIgnoreSpec.from_lines([line]).patterns[0]
        assert bool(theirs.include) == include, line
        ours = re.compile(pattern)
        for path in _sample_paths(line):
            assert _verdict(ours, path) == _verdict(theirs.regex, path), (line, path)


def test_builtin_lines_are_all_known() -> None:
    from flash_tasks.files import KNOWN_LINES

    for raw in BUILTIN_IGNORES:
        assert raw.removesuffix("/") in KNOWN_LINES, raw


def test_an_app_whose_ignore_lines_are_all_known_does_not_import_pathspec(tmp_path: Path) -> None:
    make_tree(tmp_path, ["main.py", "pkg/mod.py", "pkg/__pycache__/mod.pyc", "notes.log"])
    gitignore(tmp_path, "__pycache__/", "*.log", ".DS_Store")
    probe = (
        "import sys\nfrom pathlib import Path\nfrom flash_tasks.files import scan_app_tree\n"
        f"print(scan_app_tree(Path({str(tmp_path)!r})).files, 'pathspec' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout == "['main.py', 'pkg/mod.py'] False\n"
    gitignore(tmp_path, "__pycache__/", "*.log", "pkg/mod.py")  # a line the table does not know
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout == "['main.py'] True\n"
