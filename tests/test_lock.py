"""The build lock (``runner.hold_lock``): one holder at a time, a message only when someone waits."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from flash_tasks.runner import hold_lock

WAITING = "waiting for another build of this app to finish...\n"


def _hold_in_thread(lock_file: Path, stream: io.StringIO) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """Take the lock on a thread; returns it, the event set once it holds the lock, and the one that lets it go."""
    entered, leave = threading.Event(), threading.Event()

    def body() -> None:
        with hold_lock(lock_file, stream, WAITING):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, entered, leave


def test_an_uncontended_lock_says_nothing_and_can_be_taken_again(tmp_path: Path) -> None:
    lock_file = tmp_path / ".flash" / ".lock"  # the folder does not exist yet
    stream = io.StringIO()
    with hold_lock(lock_file, stream, WAITING):
        assert lock_file.exists()
    with hold_lock(lock_file, stream, WAITING):  # released: no wait, no message
        pass
    assert stream.getvalue() == ""
    assert lock_file.exists()  # left in place, so every waiter locks the same file


def test_a_second_holder_says_it_waits_and_waits(tmp_path: Path) -> None:
    lock_file = tmp_path / ".lock"
    first, second = io.StringIO(), io.StringIO()
    thread, entered, leave = _hold_in_thread(lock_file, first)
    assert entered.wait(10)
    waiter, waiter_entered, waiter_leave = _hold_in_thread(lock_file, second)
    assert not waiter_entered.wait(0.5), "the second holder got the lock while the first held it"
    assert second.getvalue() == WAITING
    leave.set()
    thread.join(10)
    assert waiter_entered.wait(10)
    waiter_leave.set()
    waiter.join(10)
    assert first.getvalue() == "" and second.getvalue() == WAITING  # said once, not per retry


def test_the_lock_is_released_when_the_body_fails(tmp_path: Path) -> None:
    lock_file = tmp_path / ".lock"
    with pytest.raises(RuntimeError, match="boom"), hold_lock(lock_file, None, WAITING):
        raise RuntimeError("boom")
    stream = io.StringIO()
    thread, entered, leave = _hold_in_thread(lock_file, stream)
    assert entered.wait(5)
    leave.set()
    thread.join(10)
    assert stream.getvalue() == ""


def test_another_process_holding_the_lock_makes_us_wait(tmp_path: Path) -> None:
    """Across processes, as two `flash build`s of one app are."""
    lock_file = tmp_path / ".lock"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from flash_tasks.runner import hold_lock
                with hold_lock(Path({str(lock_file)!r}), None, ""):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "held\n"
        stream = io.StringIO()
        thread, entered, leave = _hold_in_thread(lock_file, stream)
        assert not entered.wait(0.5)
        assert stream.getvalue() == WAITING
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(10) == 0
        assert entered.wait(10)
        leave.set()
        thread.join(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
