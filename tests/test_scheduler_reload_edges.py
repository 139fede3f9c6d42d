"""The engine re-reads the credential file when a face asks for the status, even when the file looks
unchanged (same size, modification time and inode: a rewrite in place within the file system's
time resolution), and every token it reads is masked in the log from then on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kimi_tray.core import logs
from kimi_tray.core.config import Settings
from kimi_tray.engine.commands import StartLogin
from kimi_tray.engine.scheduler import Engine
from tests.conftest import kimi_file, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth


def quiet_engine(settings: Settings, clock: FakeClock) -> Engine:
    return Engine(settings.with_overrides(openclaw_mode="off", usage_enabled=False), clock=clock,
                  rng=lambda: 0.5)


def rewrite_in_place_keeping_size_and_time(path: Path, expires_at: float) -> None:
    before = path.stat()
    data = json.loads(path.read_text())
    data["expires_at"] = expires_at
    text = json.dumps(data, indent=2) + "\n"
    assert len(text.encode()) == before.st_size
    with open(path, "r+", encoding="utf-8") as handle:  # same inode
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size,
                                                                  before.st_ino)


def test_a_snapshot_rereads_a_file_rewritten_in_place_with_the_same_size_and_time(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    path = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 400)
    engine = quiet_engine(settings, clock)
    assert engine.snapshot().expires_at == clock.now() + 400
    rewrite_in_place_keeping_size_and_time(path, clock.now() + 500)
    assert engine.snapshot().expires_at == clock.now() + 500


def test_both_tokens_read_from_the_file_are_masked_in_the_log(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    tokens = oauth_server.issue()  # opaque tokens: no pattern would mask them
    write_credentials(kimi_file(home), tokens, clock.now() + 400)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert logs.redact(f"saw {token}") == f"saw {token}"
    quiet_engine(settings, clock).snapshot()
    for token in (tokens["access_token"], tokens["refresh_token"]):
        assert logs.redact(f"saw {token}") == "saw [redacted]"


def test_a_login_that_cannot_start_is_shown_as_failed_with_the_reason(
        settings: Settings, home: Path) -> None:
    clock = FakeClock()
    broken = settings.with_overrides(oauth_host="http://auth.example.com")  # plain http off loopback
    engine = quiet_engine(broken, clock)
    engine.send(StartLogin())
    engine.step()
    login = engine.status.login
    assert login is not None and (login.attempt, login.phase) == (1, "failed")
    assert login.message == ("The OAuth host http://auth.example.com uses plain http; only https is "
                             "allowed (http only for loopback).")
    assert not engine.status.login_in_progress
