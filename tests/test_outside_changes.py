"""Another program changes the credential file: the daemon and the tray show it within 2 s.

Both run as real processes with their default (long) poll intervals, so only the file watcher
can make them notice this fast; before it, the daemon looked every 30 s and the tray every 60 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, kimi_file, read_json, wait_for, write_credentials
from tests.support.desktop import Desktop

NOTICE_WITHIN = 2.0


def replace_atomically(path: Path, data: dict) -> None:
    """As the Kimi CLIs write: temp file in the same directory, fsync, rename over."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.chmod(0o600)
    os.replace(tmp, path)


def tombstone() -> dict:
    """What @moonshot-ai/kimi-code writes when its refresh token dies (a logout, seen from outside)."""
    return {"access_token": "", "refresh_token": "", "expires_at": 0, "scope": "kimi-code",
            "token_type": "Bearer", "expires_in": 0}


def credentials(tokens: dict, expires_at: float) -> dict:
    return {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
            "expires_at": expires_at, "scope": "kimi-code", "token_type": "Bearer", "expires_in": 900}


class Daemon:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], env=env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # noqa: SIM115
        assert wait_for(lambda: "daemon started" in self.output(), timeout=20), self.output()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def lines_after(self, mark: int) -> str:
        return self.output()[mark:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator:
    started: list[Daemon] = []

    def start() -> Daemon:
        instance = Daemon(env, tmp_path / f"daemon{len(started)}.log")
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def noticed_within(daemon: Daemon, mark: int, words: str, seconds: float = NOTICE_WITHIN) -> float:
    started = time.monotonic()
    assert wait_for(lambda: words in daemon.lines_after(mark), timeout=seconds + 3), daemon.output()
    return time.monotonic() - started


def test_daemon_sees_an_outside_logout_within_2_s(daemon, home, oauth_server) -> None:
    path = kimi_file(home)
    write_credentials(path, oauth_server.issue(), time.time() + 880)
    running = daemon()
    assert wait_for(lambda: "Kimi: 14 min left" in running.output(), timeout=10), running.output()
    mark = len(running.output())
    replace_atomically(path, tombstone())
    assert noticed_within(running, mark, "Login needed") < NOTICE_WITHIN


def test_daemon_renews_a_replaced_file_that_is_due_within_2_s(daemon, home, oauth_server) -> None:
    """Another program writes tokens that are already inside the refresh window."""
    path = kimi_file(home)
    write_credentials(path, oauth_server.issue(), time.time() + 880)
    running = daemon()
    assert wait_for(lambda: "Kimi: 14 min left" in running.output(), timeout=10), running.output()
    before = oauth_server.successful_refreshes
    replaced = oauth_server.issue()
    started = time.monotonic()
    replace_atomically(path, credentials(replaced, time.time() + 200))
    assert wait_for(lambda: oauth_server.successful_refreshes > before
                    and read_json(path)["access_token"] != replaced["access_token"], timeout=5)
    assert time.monotonic() - started < NOTICE_WITHIN
    assert read_json(path)["expires_at"] > time.time() + 800


def test_daemon_sees_the_first_creation_of_kimi_code_home(daemon, home, oauth_server) -> None:
    running = daemon()
    assert wait_for(lambda: "Login needed" in running.output(), timeout=10), running.output()
    assert not (home / ".kimi-code").exists()
    mark = len(running.output())
    replace_atomically(home / ".kimi-code" / "credentials" / "kimi-code.json",
                       credentials(oauth_server.issue(), time.time() + 880))
    assert noticed_within(running, mark, "Kimi: 14 min left") < NOTICE_WITHIN


def test_daemon_sees_an_in_place_write_and_a_delete(daemon, home, oauth_server) -> None:
    path = kimi_file(home)
    write_credentials(path, oauth_server.issue(), time.time() + 880)
    running = daemon()
    assert wait_for(lambda: "Kimi: 14 min left" in running.output(), timeout=10), running.output()
    mark = len(running.output())
    path.write_text(json.dumps(tombstone()))  # truncate and write, same inode
    assert noticed_within(running, mark, "Login needed") < NOTICE_WITHIN
    write_credentials(path, oauth_server.issue(), time.time() + 880)
    assert noticed_within(running, mark, "Kimi: 14 min left") < NOTICE_WITHIN
    mark = len(running.output())
    path.unlink()
    assert noticed_within(running, mark, "Login needed") < NOTICE_WITHIN


# ----------------------------------------------------------------------------- the tray icon
@pytest.fixture
def tray(env: dict[str, str], desktop: Desktop, tmp_path: Path) -> Iterator:
    from tests.test_tray_e2e import Tray

    trays: list = []

    def start():
        # The defaults, written out: the old tray looked at the file once a minute.
        config = tmp_path / "config.toml"
        config.write_text("poll_interval = 30\ntray_poll_interval = 60\n")
        tray_env = {**os.environ, **env, **desktop.env, "KIMI_TRAY_CONFIG": str(config),
                    "PYSTRAY_BACKEND": "gtk"}
        instance = Tray(tray_env, desktop, tmp_path / "tray.log")
        trays.append(instance)
        return instance

    yield start
    for instance in trays:
        instance.stop()


def icon_turns(tray, expected: str, shot: Path) -> float:
    started = time.monotonic()
    seen = tray.wait_state(expected, shot, timeout=NOTICE_WITHIN + 4)
    took = time.monotonic() - started
    assert seen == expected, (expected, seen, tray.output())
    return took


@pytest.mark.desktop
def test_tray_icon_follows_every_kind_of_outside_change_within_2_s(tray, home, oauth_server,
                                                                    tmp_path) -> None:
    kimi_code = home / ".kimi-code" / "credentials" / "kimi-code.json"
    running = tray()
    shot = tmp_path / "icon.png"
    assert running.wait_state("needs_login", shot) == "needs_login"  # no credentials anywhere

    replace_atomically(kimi_code, credentials(oauth_server.issue(), time.time() + 880))
    assert icon_turns(running, "fresh", shot) < NOTICE_WITHIN, "first creation of ~/.kimi-code"

    replace_atomically(kimi_code, tombstone())
    assert icon_turns(running, "needs_login", shot) < NOTICE_WITHIN, "atomic replace"

    kimi_code.write_text(json.dumps(credentials(oauth_server.issue(), time.time() + 880)))
    assert icon_turns(running, "fresh", shot) < NOTICE_WITHIN, "in-place write"

    kimi_code.unlink()
    assert icon_turns(running, "needs_login", shot) < NOTICE_WITHIN, "delete"

