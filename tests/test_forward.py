"""``flash`` hands the commands it does not implement to runpod-flash's own CLI.

Hermetic tests install a stand-in ``runpod-flash`` distribution (metadata with a
``flash`` console-script entry point, and a module that reports what it was
given) into a temporary site folder or a temporary ``uv tool`` environment. The
last test installs the real runpod-flash 1.21.0 next to flash-tasks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_CLI = '''
import json, os, signal, sys, time

def main():
    report = {
        "argv": sys.argv,
        "prefix": sys.prefix,
        "pid": os.getpid(),
        "sigint_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "guard": os.environ.get("FLASH_TASKS_FORWARDED"),
        "stdout_is_fd_1": sys.stdout.fileno() == 1,
    }
    print(json.dumps(report), flush=True)
    if "--wait-for-ctrl-c" in sys.argv:
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            print("stand-in caught Ctrl-C", flush=True)
            return 42
    return int(os.environ.get("FAKE_EXIT", "0"))
'''


def install_fake(site: Path, version: str = "9.9.9") -> None:
    """A stand-in runpod-flash: dist-info with a ``flash`` console script, and its module."""
    info = site / f"runpod_flash-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: runpod-flash\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nflash = fake_runpod_cli:main\n")
    (site / "fake_runpod_cli.py").write_text(FAKE_CLI)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no runpod-flash anywhere (an empty uv tool folder)."""
    tools = tmp_path / "uv-tools"
    tools.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLASH_TASKS_FORWARDED", "FAKE_EXIT")}
    return {**clean, "UV_TOOL_DIR": str(tools), "COLUMNS": "100", "NO_COLOR": "1"}


@pytest.fixture()
def fake_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` plus a stand-in runpod-flash importable in this environment."""
    site = tmp_path / "site"
    install_fake(site)
    return {**env, "PYTHONPATH": str(site)}


def flash(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flash_tasks", *args], env=env, cwd=cwd, check=False, capture_output=True, text=True, timeout=60
    )


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return dict(json.loads(proc.stdout.splitlines()[0]))


# -- runpod-flash in the same environment ----------------------------------------------------------


def test_a_command_we_do_not_implement_runs_runpod_flash_with_its_arguments_and_exit_code(fake_env: dict[str, str]) -> None:
    proc = flash("undeploy", "--env", "staging", "-v", "--", "--color", "x", env={**fake_env, "FAKE_EXIT": "7"})
    assert proc.returncode == 7, proc.stderr
    got = report(proc)
    assert got["argv"] == ["flash", "undeploy", "--env", "staging", "-v", "--", "--color", "x"]
    assert got["prefix"] == sys.prefix  # in this process, this environment
    assert got["sigint_default"] is True and got["stdout_is_fd_1"] is True
    assert proc.stderr == ""


@pytest.mark.parametrize("command", ["deploy", "dev", "login", "env", "app", "undeploy", "update", "run"])
def test_each_runpod_flash_command_is_forwarded(fake_env: dict[str, str], command: str) -> None:
    proc = flash(command, "list", env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert report(proc)["argv"] == ["flash", command, "list"]


def test_options_of_flash_itself_before_the_command_are_not_passed_on(fake_env: dict[str, str]) -> None:
    proc = flash("-q", "--color", "never", "env", "list", "--app", "demo", env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert report(proc)["argv"] == ["flash", "env", "list", "--app", "demo"]


def test_runpod_flash_options_before_any_command_go_to_runpod_flash(fake_env: dict[str, str], env: dict[str, str]) -> None:
    proc = flash("--install-completion", env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert report(proc)["argv"] == ["flash", "--install-completion"]
    proc = flash("-q", "--show-completion", "app", "list", env=fake_env)
    assert report(proc)["argv"] == ["flash", "--show-completion", "app", "list"]
    proc = flash("--install-completion", env=env)  # no runpod-flash: an unknown option of flash
    assert proc.returncode == 2 and "unknown option --install-completion for 'flash'" in proc.stderr


def test_a_newer_runpod_flash_command_is_forwarded_but_a_typo_is_not(fake_env: dict[str, str]) -> None:
    proc = flash("logs", "--follow", env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert report(proc)["argv"] == ["flash", "logs", "--follow"]
    proc = flash("deplyo", env=fake_env)  # runpod-flash's CLI has its own "did you mean"
    assert report(proc)["argv"] == ["flash", "deplyo"]
    for typo, meant in (("biuld", "build"), ("inspcet", "inspect"), ("clena", "clean")):
        proc = flash(typo, env=fake_env)
        assert proc.returncode == 2 and proc.stdout == ""
        assert f"did you mean 'flash {meant}'? see 'flash {meant} --help'" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_ctrl_c_reaches_runpod_flash_and_its_exit_code_is_kept(fake_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flash_tasks", "dev", "--wait-for-ctrl-c"],
        env=fake_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["pid"] == proc.pid
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=15)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 42
    assert out == "stand-in caught Ctrl-C\n"
    assert "interrupted" not in err  # flash-tasks' own Ctrl-C message is not printed


def test_our_commands_stay_ours(fake_env: dict[str, str], tmp_path: Path) -> None:
    proc = flash("build", "--help", env=fake_env)
    assert proc.returncode == 0 and "--watch" in proc.stdout and "argv" not in proc.stdout
    proc = flash("inspect", "-C", str(tmp_path), env=fake_env)
    assert proc.returncode == 1 and "no artifact at" in proc.stderr


def test_help_and_version_name_both_tools(fake_env: dict[str, str], env: dict[str, str]) -> None:
    proc = flash("--help", env=fake_env)
    assert proc.returncode == 0
    ours, _, theirs = proc.stdout.partition("runpod-flash commands")
    for name in ("build", "init", "clean", "inspect"):
        assert f"\n    {name} " in ours
    assert theirs.startswith(" (run by runpod-flash 9.9.9):")
    for name in ("deploy", "dev", "login", "env", "app", "undeploy", "update"):
        assert f"\n    {name} " in theirs
    assert "not installed" in flash("--help", env=env).stdout.partition("runpod-flash commands")[2].splitlines()[0]

    from flash_tasks import __version__

    for flag in ("-v", "--version"):
        proc = flash(flag, env=fake_env)
        assert proc.returncode == 0
        lines = proc.stdout.splitlines()
        assert lines[0] == f"flash-tasks {__version__}" and lines[1].startswith("runpod-flash 9.9.9 ")
        assert flash(flag, env=env).stdout == f"flash-tasks {__version__}\n"
    assert flash("-v", "deploy", env=fake_env).stdout.startswith("flash-tasks ")  # the version, nothing forwarded


# -- runpod-flash missing --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deploy", "dev", "login", "env", "app", "undeploy", "update"])
def test_without_runpod_flash_a_forwarded_command_exits_2_with_one_message(env: dict[str, str], command: str) -> None:
    proc = flash(command, "--help", env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: 'flash {command}' is a runpod-flash command and runpod-flash is not installed here\n")
    assert "pip install runpod-flash" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1


def test_without_runpod_flash_an_unknown_command_is_a_usage_error(env: dict[str, str]) -> None:
    proc = flash("frobnicate", env=env)
    assert proc.returncode == 2 and "unknown command 'frobnicate'" in proc.stderr and "see 'flash --help'" in proc.stderr
    proc = flash("deplyo", env=env)
    assert proc.returncode == 2 and "did you mean 'flash deploy'? see 'flash deploy --help'" in proc.stderr


# -- runpod-flash in its own uv tool environment ---------------------------------------------------


def make_tool_env(tools: Path) -> Path:
    """A ``uv tool install runpod-flash``-shaped environment holding the stand-in."""
    root = tools / "runpod-flash"
    venv.create(root, with_pip=False, symlinks=True)
    site = next(root.glob("lib/python*/site-packages"))
    install_fake(site)
    return root


def test_a_uv_tool_environment_is_used_by_replacing_the_process(env: dict[str, str]) -> None:
    root = make_tool_env(Path(env["UV_TOOL_DIR"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flash_tasks", "app", "list", "--json"],
        env={**env, "FAKE_EXIT": "5"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    got = json.loads(out.splitlines()[0])
    assert got["argv"] == ["flash", "app", "list", "--json"]
    assert Path(str(got["prefix"])) == root
    assert got["pid"] == proc.pid  # the same process, replaced
    assert got["guard"] == "1"

    proc2 = flash("--help", env=env)
    assert f"(run by runpod-flash (uv tool environment {root}))" in proc2.stdout


def test_a_tool_environment_whose_runpod_flash_has_no_flash_command(env: dict[str, str]) -> None:
    root = make_tool_env(Path(env["UV_TOOL_DIR"]))
    next(root.glob("lib/python*/site-packages/runpod_flash-*.dist-info/entry_points.txt")).unlink()
    proc = flash("undeploy", env=env)
    assert proc.returncode == 1 and proc.stderr == "error: this runpod-flash has no flash command\n"


def test_the_guard_stops_a_loop_between_environments(env: dict[str, str]) -> None:
    make_tool_env(Path(env["UV_TOOL_DIR"]))
    proc = flash("deploy", env={**env, "FLASH_TASKS_FORWARDED": "1"})
    assert proc.returncode == 2 and "runpod-flash is not installed here" in proc.stderr


# -- the real runpod-flash 1.21.0 next to flash-tasks -----------------------------------------------


@pytest.mark.network
@pytest.mark.reference
@pytest.mark.slow
def test_real_runpod_flash_and_flash_tasks_in_one_environment(tmp_path: Path, env: dict[str, str]) -> None:
    from support.both import both_python

    python = both_python(tmp_path / "both")
    real_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), "-m", "flash_tasks", *args], env=real_env, check=False, capture_output=True, text=True, timeout=120)

    proc = run("deploy", "--help")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Usage: .*deploy \[OPTIONS\]", proc.stdout) and "--preview" in proc.stdout and "--env" in proc.stdout
    proc = run("deploy", "--no-such-option")
    assert proc.returncode == 2 and "No such option" in proc.stderr  # runpod-flash's own usage error
    proc = run("--version")
    assert proc.stdout.splitlines()[1].startswith("runpod-flash 1.21.0 ")
    proc = run("build", "--help")
    assert proc.returncode == 0 and "--watch" in proc.stdout  # build stays ours
    proc = run("--help")
    assert "run by runpod-flash 1.21.0" in proc.stdout
