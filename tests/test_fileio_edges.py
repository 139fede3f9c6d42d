"""File primitives at their edges: lock staleness and timeouts on both sides, size limits,
layouts, temp-file sweeping, directory modes."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.errors import LocalFileError, LockTimeout
from kimi_tray.stores.fileio import (
    MAX_JSON_BYTES,
    STALE_TEMP_AGE,
    DirectoryLock,
    FileLock,
    NoLock,
    PreparedWrite,
    atomic_write,
    check_replaceable,
    dump_json_like,
    ensure_private_dir,
    read_json_object,
    sweep_stale_temps,
)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# ----------------------------------------------------------------------------- the directory lock

@pytest.mark.parametrize(("lock_age", "taken_over"), [(4.0, False), (6.0, True), (60.0, True)])
def test_directory_lock_staleness_on_both_sides_of_its_edge(tmp_path: Path, lock_age: float,
                                                           taken_over: bool) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    held = sentinel.with_name("kimi-code.lock")
    held.mkdir()
    age(held, lock_age)
    lock = DirectoryLock(sentinel, timeout=0.3, stale=5.0, poll=0.05)
    if taken_over:
        with lock:
            assert held.is_dir() and time.time() - held.stat().st_mtime < 2
        assert not held.exists()
    else:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            lock.acquire()
        assert 0.25 <= time.monotonic() - started < 3
        assert str(info.value) == f"Another program held {held} for more than 0.3 s."
        assert held.is_dir(), "a fresh lock of another program is never removed"


def test_directory_lock_waits_for_a_release_within_its_timeout(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    held = sentinel.with_name("kimi-code.lock")
    held.mkdir()
    threading.Timer(0.3, held.rmdir).start()
    started = time.monotonic()
    with DirectoryLock(sentinel, timeout=5, poll=0.05):
        waited = time.monotonic() - started
    assert 0.25 <= waited < 3


def test_directory_lock_creates_a_private_sentinel_and_keeps_an_existing_one(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    with DirectoryLock(sentinel, timeout=1):
        assert sentinel.is_file() and stat.S_IMODE(sentinel.stat().st_mode) == 0o600
        assert stat.S_IMODE(sentinel.parent.stat().st_mode) == 0o700
    sentinel.write_text("theirs")
    with DirectoryLock(sentinel, timeout=1):
        pass
    assert sentinel.read_text() == "theirs"


def test_directory_lock_keeper_touches_at_half_the_staleness(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    lock = DirectoryLock(sentinel, timeout=1, stale=0.4)
    with lock:
        age(lock.lock_dir, 100)
        time.sleep(0.45)
        assert time.time() - lock.lock_dir.stat().st_mtime < 1, "touched within stale/2 (+ slack)"
    assert lock._keeper is None and not lock.lock_dir.exists()


# ----------------------------------------------------------------------------- the file lock

def test_file_lock_timeout_on_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "kimi-code.lock"
    holder = FileLock(path, timeout=1)
    holder.acquire()
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            FileLock(path, timeout=0.3, poll=0.02).acquire()
        assert 0.28 <= time.monotonic() - started < 2
        assert str(info.value) == f"Another program held {path} for more than 0.3 s."
        threading.Timer(0.2, holder.release).start()
        started = time.monotonic()
        with FileLock(path, timeout=5, poll=0.02):
            assert 0.15 <= time.monotonic() - started < 3
    finally:
        holder.release()
    holder.release()  # a second release is harmless


def test_file_lock_in_an_unusable_place(tmp_path: Path) -> None:
    (tmp_path / "lockdir").mkdir()
    with pytest.raises(LocalFileError, match="Could not open lock"):
        FileLock(tmp_path / "lockdir", timeout=0.1).acquire()


def test_no_lock_is_a_context_that_does_nothing() -> None:
    with NoLock() as lock:
        assert isinstance(lock, NoLock)


# ----------------------------------------------------------------------------- reading JSON

def test_size_limit_on_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    body = b'{"a": "' + b"x" * (MAX_JSON_BYTES - 9) + b'"}'
    assert len(body) == MAX_JSON_BYTES
    path.write_bytes(body)
    assert read_json_object(path)[1] == body
    path.write_bytes(body + b" ")
    with pytest.raises(LocalFileError) as info:
        read_json_object(path)
    assert str(info.value) == f"{path} is larger than 1024 KiB; it is not a valid file."
    small = tmp_path / "small.json"
    small.write_bytes(b'{"a": 1}')
    with pytest.raises(LocalFileError, match="larger than 0 KiB"):
        read_json_object(small, max_bytes=7)
    assert read_json_object(small, max_bytes=8)[0] == {"a": 1}


def test_read_messages(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"  \n\t")
    with pytest.raises(LocalFileError) as info:
        read_json_object(path)
    assert str(info.value) == f"{path} is empty."
    path.write_bytes(b'{\n  "a": }')
    with pytest.raises(LocalFileError) as info:
        read_json_object(path)
    assert str(info.value) == f"{path} is not valid JSON (line 2, column 8)."
    path.write_bytes(b'"text"')
    with pytest.raises(LocalFileError) as info:
        read_json_object(path)
    assert str(info.value) == f"{path} must hold a JSON object, not str."
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json_object(path) == ({"a": 1}, b'\xef\xbb\xbf{"a": 1}')


# ----------------------------------------------------------------------------- writing JSON

@pytest.mark.parametrize(("original", "expected"), [
    (b'{"a":"x, y: z","b":[1,2]}', b'{"a":"x, y: z","b":[1,2],"c":3}'),
    (b'{"a":"say \\", then","b":1}\n', b'{"a":"say \\", then","b":1,"c":3}\n'),
    (b'{"a": "x", "b": [1, 2]}', b'{"a": "x", "b": [1, 2], "c": 3}'),
    (b'{"a":"x", "b":1}', b'{"a": "x", "b": 1, "c": 3}'),
    (b'{\n    "a": "x",\n    "b": 1\n}', b'{\n    "a": "x",\n    "b": 1,\n    "c": 3\n}'),
    (b'{\n\t"a": "x",\n\t"b": 1\n}\n', b'{\n\t"a": "x",\n\t"b": 1,\n\t"c": 3\n}\n'),
    (b'{\n"a": "x",\n"b": 1\n}\n', b'{"a": "x", "b": 1, "c": 3}\n'),
    (b'{\n    "a": "x", "b": 1}', b'{\n    "a": "x",\n    "b": 1,\n    "c": 3\n}'),  # two lines
])
def test_dump_keeps_the_layout_it_finds(original: bytes, expected: bytes) -> None:
    value = json.loads(original)
    value["c"] = 3
    assert dump_json_like(value, original) == expected


def test_dump_of_a_new_file_and_of_non_ascii_and_non_finite_values() -> None:
    assert dump_json_like({"a": "ü"}, None) == '{\n  "a": "ü"\n}\n'.encode()
    with pytest.raises(LocalFileError, match="^Refusing to write a non-finite number into a JSON file.$"):
        dump_json_like({"a": float("nan")}, None)
    with pytest.raises(LocalFileError, match="non-finite"):
        dump_json_like({"a": float("inf")}, b"{}")


def test_prepared_write_commits_larger_and_smaller_data(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    for data, reserve in ((b'{"a": 1}\n', 64), (b'{"a": "' + b"x" * 100 + b'"}', 8), (b"not json", 64)):
        for rename_first in (False, True):
            with PreparedWrite(target, reserve) as prepared:
                assert stat.S_IMODE(prepared.tmp.stat().st_mode) == 0o600
                prepared.commit(data, rename_first=rename_first)
            assert target.read_bytes() == data, (data, reserve, rename_first)
            assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_prepared_write_discarded_leaves_the_target_alone(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    prepared = PreparedWrite(target, 0)
    assert prepared.reserve == 1 and prepared.tmp.stat().st_size == 1
    prepared.discard()
    prepared.discard()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    with pytest.raises(LocalFileError, match="the prepared file is gone"):
        prepared.commit(b"{}")


def test_atomic_write_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "a", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644


def test_a_directory_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "f.json").mkdir()
    with pytest.raises(LocalFileError) as info:
        check_replaceable(tmp_path / "f.json")
    assert str(info.value) == f"{tmp_path / 'f.json'} is a directory, not a file; move it away."
    check_replaceable(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- sweeping, directories

def test_sweep_on_both_sides_of_the_age_limit(tmp_path: Path) -> None:
    names = {"f.json.tmp.1.old": STALE_TEMP_AGE + 5, "f.json.tmp.2.young": STALE_TEMP_AGE - 5,
             "g.json.tmp.3.other": 600, "f.json.tmpx": 600}
    for name, seconds in names.items():
        (tmp_path / name).write_text("x")
        age(tmp_path / name, seconds)
    (tmp_path / "f.json.tmp.dir").mkdir()
    age(tmp_path / "f.json.tmp.dir", 600)
    assert sweep_stale_temps(tmp_path, "f.json") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "f.json.tmp.2.young", "f.json.tmp.dir", "f.json.tmpx", "g.json.tmp.3.other"]
    assert sweep_stale_temps(tmp_path, "f.json", max_age=1) == 1
    assert sweep_stale_temps(tmp_path / "missing", "f.json") == 0


def test_private_directories(tmp_path: Path) -> None:
    made = tmp_path / "a" / "b"
    ensure_private_dir(made)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755, "left alone unless asked to tighten"
    ensure_private_dir(loose, tighten=True)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LocalFileError, match="Could not create"):
        ensure_private_dir(blocker / "sub")


# ----------------------------------------------------------------------------- found by mutation testing

def test_lock_defaults_match_the_kimi_clis() -> None:
    lock = DirectoryLock(Path("/x/oauth/kimi-code"))
    assert (lock.timeout, lock.stale, lock.poll) == (10.0, 5.0, 0.1)
    assert lock.lock_dir == Path("/x/oauth/kimi-code.lock")
    file_lock = FileLock(Path("/x/kimi-code.lock"))
    assert (file_lock.timeout, file_lock.poll) == (10.0, 0.05)


def test_a_stale_lock_is_taken_over_at_once_even_with_a_long_poll(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    held = sentinel.with_name("kimi-code.lock")
    held.mkdir()
    age(held, 60)
    started = time.monotonic()
    with DirectoryLock(sentinel, timeout=0.01, stale=5, poll=5):
        assert time.monotonic() - started < 1, "no poll wait after removing a stale lock"


def test_a_stale_lock_with_something_inside_is_waited_for_not_spun_on(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    sentinel.parent.mkdir()
    held = sentinel.with_name("kimi-code.lock")
    held.mkdir()
    (held / "not-ours").write_text("x")
    age(held, 60)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        DirectoryLock(sentinel, timeout=0.3, stale=5, poll=0.05).acquire()
    assert time.monotonic() - started < 3 and (held / "not-ours").exists()


def test_a_lock_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    sentinel = tmp_path / ("k" * 252)  # the sentinel fits in a name, "<sentinel>.lock" does not
    with pytest.raises(LocalFileError) as info:
        DirectoryLock(sentinel, timeout=1).acquire()
    assert str(info.value).startswith(f"Could not create lock {sentinel}.lock: ")
    assert "File name too long" in str(info.value)


def test_release_is_harmless_before_acquire_and_after_a_takeover(tmp_path: Path) -> None:
    sentinel = tmp_path / "oauth" / "kimi-code"
    DirectoryLock(sentinel).release()
    lock = DirectoryLock(sentinel, timeout=1, stale=0.2)
    lock.acquire()
    assert lock._keeper is not None and lock._keeper.daemon, "the keeper never keeps a process alive"
    lock.lock_dir.rmdir()  # another program took it over as stale and released it
    time.sleep(0.15)  # the keeper's touch fails meanwhile, quietly
    assert lock._keeper.is_alive()
    lock.release()
    assert lock._keeper is None


def test_discard_after_the_temp_file_vanished(tmp_path: Path) -> None:
    prepared = PreparedWrite(tmp_path / "f.json", 16)
    prepared.tmp.unlink()
    prepared.discard()
    assert list(tmp_path.iterdir()) == []


def test_file_lock_is_private_and_release_before_acquire_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "kimi-code.lock"
    FileLock(path).release()
    old = os.umask(0o022)
    try:
        with FileLock(path, timeout=1):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_file_lock_open_failure_says_why(tmp_path: Path) -> None:
    (tmp_path / "lockdir").mkdir()
    with pytest.raises(LocalFileError) as info:
        FileLock(tmp_path / "lockdir", timeout=0.1).acquire()
    assert str(info.value) == f"Could not open lock {tmp_path / 'lockdir'}: Is a directory."


def test_a_file_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(LocalFileError) as info:
        read_json_object(loop)
    assert str(info.value) == f"Could not read {loop}: Too many levels of symbolic links."


def test_sweep_counts_every_removal_and_leaves_links_alone(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x")
    age(target, 600)
    (tmp_path / "f.json.tmp.link").symlink_to(target)
    for name in ("f.json.tmp.1.a", "f.json.tmp.2.b"):
        (tmp_path / name).write_text("x")
        age(tmp_path / name, 600)
    assert sweep_stale_temps(tmp_path, "f.json") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "f.json.tmp.link"]
