"""File locks on a fake clock (timeouts and staleness exactly at their edges, no real waiting) and
writes that fail between the preparation and the rename. Real files and real locks in tmp_path;
only time is simulated."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kimi_tray.core.errors import LocalFileError, LockTimeout
from kimi_tray.stores.fileio import DirectoryLock, FileLock, PreparedWrite, atomic_write
from tests.support.clock import FakeClock

T0 = 1_800_000_000  # a whole second, so an mtime set to it compares exactly


class PacedClock(FakeClock):
    """A fake clock that records each wait and may run something at the n-th one."""

    def __init__(self, start: float = float(T0), at: dict[int, Callable[[], None]] | None = None) -> None:
        super().__init__(start)
        self.waits: list[float] = []
        self.at = at or {}

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if len(self.waits) in self.at:
            self.at[len(self.waits)]()
        return super().wait(event, seconds)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def hold_flock(path: Path) -> int:
    """Another holder of the OS lock (flock is per open file, so this process can be it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


# ----------------------------------------------------------------------------- the file lock

def test_file_lock_gives_up_exactly_at_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "kimi-code.lock"
    holder = hold_flock(path)
    clock = PacedClock()
    fds = open_fds()
    try:
        started = clock.monotonic()
        with pytest.raises(LockTimeout) as info:
            FileLock(path, timeout=0.75, poll=0.25, clock=clock).acquire()
        assert clock.monotonic() - started == 0.75, "not one poll more than the timeout"
        assert clock.waits == [0.25, 0.25, 0.25]
        assert str(info.value) == f"Another program held {path} for more than 0.75 s."
        assert open_fds() == fds, "the descriptor of a lock never taken is closed"
    finally:
        os.close(holder)


def test_file_lock_is_taken_the_poll_after_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "kimi-code.lock"
    holder = hold_flock(path)
    clock = PacedClock(at={2: lambda: os.close(holder)})
    started = clock.monotonic()
    with FileLock(path, timeout=10, poll=0.25, clock=clock):
        assert clock.monotonic() - started == 0.5
        with pytest.raises(BlockingIOError):
            hold_flock(path)
    os.close(hold_flock(path))  # released again


def test_file_lock_with_no_timeout_tries_once(tmp_path: Path) -> None:
    path = tmp_path / "kimi-code.lock"
    holder = hold_flock(path)
    clock = PacedClock()
    try:
        with pytest.raises(LockTimeout, match="for more than 0 s"):
            FileLock(path, timeout=0, clock=clock).acquire()
        assert clock.waits == []
    finally:
        os.close(holder)
    with FileLock(path, timeout=0, clock=clock):
        pass


# ----------------------------------------------------------------------------- the directory lock

def held_lock(tmp_path: Path, mtime: int) -> tuple[Path, Path]:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir(parents=True)
    held = sentinel.with_name("kimi-code.lock")
    held.mkdir()
    os.utime(held, ns=(mtime * 10**9, mtime * 10**9))
    return sentinel, held


def test_directory_lock_gives_up_exactly_at_its_timeout(tmp_path: Path) -> None:
    sentinel, held = held_lock(tmp_path, T0)
    clock = PacedClock(start=float(T0))
    started = clock.monotonic()
    with pytest.raises(LockTimeout) as info:
        DirectoryLock(sentinel, timeout=0.75, stale=5, poll=0.25, clock=clock).acquire()
    assert clock.monotonic() - started == 0.75
    assert clock.waits == [0.25, 0.25, 0.25]
    assert str(info.value) == f"Another program held {held} for more than 0.75 s."
    assert held.is_dir()


@pytest.mark.parametrize(("age", "taken_over"), [(5.0, False), (5.0 + 2**-20, True), (4.5, False)])
def test_directory_lock_staleness_exactly_at_its_edge(tmp_path: Path, age: float, taken_over: bool) -> None:
    """proper-lockfile: stale when older than `stale`, not when exactly that old."""
    sentinel, held = held_lock(tmp_path, T0)
    clock = PacedClock(start=T0 + age)
    lock = DirectoryLock(sentinel, timeout=0, stale=5, clock=clock)
    if taken_over:
        lock.acquire()
        try:
            assert held.is_dir() and time.time() - held.stat().st_mtime < 60, "ours now, fresh"
        finally:
            lock.release()
        assert not held.exists()
    else:
        with pytest.raises(LockTimeout):
            lock.acquire()
        assert held.stat().st_mtime == T0, "another program's fresh lock is left alone"
    assert clock.waits == []


def test_a_lock_going_stale_while_waited_for_is_taken_over(tmp_path: Path) -> None:
    sentinel, held = held_lock(tmp_path, T0)
    clock = PacedClock(start=T0 + 4.0)
    with DirectoryLock(sentinel, timeout=10, stale=5, poll=0.5, clock=clock) as lock:
        assert lock._keeper is not None and lock._keeper.name == "kimi-lock-keeper"
        assert clock.waits == [0.5, 0.5, 0.5], "taken once older than 5 s: at 5.5 s"


def test_a_sentinel_made_by_someone_else_meanwhile_is_kept(tmp_path: Path) -> None:
    """Between our look and our create another program made it (here: a dangling link, which
    looks missing and cannot be created)."""
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    sentinel.symlink_to(tmp_path / "nowhere")
    with DirectoryLock(sentinel, timeout=1) as lock:
        assert lock.lock_dir.is_dir()
    assert sentinel.is_symlink() and not (tmp_path / "nowhere").exists()


# ----------------------------------------------------------------------------- failing writes

def test_a_write_into_a_missing_directory_says_why(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "kimi-code.json"
    with pytest.raises(LocalFileError) as info:
        atomic_write(target, b"{}")
    assert str(info.value) == f"Could not write {target}: No such file or directory."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rename_first", [False, True])
def test_a_target_that_became_a_directory_is_named_and_nothing_is_left(tmp_path: Path,
                                                                      rename_first: bool) -> None:
    target = tmp_path / "kimi-code.json"
    target.write_text("{}")
    prepared = PreparedWrite(target, 64)
    target.unlink()
    target.mkdir()
    (target / "inside").write_text("theirs")
    with pytest.raises(LocalFileError) as info:
        prepared.commit(b'{"a": 1}', rename_first=rename_first)
    assert str(info.value) == f"Could not write {target}: Is a directory."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kimi-code.json"], "the temp file is gone"
    assert (target / "inside").read_text() == "theirs"


def test_a_commit_after_discard_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "kimi-code.json"
    prepared = PreparedWrite(target, 8)
    prepared.discard()
    with pytest.raises(LocalFileError) as info:
        prepared.commit(b"{}")
    assert str(info.value) == f"Could not write {target}: the prepared file is gone."
    assert not target.exists()


# ----------------------------------------------------------------------------- the order of a commit

class DiskLog(list[tuple[str, int]]):
    """The real fsync, ftruncate and rename, each noted with the temp file's size at that moment:
    the order is the crash window (a kill between two steps leaves what the earlier ones did)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp: Callable[[], Path]) -> None:
        super().__init__()
        for name in ("fsync", "ftruncate", "replace"):
            real = getattr(os, name)

            def spy(*args: object, _real: Callable[..., object] = real, _name: str = name) -> object:
                path = tmp()
                self.append((_name, path.stat().st_size if path.exists() else -1))
                return _real(*args)

            monkeypatch.setattr(os, name, spy)


@pytest.mark.parametrize(("data", "rename_first", "expected"), [
    # the ordinary save: complete and on disk before it takes the target's name
    (b'{"a": 1}', False, [("ftruncate", 64), ("fsync", 8), ("replace", 8), ("fsync", -1),
                          ("fsync", -1)]),
    # a rotated token: renamed first, while still the reserved size (no truncate before it)
    (b'{"a": 1}', True, [("replace", 64), ("ftruncate", -1), ("fsync", -1), ("fsync", -1)]),
    (b'{"a": 1}\n', True, [("replace", 64), ("ftruncate", -1), ("fsync", -1), ("fsync", -1)]),
    (b'{"a": "' + b"x" * 55 + b'"}', True, [("replace", 64), ("ftruncate", -1), ("fsync", -1),
                                              ("fsync", -1)]),
    # longer than reserved, or not ending as JSON does: padding would change it, so truncate first
    (b'{"a": "' + b"x" * 56 + b'"}', True, [("ftruncate", 65), ("replace", 65), ("fsync", -1),
                                              ("fsync", -1)]),
    (b"{} x", True, [("ftruncate", 64), ("replace", 4), ("fsync", -1), ("fsync", -1)]),
], ids=["ordinary", "rename-first", "rename-first-newline", "rename-first-exactly-full",
        "rename-first-too-long", "rename-first-not-json"])
def test_a_commit_fsyncs_truncates_and_renames_in_its_order(tmp_path: Path, monkeypatch, data: bytes,
                                                           rename_first: bool,
                                                           expected: list[tuple[str, int]]) -> None:
    target = tmp_path / "kimi-code.json"
    target.write_text("old")
    prepared = PreparedWrite(target, 64)
    log = DiskLog(monkeypatch, lambda: prepared.tmp)
    prepared.commit(data, rename_first=rename_first)
    monkeypatch.undo()
    assert log == expected, "the last fsync is the directory's, which makes the rename durable"
    assert target.read_bytes() == data


def test_a_prepared_file_is_on_disk_before_the_refresh(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "kimi-code.json"
    made: list[Path] = []
    log = DiskLog(monkeypatch, lambda: made[0] if made else tmp_path / "none")
    real_open = os.open

    def note(path: Path, *args: int) -> int:
        made.append(Path(path))
        return real_open(path, *args)

    monkeypatch.setattr(os, "open", note)
    prepared = PreparedWrite(target, 100)
    monkeypatch.undo()
    assert log == [("fsync", 100)], "its reserved size is synced, so the save cannot run out of room"
    prepared.discard()
