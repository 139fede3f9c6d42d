"""The renewal engine with real files, a real loopback server and a fake clock."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LoginNeeded, TransientError
from kimi_tray.core.health import Health
from kimi_tray.engine.commands import RememberForcedLoginWarning, RenewNow
from kimi_tray.engine.renewal import backoff_delay
from kimi_tray.engine.scheduler import Engine
from kimi_tray.stores.openclaw import legacy_profiles_path
from kimi_tray.stores.state import StateStore, fingerprint
from tests.conftest import SUPPORT, calls, kimi_file, read_json, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth


def seed(home: Path, server: FakeKimiOAuth, clock: FakeClock, left: float) -> dict:
    tokens = server.issue()
    write_credentials(kimi_file(home), tokens, clock.now() + left, user_field="kept")
    return tokens


def make_engine(settings: Settings, clock: FakeClock, **kw) -> Engine:
    return Engine(settings, clock=clock, rng=lambda: 0.5, **kw)


def test_refresh_waits_for_the_margin_then_rotates(settings, home, oauth_server) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make_engine(settings, clock)
    creds, renewed = engine.renewal.refresh_once()
    assert not renewed and oauth_server.refresh_calls == 0, "a fresh token is left alone"
    clock.advance(451)  # 449 s left: inside max(300, 450)
    creds, renewed = engine.renewal.refresh_once()
    assert renewed and oauth_server.successful_refreshes == 1
    data = read_json(kimi_file(home))
    assert data["refresh_token"] == creds.refresh_token and data["user_field"] == "kept"
    assert data["expires_at"] == pytest.approx(clock.now() + 900)


def test_another_process_refreshing_under_the_lock_is_respected(settings, home, oauth_server) -> None:
    """The Kimi CLI (a second real process) holds the lock and rotates the token meanwhile."""
    clock = FakeClock(start=__import__("time").time())
    old = seed(home, oauth_server, clock, left=100)
    proc = subprocess.Popen(
        [sys.executable, str(SUPPORT / "kimi_cli_standin.py"), str(kimi_file(home)), "flock", "1.5",
         oauth_server.url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    creds, renewed = make_engine(settings, clock).renewal.refresh_once()
    proc.wait(10)
    assert not renewed, "the token the other process wrote is fresh: no second refresh"
    assert oauth_server.refresh_calls == 1, "only the other process called the server"
    assert creds.refresh_token != old["refresh_token"]
    sent = [r for r in oauth_server.requests if r["grant_type"] == "refresh_token"]
    assert len(sent) == 1


def test_rejected_token_rereads_file_and_uses_the_rotated_one(settings, home, oauth_server) -> None:
    """Another program rotated the token without our lock: invalid_grant, then the file has a new one."""
    clock = FakeClock()
    tokens = seed(home, oauth_server, clock, left=100)
    engine = make_engine(settings, clock)
    # Simulate a program that ignores locks: it rotates between our read and our request.
    rotated = oauth_server.issue()
    oauth_server.valid_refresh.discard(tokens["refresh_token"])
    original_refresh = engine.renewal.oauth.refresh

    def refresh_then_rewrite(refresh_token: str, timeout=None):
        if refresh_token == tokens["refresh_token"]:
            write_credentials(kimi_file(home), rotated, clock.now() + 100)
        return original_refresh(refresh_token, timeout)

    engine.renewal.oauth.refresh = refresh_then_rewrite  # the edge: inject the race deterministically
    creds, renewed = engine.renewal.refresh_once()
    assert renewed and creds.refresh_token not in (tokens["refresh_token"], rotated["refresh_token"])


def test_dead_token_means_needs_login_files_untouched_and_remembered(settings, home, oauth_server):
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    before = kimi_file(home).read_bytes()
    oauth_server.revoke_all()
    engine = make_engine(settings, clock)
    with pytest.raises(LoginNeeded):
        engine.renew()
    assert kimi_file(home).read_bytes() == before
    assert engine.snapshot().health is Health.NEEDS_LOGIN
    fresh = make_engine(settings, clock)  # a new process remembers
    assert fresh.snapshot().health is Health.NEEDS_LOGIN
    seed(home, oauth_server, clock, left=900)  # an outside login clears it
    assert fresh.snapshot().health is Health.FRESH


def test_renew_retries_transient_faults_then_succeeds(settings, home, oauth_server) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    oauth_server.fail_next("500", "429:20", "drop")
    started = clock.monotonic()
    result = make_engine(settings, clock).renew()
    assert result.renewed and oauth_server.successful_refreshes == 1
    waited = clock.monotonic() - started
    assert waited >= 20, "Retry-After is honoured"


def test_renew_gives_up_in_bounded_time(settings, home, oauth_server) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    oauth_server.fail_always("500", 1000)
    started = clock.monotonic()
    with pytest.raises(TransientError, match="Gave up after"):
        make_engine(settings, clock).renew()
    assert clock.monotonic() - started < 60


def test_backoff_is_capped_with_jitter_and_honours_retry_after() -> None:
    assert backoff_delay(1, None, lambda: 1.0) == 5
    assert backoff_delay(4, None, lambda: 1.0) == 40
    assert backoff_delay(20, None, lambda: 1.0) == 60
    assert backoff_delay(20, None, lambda: 0.0) == 30
    assert backoff_delay(1, 120, lambda: 0.5) == 120


def test_failed_openclaw_sync_keeps_the_renewed_kimi_credentials(settings, home, oauth_server, env,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "paste-token")
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    clock = FakeClock(start=__import__("time").time())
    seed(home, oauth_server, clock, left=100)
    result = make_engine(settings.with_overrides(openclaw_mode="cli"), clock).renew()
    assert result.renewed and result.openclaw.state == "error"
    assert "gateway exploded" in result.openclaw.detail
    assert read_json(kimi_file(home))["refresh_token"] == result.credentials.refresh_token


def test_seven_days_of_tokens_keep_openclaw_valid(settings, home, oauth_server, env, monkeypatch):
    """A week of 900 s tokens in legacy file mode: never expired, one restart per renewal."""
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    profiles = legacy_profiles_path(settings.openclaw_state_dir, "main")
    profiles.parent.mkdir(parents=True)
    profiles.write_text(json.dumps({"version": 1, "profiles": {"other:x": {"type": "api_key"}}}))
    engine = make_engine(settings.with_overrides(openclaw_mode="file"), clock)
    expired_seconds = 0.0
    last = clock.now()
    start = clock.now()
    week = 7 * 86400
    wakeups = 0
    while clock.now() - start < week:
        delay = engine.step()
        wakeups += 1
        data = read_json(profiles)["profiles"].get("kimi-coding:default")
        if data is None or data["expires"] / 1000 <= clock.now():
            expired_seconds += clock.now() - last
        last = clock.now()
        clock.advance(delay)
    assert expired_seconds == 0
    refreshes = oauth_server.successful_refreshes
    assert 7 * 86400 / 450 - 2 <= refreshes <= 7 * 86400 / 450 + 2
    restarts = [c for c in calls(env) if c["argv"][:2] == ["gateway", "restart"]]
    assert len(restarts) == refreshes + 1  # one per renewal, plus the first sync at start
    assert wakeups / (7 * 24) <= 121, "a 30 s poll, with refreshes on the same beat"
    assert read_json(profiles)["profiles"]["other:x"] == {"type": "api_key"}


def test_background_thread_sleeps_until_due_and_wakes_on_request(settings, home, oauth_server):
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make_engine(settings.with_overrides(openclaw_mode="off"), clock)
    statuses = []
    engine.add_listener(statuses.append)
    delay = engine.step()
    assert delay == settings.poll_interval, "no busy polling: sleep a whole poll interval"
    for _ in range(16):  # 16 more steps of 30 s reach the refresh point at 450 s
        clock.advance(engine.step())
    assert oauth_server.successful_refreshes == 1
    assert statuses[-1].health is Health.FRESH
    engine.send(RenewNow())
    engine.step()
    assert oauth_server.successful_refreshes == 2, "Renew now refreshes even a fresh token"
    done = threading.Event()
    engine.add_listener(lambda s: done.set())
    engine.start()
    assert done.wait(5)
    engine.stop(timeout=5)
    assert not engine.join(0)


def test_resume_from_sleep_is_noticed(settings, home, oauth_server, caplog) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make_engine(settings.with_overrides(openclaw_mode="off"), clock)
    engine.step()
    clock.jump_wall(3 * 3600)  # the laptop slept three hours: token long expired
    engine.step()
    assert "resume from sleep" in caplog.text
    assert oauth_server.successful_refreshes == 1
    assert engine.status.health is Health.FRESH


def test_daemon_loop_keeps_trying_while_showing_the_error(settings, home, oauth_server) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=400)
    oauth_server.fail_always("503", 8)
    engine = make_engine(settings.with_overrides(openclaw_mode="off"), clock)
    statuses = []
    for _ in range(40):
        clock.advance(engine.step())
        statuses.append(engine.status)
    failing = [status for status in statuses if status.failures > 0]
    assert failing, "the first attempts fail"
    assert all(status.message.startswith("renewal failing: ") for status in failing), \
        "while it fails, the status says so"
    assert oauth_server.successful_refreshes >= 1
    assert engine.status.health is Health.FRESH and engine.status.failures == 0


def test_state_file_holds_fingerprints_not_tokens(settings, home, oauth_server) -> None:
    clock = FakeClock()
    tokens = seed(home, oauth_server, clock, left=100)
    oauth_server.revoke_all()
    with pytest.raises(LoginNeeded):
        make_engine(settings, clock).renew()
    text = StateStore(settings.state_dir).path.read_text()
    assert tokens["refresh_token"] not in text and fingerprint(tokens["refresh_token"]) in text


def test_forced_login_warning_time_is_persisted(settings, home, oauth_server) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make_engine(settings, clock)
    engine.send(RememberForcedLoginWarning(clock.now()))
    engine.step()
    assert make_engine(settings, clock).status.last_forced_login_warning == clock.now()


def test_openclaw_is_handed_the_newest_token_on_disk_never_an_older_one(settings, home, oauth_server,
                                                                       env, monkeypatch) -> None:
    """Two renewers (a `kimi-tray renew` beside the tray): the slower one must not paste its older
    token over the newer one the other saved, nor call OpenClaw stale for holding the newer one."""
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    clock = FakeClock(start=__import__("time").time())
    seed(home, oauth_server, clock, left=100)
    cli = settings.with_overrides(openclaw_mode="cli")
    slower, faster = make_engine(cli, clock), make_engine(cli, clock)
    older, _ = slower.renewal.refresh_once(force=True)
    clock.advance(20)  # past the minimum gap between two refreshes
    newer, _ = faster.renewal.refresh_once(force=True)
    assert newer.expires_at > older.expires_at
    faster.sync_openclaw(newer)
    view, _ = slower.sync_openclaw(older)
    pasted = [call["stdin_fp"] for call in calls(env) if "stdin_fp" in call]
    assert pasted and set(pasted) == {fingerprint(newer.access_token)}  # the same sha256 prefix
    assert view.state == "in_sync" and view.token_fp == fingerprint(newer.access_token)
