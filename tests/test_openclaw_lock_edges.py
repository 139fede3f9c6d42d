"""OpenClaw's lock at its edges, in-process and without real waiting: which locks are stale (dead
pid, zombie, reused pid, 30 s without a pid) on both sides of each rule, the backoff a waiter
follows, and what the error says when a live holder keeps it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw import lock as lock_module
from kimi_tray.stores.openclaw.lock import (
    OpenClawLockBusy,
    is_stale,
    lock_path_for,
    openclaw_lock,
    pid_definitely_dead,
    process_start_time,
)

NOW = 1_800_000_000.0


def my_start() -> int:
    """This process's start time (asked each time: mutation testing runs tests in forked children)."""
    start = process_start_time(os.getpid())
    assert start is not None
    return start


def iso_at(when: float, suffix: str = "Z") -> str:
    stamp = dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", suffix)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has exited but was not reaped yet."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    status = Path(f"/proc/{proc.pid}/status")
    while "State:\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield proc.pid
    proc.wait()


class FakeTime:
    """The lock module's clock: sleeping moves it on, and a callback may act after each sleep."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def write_lock(target: Path, payload: object) -> Path:
    lock = target.with_name(target.name + ".lock")
    lock.write_text(payload if isinstance(payload, str) else json.dumps(payload, indent=2) + "\n")
    return lock


# -- which process is gone
def test_process_start_time_is_field_22_of_proc_stat() -> None:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert int(stat[stat.rfind(")") + 2:].split()[19]) == my_start()
    assert process_start_time(dead_pid()) is None


def test_a_running_process_is_alive_and_an_exited_one_is_dead(zombie: int) -> None:
    assert pid_definitely_dead(os.getpid()) is False
    assert pid_definitely_dead(1) is False  # someone else's, still running
    assert pid_definitely_dead(dead_pid()) is True
    assert pid_definitely_dead(zombie) is True, "a zombie holds nothing"
    assert pid_definitely_dead(0) is True and pid_definitely_dead(-5) is True


# -- staleness, rule by rule
def test_a_lock_naming_a_live_pid_is_never_stale_however_old() -> None:
    old = iso_at(NOW - 86400)
    assert is_stale({"pid": os.getpid(), "createdAt": old}, NOW) is False
    assert is_stale({"pid": float(os.getpid()), "createdAt": old}, NOW) is False
    assert is_stale({"pid": os.getpid(), "starttime": my_start()}, NOW) is False


def test_a_lock_naming_a_dead_or_zombie_pid_is_stale_however_new(zombie: int) -> None:
    assert is_stale({"pid": dead_pid(), "createdAt": iso_at(time.time())}, time.time()) is True
    assert is_stale({"pid": zombie, "createdAt": iso_at(time.time())}, time.time()) is True
    # Its start time cannot be read any more: the pid alone decides.
    assert is_stale({"pid": dead_pid(), "starttime": 12345}, NOW) is True


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_a_reused_pid_is_told_by_its_start_time(delta: int) -> None:
    assert is_stale({"pid": os.getpid(), "starttime": my_start() + delta}, NOW) is True
    assert is_stale({"pid": os.getpid(), "starttime": float(my_start() + delta)}, NOW) is True


def test_a_start_time_that_is_not_a_number_is_ignored() -> None:
    for starttime in (True, str(my_start() + 1), None, [my_start() + 1]):
        assert is_stale({"pid": os.getpid(), "starttime": starttime}, NOW) is False


def test_a_fractional_pid_is_stale_and_a_non_number_pid_counts_as_none() -> None:
    assert is_stale({"pid": os.getpid() + 0.5}, NOW) is True
    fresh = iso_at(NOW - 1)
    for pid in (True, "123", 0, None):
        assert is_stale({"pid": pid, "createdAt": fresh}, NOW) is False, pid
        assert is_stale({"pid": pid, "createdAt": iso_at(NOW - 31)}, NOW) is True, pid
    assert is_stale({"pid": True}, NOW) is False


@pytest.mark.parametrize(("age", "stale"), [(0, False), (29.9, False), (30, False),
                                            (30.01, True), (31, True), (3600, True)])
def test_a_lock_without_pid_is_stale_after_30_seconds(age: float, stale: bool) -> None:
    created = NOW - age
    assert is_stale({"createdAt": iso_at(created)}, NOW) is stale
    assert is_stale({"createdAt": iso_at(created, "+00:00")}, NOW) is stale


def test_a_lock_without_pid_from_the_future_is_not_stale() -> None:
    assert is_stale({"createdAt": iso_at(NOW + 3600)}, NOW) is False


@pytest.mark.parametrize("payload", [None, [], "x", 3, {}, {"createdAt": 5}, {"other": 1}])
def test_a_lock_naming_nothing_is_never_stale(payload: object) -> None:
    assert is_stale(payload, NOW) is False


def test_an_unreadable_date_is_stale() -> None:
    assert is_stale({"createdAt": "yesterday"}, NOW) is True
    assert is_stale({"createdAt": ""}, NOW) is True


# -- taking the lock
def test_the_lock_sits_next_to_the_file_in_its_resolved_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert lock_path_for(tmp_path / "link" / "auth-profiles.json") == real / "auth-profiles.json.lock"
    with openclaw_lock(tmp_path / "link" / "auth-profiles.json") as held:
        assert held == real / "auth-profiles.json.lock" and held.exists()
        payload = json.loads(held.read_text())
        assert payload["pid"] == os.getpid() and payload["starttime"] == my_start()
        created = dt.datetime.fromisoformat(payload["createdAt"].replace("Z", "+00:00"))
        assert abs(created.timestamp() - time.time()) < 5
        assert is_stale(payload, time.time()) is False
    assert list(real.iterdir()) == []


def test_our_lock_is_left_alone_when_someone_replaced_it_with_the_same_bytes(tmp_path: Path) -> None:
    target = tmp_path / "auth-profiles.json"
    with openclaw_lock(target) as held:
        raw = held.read_bytes()
        copy = held.with_name("copy")
        copy.write_bytes(raw)  # same bytes, another file (made while ours exists: another inode)
        copy.replace(held)
    assert held.read_bytes() == raw


def test_an_already_released_lock_is_fine(tmp_path: Path) -> None:
    target = tmp_path / "auth-profiles.json"
    with openclaw_lock(target) as held:
        held.unlink()
    assert not held.exists()


def test_a_missing_directory_and_an_unusable_one_are_errors(tmp_path: Path) -> None:
    with pytest.raises(OpenClawError) as missing, openclaw_lock(tmp_path / "gone" / "a.json"):
        pass
    assert str(missing.value) == f"The OpenClaw directory {tmp_path / 'gone'} does not exist."
    assert not isinstance(missing.value, OpenClawLockBusy)
    (tmp_path / "file").write_text("")
    with pytest.raises(OpenClawError) as unusable, openclaw_lock(tmp_path / "file" / "a.json"):
        pass
    lock = tmp_path / "file" / "a.json.lock"
    assert str(unusable.value) == f"Could not create OpenClaw's lock {lock}: Not a directory."


@pytest.mark.parametrize("payload", [lambda: {"pid": dead_pid(), "createdAt": iso_at(time.time())},
                                     lambda: {"createdAt": iso_at(time.time() - 31)},
                                     lambda: {"createdAt": "garbage"},
                                     lambda: {"pid": os.getpid(), "starttime": my_start() + 1}])
def test_a_stale_lock_is_taken_over_without_waiting(tmp_path: Path, monkeypatch, payload) -> None:
    clock = FakeTime()
    monkeypatch.setattr(lock_module, "time", clock)
    target = tmp_path / "auth-profiles.json"
    write_lock(target, payload())
    with openclaw_lock(target, wait=5) as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert clock.sleeps == [] and not held.exists()


@pytest.mark.parametrize(("payload", "held_by"), [
    (lambda: {"pid": os.getpid(), "createdAt": iso_at(time.time() - 3600)},
     "is held by process {pid}, which is still running"),
    (lambda: {"createdAt": iso_at(time.time())}, "is held by a writer"),
    (lambda: {}, "names no process, so OpenClaw never takes it over either"),
    (lambda: "", "names no process, so OpenClaw never takes it over either"),
    (lambda: {"pid": float(os.getpid())}, "names no process, so OpenClaw never takes it over either"),
])
def test_a_live_holder_is_waited_for_then_reported(tmp_path: Path, monkeypatch, payload,
                                                   held_by: str) -> None:
    clock = FakeTime()
    monkeypatch.setattr(lock_module, "time", clock)
    target = tmp_path / "auth-profiles.json"
    lock = write_lock(target, payload())
    before = lock.read_bytes()
    with pytest.raises(OpenClawLockBusy) as busy, openclaw_lock(target, wait=1.0, rng=lambda: 0.5):
        pytest.fail("never entered")
    held_by = held_by.format(pid=os.getpid())
    assert str(busy.value) == (f"OpenClaw's lock {lock} {held_by}; waited 1 s and wrote nothing. "
                               "kimi-tray will try again; if no OpenClaw is running, delete that file.")
    # 100 ms, 200 ms, ... each times (1 + random), the last one cut to what is left of the wait.
    assert clock.sleeps == pytest.approx([0.15, 0.3, 0.55])
    assert lock.read_bytes() == before and not target.exists()


def test_without_any_wait_a_held_lock_fails_at_once(tmp_path: Path, monkeypatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr(lock_module, "time", clock)
    target = tmp_path / "auth-profiles.json"
    write_lock(target, {"pid": os.getpid()})
    with pytest.raises(OpenClawLockBusy, match="waited 0 s"), openclaw_lock(target, wait=0):
        pass
    assert clock.sleeps == []


def test_the_backoff_doubles_up_to_ten_seconds_then_the_lock_is_taken(tmp_path: Path,
                                                                      monkeypatch) -> None:
    target = tmp_path / "auth-profiles.json"
    lock = write_lock(target, {"pid": os.getpid()})

    def release(count: int) -> None:
        if count == 9:
            lock.unlink()  # the holder finished

    clock = FakeTime(release)
    monkeypatch.setattr(lock_module, "time", clock)
    with openclaw_lock(target, wait=1000, rng=lambda: 0.0) as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])


def test_the_random_part_stretches_a_delay_but_never_past_ten_seconds(tmp_path: Path,
                                                                     monkeypatch) -> None:
    target = tmp_path / "auth-profiles.json"
    lock = write_lock(target, {"pid": os.getpid()})
    clock = FakeTime(lambda count: count == 7 and lock.unlink())
    monkeypatch.setattr(lock_module, "time", clock)
    with openclaw_lock(target, wait=1000, rng=lambda: 0.99):
        pass
    assert clock.sleeps == pytest.approx([0.199, 0.398, 0.796, 1.592, 3.184, 6.368, 10.0])


def test_the_wait_is_reported_to_a_tenth_of_a_second(tmp_path: Path, monkeypatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr(lock_module, "time", clock)
    target = tmp_path / "auth-profiles.json"
    write_lock(target, {"pid": os.getpid()})
    with pytest.raises(OpenClawLockBusy, match=r"; waited 1\.3 s and wrote") as busy, \
            openclaw_lock(target, wait=1.26, rng=lambda: 0.5):
        pass
    assert clock.sleeps == pytest.approx([0.15, 0.3, 0.6, 0.21])
    assert busy.value is not None


def test_our_lock_is_written_as_openclaw_writes_its_own(tmp_path: Path) -> None:
    with openclaw_lock(tmp_path / "auth-profiles.json") as held:
        raw = held.read_text()
    payload = json.loads(raw)
    assert raw == json.dumps(payload, indent=2) + "\n", "JSON.stringify(payload, null, 2) + newline"
    assert list(payload) == ["pid", "createdAt", "starttime"]
    assert payload["createdAt"].endswith("Z") and len(payload["createdAt"]) == 24
