"""Safety: building never runs the app's code, never writes outside ``<app>/.flash/``, never ships
files from outside the app, and never ships or prints the app's ``.env`` secrets.

Builds that could be hurt by imported code run in a subprocess, so that a regression (an import
that runs ``os._exit``) fails the test instead of killing the test run.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from flash_tasks.cli import main
from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks

ENDPOINT = '''\
import os

from runpod_flash import Endpoint


@Endpoint(name="{name}", cpu="cpu3c-1-2", env={{"API_KEY": os.environ.get("API_KEY", "not-set-at-build")}})
def {func}(payload: dict) -> dict:
    return payload
'''

ENV_SECRET = "sk-live-ENV-5f0c1d2e"
ENV_LOCAL_SECRET = "sk-live-ENVLOCAL-9a8b7c"
NESTED_ENV_SECRET = "sk-live-NESTED-31337"
OUTSIDE_SECRET = "outside-the-app-7e57"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def index_flags(local_index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(local_index)]


def subprocess_build(app: Path, local_index: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *index_flags(local_index), *extra],
        capture_output=True, text=True, timeout=300,
    )


def artifact_bytes(app: Path) -> bytes:
    """Every name, link target and file content in the artifact, decompressed."""
    parts = []
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        for member in tar:
            parts.append(member.name.encode() + b"\0" + member.linkname.encode())
            if member.isfile():
                parts.append(tar.extractfile(member).read())  # type: ignore[union-attr]
    return b"\n".join(parts)


def everything_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# -- the app's code never runs ---------------------------------------------------------------------------


def test_module_level_code_never_runs(tmp_path: Path, local_index: Path) -> None:
    marker = tmp_path / "IMPORTED"
    app = tmp_path / "hostile"
    side_effect = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    write(app / "main.py", side_effect + ENDPOINT.format(name="w", func="work"))
    write(app / "exits.py", side_effect + "import sys\nsys.exit(3)\n")
    write(app / "hard_exit.py", side_effect + "import os\nos._exit(1)\n")
    write(app / "pkg" / "__init__.py", side_effect + "raise SystemExit('package import')\n")
    write(app / "pkg" / "worker.py", side_effect + "from . import nothing_here\n" + ENDPOINT.format(name="pkg-worker", func="pkg_work"))
    write(app / "hangs.py", side_effect + "while True:\n    pass\n")
    write(app / "missing_imports.py", "import module_that_is_not_installed\nfrom nowhere import nothing\n")
    write(app / "setup.py", side_effect + "from setuptools import setup\nsetup(name='hostile', version='1.0')\n")
    write(app / "conftest.py", side_effect)
    write(app / "sitecustomize.py", side_effect)

    result = subprocess_build(app, local_index)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), marker.read_text()
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        listed = set(tar.getnames())
    assert {"./main.py", "./exits.py", "./hard_exit.py", "./pkg/worker.py", "./hangs.py"} <= listed
    # A rebuild after editing one of them still runs nothing.
    write(app / "exits.py", side_effect + "import sys\nsys.exit(4)\n")
    result = subprocess_build(app, local_index, "-v")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_local_project_requirements_are_never_built(tmp_path: Path, local_index: Path) -> None:
    """A requirement on the app itself (or any local project) never runs its setup.py."""
    marker = tmp_path / "BUILT"
    app = tmp_path / "selfdep"
    write(app / "main.py", ENDPOINT.format(name="w", func="work"))
    write(app / "setup.py", f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='selfdep', version='1.0')\n")
    for line in (".", "-e .", f"selfdep @ {app.as_uri()}"):
        write(app / "requirements.txt", line + "\n")
        result = subprocess_build(app, local_index)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert not marker.exists(), line


# -- the build writes only inside .flash -------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything about ``root``'s tree that a write would change, except under ``skip``."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in [*dirnames, *filenames]:
            path = here / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISDIR(st.st_mode):
                # A directory's mtime changes when .flash is created in it: record that only below the app root.
                out[rel] = ("dir", st.st_mode, st.st_mtime_ns if path != skip.parent else None)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def test_build_writes_nothing_outside_dot_flash(tmp_path: Path, local_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "workspace"
    app = parent / "app"
    write(app / "main.py", ENDPOINT.format(name="w", func="work"))
    write(app / "pkg" / "__init__.py", "")
    write(app / "pkg" / "helpers.py", "VALUE = 1\n")
    write(app / "requirements.txt", "tinydep==1.0\n")
    write(app / "README.md", "# app\n")
    write(app / ".gitignore", "scratch/\n")
    write(app / "scratch" / "notes.py", "x = 1\n")
    write(parent / "sibling" / "other.py", "y = 2\n")
    write(parent / "artifact.tar.gz", "not ours\n")
    (app / "link_up").symlink_to("..", target_is_directory=True)
    skip = app / ".flash"

    before = snapshot(parent, skip)
    assert main(["build", "-C", str(app), "-q", *index_flags(local_index)]) == 0
    assert main(["build", "-C", str(app), "-q", "--python-version", "3.11", *index_flags(local_index)]) == 0
    write(app / "pkg" / "helpers.py", "VALUE = (\n")  # a failing build must not write outside either
    after_edit = snapshot(parent, skip)
    assert main(["build", "-C", str(app), "-q", *index_flags(local_index)]) == 1
    capsys.readouterr()
    assert snapshot(parent, skip) == after_edit
    del after_edit["app/pkg/helpers.py"], before["app/pkg/helpers.py"]
    assert after_edit == before


# -- nothing from outside the app ships ------------------------------------------------------------------


def test_symlinks_out_of_the_app_never_enter_the_artifact(tmp_path: Path, local_index: Path) -> None:
    outside = tmp_path / "home"
    write(outside / "credentials.py", f"TOKEN = {OUTSIDE_SECRET!r}\n")
    write(outside / "ssh" / "id_rsa", f"-----BEGIN KEY----- {OUTSIDE_SECRET}\n")
    app = tmp_path / "project"
    write(app / "main.py", ENDPOINT.format(name="w", func="work"))
    (app / "credentials.py").symlink_to(outside / "credentials.py")
    (app / "ssh").symlink_to(outside / "ssh", target_is_directory=True)
    (app / "relative_creds.py").symlink_to(Path("..") / "home" / "credentials.py")
    (app / "sub").mkdir()
    (app / "sub" / "deep_link").symlink_to(Path("..") / ".." / "home", target_is_directory=True)
    run_tasks(BuildConfig(app_dir=app, find_links=(str(local_index),), no_index=True))
    shipped = artifact_bytes(app)
    assert OUTSIDE_SECRET.encode() not in shipped
    assert b"credentials" not in shipped and b"id_rsa" not in shipped
    # Not even the build's own state (scans, staged copies) holds it.
    assert OUTSIDE_SECRET.encode() not in everything_under(app / ".flash")


# -- .env secrets --------------------------------------------------------------------------------------------


@pytest.fixture()
def env_app(tmp_path: Path) -> Path:
    app = tmp_path / "secrets"
    write(app / "main.py", ENDPOINT.format(name="w", func="work"))
    write(app / ".env", f"API_KEY={ENV_SECRET}\nRUNPOD_API_KEY={ENV_SECRET}\n")
    write(app / ".env.local", f"API_KEY={ENV_LOCAL_SECRET}\n")
    write(app / "services" / ".env", f"DB_PASSWORD={NESTED_ENV_SECRET}\n")
    write(app / "services" / "db.py", "DSN = 'postgres://localhost'\n")
    write(app / ".env.example", "API_KEY=\n")
    return app


SECRETS = (ENV_SECRET, ENV_LOCAL_SECRET, NESTED_ENV_SECRET)


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        blob = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in blob, secret


def test_env_files_never_ship_or_print(env_app: Path, local_index: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_KEY", raising=False)
    assert main(["build", "-C", str(env_app), "-v", *index_flags(local_index)]) == 0
    out, err = capsys.readouterr()
    assert_no_secret(out, err, artifact_bytes(env_app), everything_under(env_app / ".flash"))
    with tarfile.open(env_app / ".flash" / "artifact.tar.gz") as tar:
        names = set(tar.getnames())
    assert "./.env" not in names and "./.env.local" not in names and "./services/.env" not in names
    assert "./.env.example" in names and "./services/db.py" in names
    manifest = (env_app / ".flash" / "flash_manifest.json").read_text()
    assert "not-set-at-build" in manifest  # the build never loads .env into its environment

    # Nor when the build fails, verbosely, or runs again after an edit.
    write(env_app / "main.py", ENDPOINT.format(name="w", func="work").replace("def work(payload", "def work(:\ndef work2(payload"))
    assert main(["build", "-C", str(env_app), "-v", *index_flags(local_index)]) == 1
    out, err = capsys.readouterr()
    assert_no_secret(out, err)
    write(env_app / "main.py", ENDPOINT.format(name="w2", func="work"))
    assert main(["build", "-C", str(env_app), "-v", *index_flags(local_index)]) == 0
    out, err = capsys.readouterr()
    assert_no_secret(out, err, artifact_bytes(env_app))


def test_env_files_stay_out_with_a_permissive_gitignore(env_app: Path, local_index: Path) -> None:
    """The app's root .gitignore cannot re-include them: the built-in ignores come after it."""
    write(env_app / ".gitignore", "!.env\n!.env.local\n!*\n")
    run_tasks(BuildConfig(app_dir=env_app, find_links=(str(local_index),), no_index=True))
    assert_no_secret(artifact_bytes(env_app))


def test_env_file_behind_a_symlink_never_ships(env_app: Path, local_index: Path) -> None:
    (env_app / "config.txt").symlink_to(".env")
    (env_app / "settings").symlink_to("services", target_is_directory=True)
    run_tasks(BuildConfig(app_dir=env_app, find_links=(str(local_index),), no_index=True))
    assert_no_secret(artifact_bytes(env_app))
