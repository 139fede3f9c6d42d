"""OpenClaw's lock, more edges: asking whether a holder lives never disturbs it, a process of
another user counts as alive, Windows never asks at all, and the lock file is private."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.stores.openclaw.lock import (
    is_stale,
    lock_path_for,
    openclaw_lock,
    pid_definitely_dead,
    process_start_time,
)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[str]]:
    """A live process that a stray signal (even SIGHUP) would end."""
    code = ("import signal, sys, time\n"
            "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):\n"
            "    signal.signal(sig, signal.SIG_DFL)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


@contextlib.contextmanager
def as_another_user() -> Iterator[None]:
    """This process without root's right to signal anyone (root: real and effective uid
    `nobody`, root kept as the saved uid to come back to)."""
    if os.geteuid() != 0:
        yield
        return
    os.setresuid(65534, 65534, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)


def test_asking_whether_a_holder_is_alive_sends_it_no_signal(holder: subprocess.Popen[str]) -> None:
    assert pid_definitely_dead(holder.pid) is False
    assert is_stale({"pid": holder.pid}, 0.0) is False
    with pytest.raises(subprocess.TimeoutExpired):
        holder.wait(timeout=0.3)  # still running: it got no signal
    assert holder.returncode is None


def test_a_process_of_another_user_is_alive() -> None:
    """kill(pid, 0) says EPERM for someone else's process: it exists, so its lock holds."""
    with as_another_user():
        try:
            os.kill(1, 0)
        except PermissionError:
            pass
        else:
            pytest.skip("this process may signal pid 1, so it cannot see EPERM")
        assert pid_definitely_dead(1) is False
        assert is_stale({"pid": 1}, 0.0) is False


def test_on_windows_no_holder_is_signalled_and_every_pid_counts_as_alive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """os.kill(pid, 0) would end the process on Windows: a dead holder is left to OpenClaw."""
    gone = dead_pid()
    assert pid_definitely_dead(gone) is True
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        dead_on_windows = pid_definitely_dead(gone)
        zero_on_windows = pid_definitely_dead(0)
    assert dead_on_windows is False
    assert zero_on_windows is True, "no pid at all is still no holder"


def test_the_lock_file_is_private_and_gone_after_release(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with openclaw_lock(tmp_path / "auth-profiles.json") as held:
            assert stat.S_IMODE(held.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert not held.exists()


def test_the_holder_signal_check_is_not_sighup(holder: subprocess.Popen[str]) -> None:
    """The fixture's holder really is ended by SIGHUP, so the test above can tell."""
    os.kill(holder.pid, signal.SIGHUP)
    assert holder.wait(timeout=10) == -signal.SIGHUP


def test_the_lock_is_dated_in_utc_whatever_the_local_time_zone(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenClaw reads `createdAt` as UTC (its `Z`): a local time would make the lock look hours
    old or new to it."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        assert time.localtime().tm_gmtoff == 9 * 3600
        with openclaw_lock(tmp_path / "auth-profiles.json") as held:
            created = json.loads(held.read_text())["createdAt"]
    finally:
        monkeypatch.undo()
        time.tzset()
    stamp = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert abs(stamp.timestamp() - time.time()) < 5


def test_a_holder_whose_name_holds_a_parenthesis_is_still_recognised() -> None:
    """/proc/<pid>/stat puts the process name in parentheses, and a name may hold ") 1 2": the
    start time is read after the last one, or the live holder would look like a reused pid."""
    code = ("import ctypes, time\n"
            "stat = open('/proc/self/stat').read()\n"
            "print(stat[stat.rfind(')') + 1:].split()[19], flush=True)\n"
            "ctypes.CDLL(None).prctl(15, b'x) 1 2 3 4 5', 0, 0, 0)\n"  # PR_SET_NAME
            "print('renamed', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        started = int(proc.stdout.readline())
        assert proc.stdout.readline() == "renamed\n"
        assert Path(f"/proc/{proc.pid}/comm").read_text() == "x) 1 2 3 4 5\n"
        assert process_start_time(proc.pid) == started
        assert is_stale({"pid": proc.pid, "starttime": started}, time.time()) is False
    finally:
        proc.kill()
        proc.wait()


def test_a_relative_path_gets_its_lock_beside_it_even_without_a_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the directory we stand in was removed: resolving a relative path fails
    assert lock_path_for(Path("auth-profiles.json")) == Path("auth-profiles.json.lock")
    assert lock_path_for(Path("agent/auth-profiles.json")) == Path("agent/auth-profiles.json.lock")
