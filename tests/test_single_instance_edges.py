"""One kimi-tray per user, on real lock files: who holds it, what a second start hears, and what
`status` reads from a record of any age or shape."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from kimi_tray.platform.single_instance import (
    LOCK_NAME,
    AlreadyRunning,
    Holder,
    InstanceLock,
    read_holder_record,
    running_instance,
)


def test_the_holder_writes_who_it_is_in_a_private_file(tmp_path: Path) -> None:
    state = tmp_path / "state" / "kimi-tray"
    lock = InstanceLock(state, mode="daemon")
    before = time.time()
    lock.acquire()
    try:
        path = state / LOCK_NAME
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() and record["mode"] == "daemon"
        assert before <= record["started_at"] <= time.time()
        from kimi_tray.platform.autostart import launch_spec

        assert record["program"] == " ".join(launch_spec().argv)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        holder = running_instance(state)
        assert holder == Holder(os.getpid(), record["started_at"], "daemon", record["program"])
    finally:
        lock.release()
    assert running_instance(state) is None, "released: nobody renews"
    lock.release()  # twice is fine
    InstanceLock(state).release()  # and never taken


def test_a_second_instance_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as refused:
            InstanceLock(tmp_path, mode="daemon").acquire()
        assert str(refused.value) == str(os.getpid())
        assert json.loads((tmp_path / LOCK_NAME).read_text())["mode"] == "tray", "record kept"
    finally:
        first.release()
    second = InstanceLock(tmp_path, mode="daemon")
    second.acquire()
    assert running_instance(tmp_path).mode == "daemon"  # type: ignore[union-attr]
    second.release()


def test_a_longer_old_record_is_replaced_whole(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "program": "x" * 500}))
    lock = InstanceLock(tmp_path)
    lock.acquire()
    try:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_lock_file_nobody_holds_means_nobody_renews(tmp_path: Path) -> None:
    assert running_instance(tmp_path) is None
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 123, "mode": "tray"}))
    assert running_instance(tmp_path) is None, "the lock tells, not the pid"


def test_a_held_lock_with_an_unreadable_record_still_counts(tmp_path: Path) -> None:
    lock = InstanceLock(tmp_path)
    lock.acquire()
    try:
        (tmp_path / LOCK_NAME).write_text("garbage")  # same file, the lock stays
        assert running_instance(tmp_path) == Holder(0, None, "tray or daemon", "unknown program")
        assert lock.holder() == "?"
    finally:
        lock.release()


@pytest.mark.parametrize(("text", "holder"), [
    ("4242", Holder(4242, None, "tray or daemon", "unknown program")),
    (' {"pid": 7} ', Holder(7, None, "tray or daemon", "unknown program")),
    ('{"pid": 7, "started_at": 1.5, "mode": "daemon", "program": "kimi-tray daemon"}',
     Holder(7, 1.5, "daemon", "kimi-tray daemon")),
    ('{"pid": 7, "mode": 3, "program": null}', Holder(7, None, "3", "None")),
    ('{"pid": "7"}', None), ('{"mode": "tray"}', None), ("[7]", None), ("not json", None), ("", None),
])
def test_every_shape_of_record_reads_as_a_holder_or_none(tmp_path: Path, text: str,
                                                         holder: Holder | None) -> None:
    path = tmp_path / LOCK_NAME
    path.write_text(text)
    assert read_holder_record(path) == holder


def test_a_missing_record_is_none(tmp_path: Path) -> None:
    assert read_holder_record(tmp_path / LOCK_NAME) is None


def test_the_holder_says_what_runs_since_when() -> None:
    started = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    assert Holder(42, started, "daemon", "kimi-tray daemon").describe() == (
        "the daemon runs (pid 42, since 2026-03-04 05:06, kimi-tray daemon)")
    assert Holder(42, None, "tray", "p").describe() == "the tray runs (pid 42, since an unknown time, p)"
    assert Holder(42, 0.0, "tray", "p").describe() == "the tray runs (pid 42, since an unknown time, p)"
