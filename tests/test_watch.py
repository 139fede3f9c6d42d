"""The file watcher with its real event sources (watchdog's inotify observer, and GLib's file
monitor run by a GLib main loop as in the tray): every way another program changes a file."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.platform.watch import FileWatcher, nearest_existing_dir
from tests.conftest import wait_for


class Seen:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.paths.append(path)

    def count(self, path: Path) -> int:
        with self.lock:
            return self.paths.count(path)


@pytest.fixture
def kimi_code(home: Path) -> Path:
    return home / ".kimi-code" / "credentials" / "kimi-code.json"


@pytest.fixture(params=["watchdog", "glib"])
def watcher_for(home: Path, request: pytest.FixtureRequest):
    watchers: list[FileWatcher] = []
    glib = request.param == "glib"
    if glib:  # the tray's gtk backend runs GLib's loop on its main thread; here on a thread
        request.getfixturevalue("glib_loop")

    def start(*paths: Path, **kwargs) -> tuple[FileWatcher, Seen]:
        seen = Seen()
        watcher = FileWatcher(paths, seen, debounce=0.05, glib=glib, **kwargs).start()
        watchers.append(watcher)
        return watcher, seen

    yield start
    for watcher in watchers:
        watcher.stop()


def atomic_replace(path: Path, data: dict) -> None:
    """What the Kimi CLIs do: a temp file in the same directory, renamed over the old one."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def test_nearest_existing_dir_walks_up_to_what_exists(home: Path, kimi_code: Path) -> None:
    assert nearest_existing_dir(kimi_code) == home
    kimi_code.parent.mkdir(parents=True)
    assert nearest_existing_dir(kimi_code) == kimi_code.parent


def test_sees_atomic_replace_in_place_write_and_delete_within_2_s(home: Path, watcher_for) -> None:
    path = home / ".kimi" / "credentials" / "kimi-code.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    watcher, seen = watcher_for(path)
    assert watcher.events_active

    changes = [
        lambda: atomic_replace(path, {"access_token": "a"}),
        lambda: path.write_text('{"access_token": "b"}'),  # in place: same inode
        lambda: atomic_replace(path, {"access_token": "c"}),  # the watch survived the rename
        path.unlink,
    ]
    for number, change in enumerate(changes, start=1):
        started = time.monotonic()
        change()
        assert wait_for(lambda n=number: seen.count(path) >= n, timeout=2), (number, seen.paths)
        assert time.monotonic() - started < 2


def test_sees_the_first_creation_of_kimi_code_home(home: Path, kimi_code: Path, watcher_for) -> None:
    """~/.kimi-code does not exist yet: the watch starts at HOME and moves down as it appears."""
    _, seen = watcher_for(kimi_code)
    time.sleep(0.1)
    kimi_code.parent.mkdir(parents=True, mode=0o700)
    atomic_replace(kimi_code, {"access_token": "first"})
    assert wait_for(lambda: seen.count(kimi_code) >= 1, timeout=2), seen.paths
    # Now watched in its own directory: a later rewrite is seen too, and so is a new home after
    # the old one was removed whole.
    atomic_replace(kimi_code, {"access_token": "second"})
    assert wait_for(lambda: seen.count(kimi_code) >= 2, timeout=2), seen.paths
    shutil.rmtree(home / ".kimi-code")
    assert wait_for(lambda: seen.count(kimi_code) >= 3, timeout=2), seen.paths
    kimi_code.parent.mkdir(parents=True)
    kimi_code.write_text("{}")
    assert wait_for(lambda: seen.count(kimi_code) >= 4, timeout=2), seen.paths


def test_ignores_other_files_and_reads(home: Path, watcher_for) -> None:
    path = home / "state.json"
    path.write_text("{}")
    _, seen = watcher_for(path)
    (home / "state.json.lock").write_text("x")
    (home / "other.json").write_text("x")
    path.read_text()
    time.sleep(0.5)
    assert seen.paths == []
    path.write_text('{"a": 1}')
    assert wait_for(lambda: seen.count(path) == 1, timeout=2)


def test_a_burst_is_reported_once(home: Path, watcher_for) -> None:
    path = home / "state.json"
    _, seen = watcher_for(path)
    for n in range(5):
        atomic_replace(path, {"n": n})
    assert wait_for(lambda: seen.count(path) >= 1, timeout=2)
    time.sleep(0.5)
    assert seen.count(path) == 1


def test_the_stat_check_alone_still_notices(home: Path, watcher_for) -> None:
    """No event source (network filesystem, no inotify): the slow check is the safety net."""
    path = home / "kimi-code.json"
    watcher, seen = watcher_for(path, use_events=False, fallback_interval=0.3)
    assert not watcher.events_active
    path.write_text("{}")
    assert wait_for(lambda: seen.count(path) == 1, timeout=2)
    path.unlink()
    assert wait_for(lambda: seen.count(path) == 2, timeout=2)


def test_engine_adopts_what_another_kimi_tray_process_wrote(settings, env, home, oauth_server) -> None:
    """`kimi-tray renew` in a terminal while the daemon runs: the daemon's engine picks up the new
    token and the state file (last renewal, OpenClaw view) at once, not at its next poll."""
    from kimi_tray.engine.commands import FileChanged, UseEvents
    from kimi_tray.engine.events import watched_paths
    from kimi_tray.engine.scheduler import Engine
    from tests.conftest import kimi_file, read_json, run_cli, write_credentials

    path = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    engine = Engine(settings)
    engine.send(UseEvents(3600))
    watcher = FileWatcher(watched_paths(engine), lambda path: engine.send(FileChanged(path)),
                          debounce=0.05).start()
    engine.start()
    try:
        assert wait_for(lambda: engine.status.health.value == "fresh", timeout=10)
        assert engine.status.last_renewal is None
        result = run_cli(["renew"], env)
        assert result.returncode == 0, result.stderr
        renewed_at = json.loads(engine.memory.store.path.read_text())["last_renewal"]
        assert wait_for(lambda: engine.status.last_renewal == renewed_at, timeout=2)
        assert engine.status.expires_at == read_json(path)["expires_at"]
    finally:
        engine.stop()
        watcher.stop()


def test_engine_hands_the_token_again_when_openclaw_file_is_rewritten(settings, home,
                                                                      oauth_server) -> None:
    """Older OpenClaw (or a person) puts an old token back into auth-profiles.json: the engine
    notices at once and writes the current one again."""
    from kimi_tray.engine.commands import FileChanged, UseEvents
    from kimi_tray.engine.events import watched_paths
    from kimi_tray.engine.scheduler import Engine
    from kimi_tray.stores.openclaw import legacy_profiles_path
    from tests.conftest import kimi_file, read_json, write_credentials

    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 880)
    profiles = legacy_profiles_path(settings.openclaw_state_dir, "main")
    profiles.parent.mkdir(parents=True)
    profiles.write_text(json.dumps({"version": 1, "profiles": {}}))
    engine = Engine(settings.with_overrides(openclaw_mode="file"))
    engine.send(UseEvents(3600))
    watcher = FileWatcher(watched_paths(engine), lambda path: engine.send(FileChanged(path)),
                          debounce=0.05).start()
    assert profiles in watcher.paths
    engine.start()

    def holds_current() -> bool:
        profile = read_json(profiles)["profiles"].get("kimi-coding:default", {})
        return profile.get("access") == tokens["access_token"]

    try:
        assert wait_for(lambda: holds_current() and engine.status.openclaw == "in_sync", timeout=10)
        data = read_json(profiles)
        data["profiles"]["kimi-coding:default"]["access"] = "at-old"
        atomic_replace(profiles, data)
        assert wait_for(holds_current, timeout=2)
        assert wait_for(lambda: engine.status.openclaw == "in_sync", timeout=2)
    finally:
        engine.stop()
        watcher.stop()


def test_the_glib_source_brings_neither_watchdog_nor_ctypes(tmp_path: Path) -> None:
    """Where GLib runs anyway (the tray), its file monitor saves watchdog, ctypes and a thread."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = ("import sys; from pathlib import Path; from kimi_tray.platform.watch import FileWatcher; "
             f"w = FileWatcher([Path({str(tmp_path / 'f')!r})], print, glib=True).start(); "
             "print(w.events_active, sorted(m for m in sys.modules if m.split('.')[0] in "
             "('watchdog', 'ctypes'))); w.stop()")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[0] == "True []", done.stdout + done.stderr
