"""One owner: only the engine thread changes engine state; faces send commands and read Status.

Real parts: the loopback OAuth server, real files and locks, the real file watcher.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.health import GatewayRestart, Health, LoginView, Status
from kimi_tray.engine import owned
from kimi_tray.engine.commands import (
    CancelLogin,
    FetchUsage,
    FileChanged,
    RememberForcedLoginWarning,
    RenewNow,
    RestartGateway,
    Resumed,
    StartLogin,
    WatchUsage,
)
from kimi_tray.engine.events import EventSources
from kimi_tray.engine.recovery import Unsaved
from kimi_tray.engine.scheduler import THREAD_NAME, Engine, EngineHandle
from kimi_tray.engine.status import Facts, build_status
from kimi_tray.stores.credentials import Credentials
from kimi_tray.stores.state import OpenClawView, fingerprint
from tests.conftest import ROOT, kimi_file, read_json, wait_for, write_credentials
from tests.support.oauth_server import FakeKimiOAuth

NOW = 1_800_000_000.0


# ----------------------------------------------------------------------------- the status builder
def creds(left: float, refresh: str = "rt-1", access: str = "at-1", lifetime: float = 900) -> Credentials:
    return Credentials(access, refresh, NOW + left, lifetime)


IN_SYNC = OpenClawView("in_sync", "", "cli", fingerprint("at-1"), NOW + 600, NOW)
UNSAVED = Unsaved("at-2", "rt-2", NOW + 900, 900, "kimi-code", "Bearer", fingerprint("rt-1"), "disk full")

STATUS_TABLE = [
    # (what, facts, health, message contains, openclaw)
    ("no file", Facts(NOW, "/k.json"), Health.NEEDS_LOGIN, "No Kimi credentials at /k.json", "unknown"),
    ("unreadable file", Facts(NOW, "/k.json", load_error="bad JSON"), Health.ERROR, "bad JSON", "unknown"),
    ("fresh", Facts(NOW, "/k.json", creds(800), message=""), Health.FRESH, "", "unknown"),
    ("aging", Facts(NOW, "/k.json", creds(400)), Health.AGING, "", "unknown"),
    ("expiring", Facts(NOW, "/k.json", creds(100)), Health.EXPIRING, "", "unknown"),
    ("expired", Facts(NOW, "/k.json", creds(-5)), Health.EXPIRED, "", "unknown"),
    ("logged out", Facts(NOW, "/k.json", creds(800, refresh="")), Health.NEEDS_LOGIN,
     "no refresh token", "unknown"),
    ("rejected token", Facts(NOW, "/k.json", creds(800), dead_refresh_fp=fingerprint("rt-1"),
                             dead_reason="The Kimi refresh token was rejected."),
     Health.NEEDS_LOGIN, "rejected", "unknown"),
    ("rejected older token", Facts(NOW, "/k.json", creds(800), dead_refresh_fp=fingerprint("rt-0")),
     Health.FRESH, "", "unknown"),
    ("unsaved beats all", Facts(NOW, "/k.json", creds(800), pending=UNSAVED), Health.ERROR,
     "new token not saved yet: disk full", "unknown"),
    ("renewal failing", Facts(NOW, "/k.json", creds(400), failures=2, message="renewal failing: 503"),
     Health.AGING, "renewal failing: 503", "unknown"),
    ("OpenClaw holds ours", Facts(NOW, "/k.json", creds(800), openclaw=IN_SYNC), Health.FRESH, "",
     "in_sync"),
    ("OpenClaw holds an older one", Facts(NOW, "/k.json", creds(800, access="at-9"), openclaw=IN_SYNC),
     Health.FRESH, "", "stale"),
    ("OpenClaw's copy expired", Facts(NOW + 700, "/k.json", creds(800), openclaw=IN_SYNC),
     Health.EXPIRING, "", "stale"),
]


@pytest.mark.parametrize(("facts", "health", "message", "openclaw"),
                         [row[1:] for row in STATUS_TABLE], ids=[row[0] for row in STATUS_TABLE])
def test_status_builder_table(facts: Facts, health: Health, message: str, openclaw: str) -> None:
    status = build_status(facts)
    assert status.health is health
    assert message in status.message if message else status.message == ""
    assert status.openclaw == openclaw
    assert status.now == facts.now and status.credentials_file == facts.credentials_file


def test_status_builder_carries_what_faces_show_and_is_frozen() -> None:
    login = LoginView(3, "waiting", "CODE-1", "http://h/device", "http://h/device?user_code=CODE-1", NOW + 60)
    restart = GatewayRestart(2, running=True)
    status = build_status(Facts(NOW, "/k.json", creds(800), login=login, gateway_restart=restart,
                                credentials_owner="kimi-cli", openclaw_handoff=False, openclaw_mode="off",
                                openclaw_target="OpenClaw sync is off", last_forced_login_warning=NOW - 5))
    assert status.login_in_progress and status.login == login
    assert login.lines() == ("Login code CODE-1 (click to copy)", "at http://h/device (click to open again)")
    assert status.gateway_restart == restart and status.credentials_owner == "kimi-cli"
    assert not status.openclaw_handoff and status.openclaw_target == "OpenClaw sync is off"
    assert status.last_forced_login_warning == NOW - 5
    assert status.summary().startswith("Kimi: waiting for the browser login")
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.health = Health.ERROR  # type: ignore[misc]
    ended = build_status(Facts(NOW, "/k.json", creds(800), login=dataclasses.replace(login, phase="done")))
    assert not ended.login_in_progress and ended.login is not None and ended.login.lines() == ()


# ----------------------------------------------------------------------------- one owner
class Listener:
    """Statuses as a face gets them, and a way to wait for one."""

    def __init__(self) -> None:
        self.statuses: list[Status] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, status: Status) -> None:
        with self._changed:
            self.statuses.append(status)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self.statuses)

    def wait(self, predicate, since: int = 0, timeout: float = 15.0) -> Status:
        """The first Status after `since` (a mark()) that matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for status in self.statuses[since:]:
                    if predicate(status):
                        return status
                left = deadline - time.monotonic()
                assert left > 0, f"no such Status; last: {self.statuses[-1] if self.statuses else None}"
                self._changed.wait(left)


@pytest.fixture
def mutations():
    """Every engine attribute set and state file saved, with the thread that did it."""
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def hook(part: object, what: str) -> None:
        with lock:
            seen.append((type(part).__name__, what, threading.current_thread().name))

    owned.set_mutation_hook(hook)
    yield seen
    owned.set_mutation_hook(None)


def test_every_change_of_engine_state_happens_on_the_engine_thread(settings: Settings, home: Path,
                                                                   oauth_server: FakeKimiOAuth,
                                                                   mutations) -> None:
    """Faces, the watcher, the resume listener, the login and the gateway restart all run on
    other threads: each only sends a command; the engine thread alone changes what it knows."""
    path = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    engine = Engine(settings.with_overrides(openclaw_mode="off"))
    handle = engine.handle()
    faces = Listener()
    handle.add_listener(faces)
    sources = EventSources(engine, fallback_interval=0.2).start()
    mutations.clear()  # construction happens before the thread starts: that is not sharing
    handle.start()
    try:
        faces.wait(lambda s: s.health is Health.FRESH)
        senders = [threading.Thread(target=handle.send, args=(command,), name=f"face-{i}")
                   for i, command in enumerate((RenewNow(), WatchUsage(), FetchUsage(urgent=True), Resumed(),
                                                FileChanged(path), RememberForcedLoginWarning(time.time())))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=15)
        faces.wait(lambda s: s.last_renewal is not None)  # saved: an outside write now comes after it
        write_credentials(path, oauth_server.issue(), time.time() + 870)  # the watcher's thread reports it
        written = read_json(path)["expires_at"]
        faces.wait(lambda s: s.expires_at == written)

        oauth_server.device_script = ["pending"]
        threading.Thread(target=handle.send, args=(StartLogin(),), name="face-login").start()
        faces.wait(lambda s: s.login is not None and s.login.phase == "waiting")
        mark = faces.mark()
        threading.Thread(target=handle.send, args=(CancelLogin(),), name="face-cancel").start()
        faces.wait(lambda s: s.login is not None and s.login.phase == "cancelled", mark)
        oauth_server.device_script = ["pending", "ok"]
        mark = faces.mark()
        handle.send(StartLogin())
        done = faces.wait(lambda s: s.login is not None and s.login.phase == "done", mark)
        assert done.login is not None and done.login.attempt == 2
        handle.send(RestartGateway())
        faces.wait(lambda s: s.gateway_restart is not None and not s.gateway_restart.running)
    finally:
        handle.stop(timeout=10)
        sources.stop()
    assert not handle.join(0)
    changed = {(part, what) for part, what, _thread in mutations}
    assert ("Memory", "state file") in changed and ("Engine", "_login") in changed, changed
    assert ("Renewal", "last_refresh_mono") in changed and ("Engine", "_gateway") in changed, changed
    elsewhere = sorted({(part, what, thread) for part, what, thread in mutations if thread != THREAD_NAME})
    assert elsewhere == [], f"engine state changed off the engine thread: {elsewhere}"
    assert faces.threads == {THREAD_NAME}, "Status reaches listeners from the engine thread"


def test_the_mutation_hook_sees_a_change_made_from_another_thread(settings: Settings, mutations) -> None:
    """The check above can fail: a write from a face's thread is recorded as such."""
    engine = Engine(settings.with_overrides(openclaw_mode="off"))
    mutations.clear()
    thread = threading.Thread(target=setattr, args=(engine, "_message", "set by a face"), name="a-face")
    thread.start()
    thread.join()
    assert mutations == [("Engine", "_message", "a-face")]


# ----------------------------------------------------------------------------- one login flow
def follow_login(handle: EngineHandle, faces: Listener, server: FakeKimiOAuth) -> Status:
    """What a face does: start, see the code and link, and (here) approve it at the server."""
    server.device_script = ["pending"]
    mark = faces.mark()
    handle.send(StartLogin())
    waiting = faces.wait(lambda s: s.login is not None and s.login.phase == "waiting", mark)
    assert waiting.login is not None and waiting.login_in_progress
    assert waiting.login.verification_uri_complete.startswith(f"{server.url}/device?user_code=CODE-")
    assert waiting.login.user_code in waiting.login.verification_uri_complete
    assert waiting.login.expires_at is not None and waiting.login.expires_at > waiting.now
    return waiting


def test_engine_login_cancel_then_login_saves_and_hands_off(settings: Settings, home: Path,
                                                           oauth_server: FakeKimiOAuth) -> None:
    from kimi_tray.stores.openclaw import legacy_profiles_path

    profiles = legacy_profiles_path(settings.openclaw_state_dir, "main")
    profiles.parent.mkdir(parents=True)
    profiles.write_text(json.dumps({"version": 1, "profiles": {}}))
    engine = Engine(settings.with_overrides(openclaw_mode="file"))
    handle, faces = engine.handle(), Listener()
    handle.add_listener(faces)
    handle.start()
    try:
        faces.wait(lambda s: s.health is Health.NEEDS_LOGIN)
        follow_login(handle, faces, oauth_server)
        mark = faces.mark()
        handle.send(StartLogin())  # a second click while one waits starts no second login
        handle.send(CancelLogin())
        cancelled = faces.wait(lambda s: s.login is not None and not s.login.active, mark)
        assert cancelled.login is not None and cancelled.login.phase == "cancelled"
        assert len(oauth_server.devices) == 1 and not kimi_file(home).exists()
        assert cancelled.health is Health.NEEDS_LOGIN and not cancelled.login_in_progress

        waiting = follow_login(handle, faces, oauth_server)
        assert waiting.login is not None and waiting.login.attempt == 2
        (device,) = [d for d in oauth_server.devices.values() if d.user_code == waiting.login.user_code]
        mark = faces.mark()
        device.script = deque(["ok"])
        done = faces.wait(lambda s: s.login is not None and s.login.phase == "done", mark)
    finally:
        handle.stop(timeout=10)
    saved = read_json(kimi_file(home))
    assert saved["refresh_token"] in oauth_server.valid_refresh
    assert done.health is Health.FRESH and done.expires_at == saved["expires_at"]
    assert done.openclaw == "in_sync" and done.login is not None and "OpenClaw in sync" in done.login.message
    profile = read_json(profiles)["profiles"]["kimi-coding:default"]
    assert profile["access"] == saved["access_token"]
    assert oauth_server.refresh_calls == 0, "no renewal ran while the login waited"


TRAY_LOGIN_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from kimi_tray.core.config import load_settings
from kimi_tray.engine.scheduler import Engine
from kimi_tray.platform.autostart.xdg import XdgAutostart
from kimi_tray.ui.notify import LogNotifier
from kimi_tray.ui.tray import TrayApp

settings = load_settings()
engine = Engine(settings)
app = TrayApp(engine.handle(), settings, XdgAutostart(), LogNotifier(), None, "gtk")
engine.add_listener(app.on_status)
engine.start()

def wait(predicate):
    deadline = time.monotonic() + 20
    while not predicate(app._status):
        assert time.monotonic() < deadline, app._status
        time.sleep(0.05)

for command in sys.stdin:
    command = command.strip()
    if command == "login":
        app.start_login()
        wait(lambda s: s.login is not None and s.login.phase == "waiting")
        print("notes", app.notes()[0], flush=True)
    elif command == "cancel":
        app.cancel_login()
        wait(lambda s: s.login is not None and not s.login.active)
        print("ended", app._status.login.phase, app.notes(), flush=True)
    elif command == "done":
        wait(lambda s: s.login is not None and not s.login.active)
        print("ended", app._status.login.phase, app._status.health.value, flush=True)
engine.stop()
"""


@pytest.mark.desktop
def test_the_tray_runs_the_engine_login_and_cancels_it(env: dict[str, str], desktop, home: Path,
                                                       oauth_server: FakeKimiOAuth) -> None:
    """The tray's Log in... and Cancel are commands to the engine's one login flow (the same that
    `kimi-tray login` drives in tests/test_login.py); the code and link come from its Status."""
    oauth_server.device_script = ["pending"]
    child = subprocess.Popen([sys.executable, "-c", TRAY_LOGIN_SCRIPT, str(ROOT)],
                             env={**env, **desktop.env, "PYSTRAY_BACKEND": "gtk", "BROWSER": "true"},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=str(ROOT))
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write("login\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line.startswith("notes Login code CODE-"), line + (child.stderr.read() if not line else "")
        child.stdin.write("cancel\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ended cancelled ()"
        assert not kimi_file(home).exists()
        child.stdin.write("login\n")
        child.stdin.flush()
        code = child.stdout.readline().split()[3]
        (device,) = [d for d in oauth_server.devices.values() if d.user_code == code]
        device.script = deque(["ok"])
        child.stdin.write("done\n")
        child.stdin.close()
        assert child.stdout.readline().strip() == "ended done fresh"
        assert child.wait(20) == 0
    finally:
        child.kill()
        child.wait()
    assert read_json(kimi_file(home))["refresh_token"] in oauth_server.valid_refresh
    assert len(oauth_server.devices) == 2
