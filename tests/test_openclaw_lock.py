"""OpenClaw's lock on auth-profiles.json: taken, respected and reclaimed exactly as OpenClaw does."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw import LegacyFileTarget, OpenClawLockBusy, openclaw_lock
from kimi_tray.stores.openclaw.lock import process_start_time
from tests.test_openclaw import LEGACY, TOKEN, legacy_file

NOW = time.time()


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A real process that stays alive while the test runs."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def write_lock(path: Path, payload: object) -> Path:
    lock = path.with_name(path.name + ".lock")
    lock.write_text(json.dumps(payload, indent=2) + "\n")
    return lock


def iso(seconds_ago: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_lock_held_by_a_live_openclaw_is_never_written_through(settings: Settings,
                                                                  live_pid: int) -> None:
    path = legacy_file(settings)
    # An hour old, but its owner lives: OpenClaw itself would keep waiting, and so do we.
    lock = write_lock(path, {"pid": live_pid, "createdAt": iso(3600)})
    before, lock_before = path.read_bytes(), lock.read_bytes()
    started = time.monotonic()
    with pytest.raises(OpenClawLockBusy, match=f"held by process {live_pid}, which is still running"):
        LegacyFileTarget(settings, lock_wait=0.6).sync(TOKEN, NOW)
    assert 0.5 <= time.monotonic() - started < 3, "bounded retries, then an error"
    assert path.read_bytes() == before and lock.read_bytes() == lock_before


def test_the_sync_error_says_so_and_the_next_attempt_succeeds(settings: Settings,
                                                               live_pid: int) -> None:
    path = legacy_file(settings)
    lock = write_lock(path, {"pid": live_pid, "createdAt": iso(0)})
    target = LegacyFileTarget(settings, lock_wait=0.3)
    with pytest.raises(OpenClawError, match="kimi-tray will try again"):
        target.sync(TOKEN, NOW)
    lock.unlink()  # OpenClaw finished its update
    assert target.sync(TOKEN, NOW).state == "in_sync"


@pytest.mark.parametrize("payload", [
    lambda: {"pid": 2 ** 22 + 12345, "createdAt": iso(0)},  # a pid that does not exist
    lambda: {"createdAt": iso(31)},  # no pid, older than OpenClaw's 30 s
    lambda: {"createdAt": "not a date"},
])
def test_stale_locks_are_reclaimed_as_openclaw_reclaims_them(settings: Settings, payload) -> None:
    path = legacy_file(settings)
    write_lock(path, payload())
    assert LegacyFileTarget(settings, lock_wait=0.3).sync(TOKEN, NOW).state == "in_sync"
    assert not path.with_name("auth-profiles.json.lock").exists()


def test_a_reused_pid_is_noticed_by_its_start_time(settings: Settings) -> None:
    path = legacy_file(settings)
    mine = process_start_time(os.getpid())
    if mine is None:
        pytest.skip("no /proc here")
    write_lock(path, {"pid": os.getpid(), "createdAt": iso(0), "starttime": mine - 1})
    assert LegacyFileTarget(settings, lock_wait=0.3).sync(TOKEN, NOW).state == "in_sync"


@pytest.mark.parametrize("payload", [lambda: {"createdAt": iso(5)}, lambda: {}, lambda: "garbage"])
def test_locks_openclaw_would_not_reclaim_are_respected(settings: Settings, payload) -> None:
    path = legacy_file(settings)
    lock = write_lock(path, payload())
    with pytest.raises(OpenClawLockBusy) as busy:
        LegacyFileTarget(settings, lock_wait=0.3).sync(TOKEN, NOW)
    assert lock.exists() and json.loads(path.read_text()) == LEGACY
    if not isinstance(payload(), dict) or "createdAt" not in payload():
        assert "names no process, so OpenClaw never takes it over either" in str(busy.value)


def test_our_lock_is_in_openclaws_format_and_removed_only_if_still_ours(tmp_path: Path) -> None:
    target = tmp_path / "auth-profiles.json"
    target.write_text("{}")
    with openclaw_lock(target) as lock:
        raw = lock.read_text()
        payload = json.loads(raw)
        assert raw == json.dumps(payload, indent=2) + "\n", "JSON.stringify(payload, null, 2)"
        assert payload["pid"] == os.getpid()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["createdAt"])
        assert payload.get("starttime") == process_start_time(os.getpid())
        assert oct(lock.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(OpenClawLockBusy), openclaw_lock(target, wait=0.2):
            pass  # a second holder never gets in: O_EXCL
    assert not lock.exists()
    with openclaw_lock(target) as lock:
        lock.unlink()
        lock.write_text('{"pid": 1}')  # someone else's now (a stale take-over)
    assert lock.read_text() == '{"pid": 1}', "never removes another holder's lock"
