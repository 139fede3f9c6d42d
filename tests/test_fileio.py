"""Atomic writes, JSON reads that explain themselves, and both Kimi locks against real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kimi_tray.core.errors import LocalFileError, LockTimeout
from kimi_tray.stores.fileio import (
    DirectoryLock,
    FileLock,
    atomic_write,
    dump_json_like,
    read_json_object,
)
from tests.conftest import SUPPORT


def test_atomic_write_is_private_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    target.chmod(0o644)
    atomic_write(target, b'{"a": 1}\n')
    assert target.read_bytes() == b'{"a": 1}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_atomic_write_into_read_only_directory_names_the_file(read_only_dir: Path) -> None:
    target = read_only_dir / "f.json"
    with pytest.raises(LocalFileError, match="Could not write .*f.json"):
        atomic_write(target, b"{}")
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b'{"access_token": "abc", "refr', "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{" + b" " * (1024 * 1024 + 10) + b"}", "larger than"),
    ],
    ids=["empty", "truncated", "not-object", "binary", "huge"],
)
def test_read_json_object_rejects_bad_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(LocalFileError, match=expected) as info:
        read_json_object(path)
    assert str(path) in str(info.value)


def test_read_json_object_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(LocalFileError, match="does not exist"):
        read_json_object(tmp_path / "nope.json")
    with pytest.raises(LocalFileError, match="is a directory"):
        read_json_object(tmp_path)


@pytest.mark.parametrize("indent", [2, 4, "\t", None])
def test_dump_json_like_round_trips_byte_for_byte(indent: int | str | None) -> None:
    value = {"z": 1, "a": {"ü": [1.5, 2, None], "nested": {"x": True}}, "big": 1795543173123}
    separators = (",", ":") if indent is None else None
    original = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators).encode()
    for suffix in (b"", b"\n"):
        assert dump_json_like(json.loads(original + suffix), original + suffix) == original + suffix


def _standin(cred: Path, kind: str, hold: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(SUPPORT / "kimi_cli_standin.py"), str(cred), kind,
                             str(hold)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_file_lock_waits_for_another_process_then_times_out(tmp_path: Path) -> None:
    cred = tmp_path / "credentials" / "kimi-code.json"
    cred.parent.mkdir()
    holder = _standin(cred, "flock", 3)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="kimi-code.lock"):
            FileLock(cred.with_name("kimi-code.lock"), timeout=0.5).acquire()
        assert 0.4 < time.monotonic() - started < 2.5
        started = time.monotonic()
        with FileLock(cred.with_name("kimi-code.lock"), timeout=10):
            waited = time.monotonic() - started
        assert waited > 1.0, "the lock must not be taken while the other process holds it"
    finally:
        holder.wait(10)


def test_directory_lock_is_compatible_with_kimi_code(tmp_path: Path) -> None:
    home = tmp_path / "kimi-code-home"
    cred = home / "credentials" / "kimi-code.json"
    cred.parent.mkdir(parents=True)
    holder = _standin(cred, "mkdir", 2)
    lock = DirectoryLock(home / "oauth" / "kimi-code", timeout=10)
    try:
        started = time.monotonic()
        with lock:
            assert lock.lock_dir.is_dir()
            waited = time.monotonic() - started
        assert waited > 1.0, "a fresh lock held by the other CLI must be waited for"
        assert not lock.lock_dir.exists(), "releasing removes the lock directory"
        assert (home / "oauth" / "kimi-code").exists(), "the sentinel file is created"
    finally:
        holder.wait(10)


def test_directory_lock_takes_over_a_stale_lock_and_keeps_its_own_fresh(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    stale = sentinel.with_name("kimi-code.lock")
    stale.mkdir()
    old = time.time() - 60
    os.utime(stale, (old, old))
    lock = DirectoryLock(sentinel, timeout=2, stale=0.6)
    with lock:
        first = stale.stat().st_mtime
        assert first > old
        time.sleep(0.8)
        assert stale.stat().st_mtime > first, "the holder touches its lock while holding it"
    with pytest.raises(LockTimeout):
        stale.mkdir()
        DirectoryLock(sentinel, timeout=0.3, stale=5).acquire()


def test_atomic_write_follows_a_symlink_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "profiles.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "profiles.json"
    link.symlink_to(real)
    atomic_write(link, b'{"a": 1}\n')
    assert link.is_symlink() and real.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir() if ".tmp." in p.name] == []
