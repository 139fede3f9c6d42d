"""Kimi usage: the parser, the client against a loopback stand-in of `/usages`, the fetch policy,
the engine's fetches over a simulated day, the quota notifications and the CLI."""

from __future__ import annotations

import calendar
import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings, load_settings
from kimi_tray.core.errors import ConfigError, TransientError
from kimi_tray.core.health import Health
from kimi_tray.core.usage import (
    Usage,
    UsageFormatError,
    UsageWindow,
    parse_time,
    parse_usages,
    plan_name,
)
from kimi_tray.engine.commands import FetchUsage, RenewNow, WatchUsage
from kimi_tray.engine.scheduler import Engine
from kimi_tray.engine.usage_policy import FetchPolicy
from kimi_tray.kimi.usage_client import UsageClient, UsageUnauthorized
from kimi_tray.stores.usage_store import UsageStore
from kimi_tray.ui.usage_alerts import UsageAlerts
from kimi_tray.ui.usage_text import age_line, format_span, short_line, window_line
from tests.conftest import kimi_file, run_cli, wait_for, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage, kimi_reply

NOW = 1_800_000_000.0


@pytest.fixture
def utc(monkeypatch):
    """Clock times in messages are local: pin the zone so the expected words are exact."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --------------------------------------------------------------------------- parsing
def test_parses_the_real_shape_with_strings_and_a_missing_used() -> None:
    usage = parse_usages(kimi_reply(NOW), fetched_at=NOW)
    assert usage.plan == "Intermediate"
    week, five = usage.windows
    assert (week.name, week.used, week.limit, week.remaining) == ("Week", 512, 2048, 1536)
    assert (five.name, five.used, five.limit, five.remaining) == ("5 h", 50, 200, 150), \
        "used = limit - remaining when the server leaves it out"
    assert week.resets_at == NOW + 5 * 86400 + 600 and five.resets_at == NOW + 2 * 3600 + 630


def test_numbers_as_numbers_parse_the_same() -> None:
    assert parse_usages(kimi_reply(NOW, strings=False), fetched_at=NOW).windows == \
        parse_usages(kimi_reply(NOW), fetched_at=NOW).windows


def test_extra_windows_unknown_units_and_garbage(caplog) -> None:
    body = kimi_reply(NOW)
    body["limits"] += [
        {"window": {"duration": 1, "timeUnit": "TIME_UNIT_DAY"}, "detail": {"limit": 1000, "used": "10"}},
        {"window": {"duration": "2", "timeUnit": "TIME_UNIT_FORTNIGHT"},
         "detail": {"limit": "10", "remaining": "9", "resetTime": "2027-01-01T00:00:00.123456789Z"}},
        "garbage",
        {"window": {"duration": 60, "timeUnit": "TIME_UNIT_MINUTE"}, "detail": {"limit": "x"}},
        {"detail": {"limit": 5, "remaining": 5}},
    ]
    with caplog.at_level(logging.INFO, logger="kimi_tray.core.usage"):
        usage = parse_usages(body, fetched_at=NOW)
    names = [w.name for w in usage.windows]
    assert names == ["Week", "5 h", "1 d", "2 fortnight", "Limit 6"]
    day = usage.windows[2]
    assert (day.used, day.remaining, day.resets_at) == (10, 990, None)
    assert usage.windows[3].resets_at == parse_time("2027-01-01T00:00:00Z") + 0.123456
    assert "usage limit #4: not an object" in caplog.text
    assert "'1 h'" in caplog.text, "the window without numbers is named in the log"


@pytest.mark.parametrize("body", [[], "x", {"user": {}}, {"usage": "x", "limits": "x"},
                                  {"usage": {"limit": "10"}}])
def test_nothing_usable_is_a_format_error(body) -> None:
    with pytest.raises(UsageFormatError):
        parse_usages(body)


def test_plan_names_and_times() -> None:
    assert plan_name({"membershipLevel": "LEVEL_INTERMEDIATE"}) == "Intermediate"
    assert plan_name({"membershipLevel": "LEVEL_PRO_MAX"}) == "Pro Max"
    assert plan_name({"membershipLevel": 3}) == "" and plan_name(None) == ""
    assert parse_time("2026-12-01T00:00:00Z") == parse_time("2026-12-01T01:00:00+01:00")
    assert parse_time(1_800_000_000_000) == 1_800_000_000 and parse_time("1800000000") == 1_800_000_000
    assert parse_time("next monday") is None and parse_time(None) is None


# --------------------------------------------------------------------------- words
def test_menu_lines_and_age(utc) -> None:
    monday_1am = float(calendar.timegm((2026, 11, 30, 1, 0, 0)))  # a Monday
    now = monday_1am - 5 * 86400 - 3600
    week = UsageWindow("Week", 512, 2048, 1536, monday_1am)
    five = UsageWindow("5 h", 50, 200, 150, now + 2 * 3600 + 600)
    assert window_line(week, now) == "Week: 25 % used, resets Mon 01:00 (in 5 d)"
    assert window_line(five, now) == "5 h: 25 % used, resets in 2 h 10 min"
    assert window_line(UsageWindow("5 h", 200, 200, 0, now + 60), now) == "5 h: used up, resets in 1 min"
    assert window_line(UsageWindow("5 h", 199.5, 200, 0.5, None), now) == "5 h: 99 % used"
    usage = Usage("Intermediate", now, (week, five), stale_after=360)
    assert age_line(usage, now + 30) == f"as of {time.strftime('%H:%M', time.gmtime(now))}"
    assert not usage.is_stale(now + 360) and usage.is_stale(now + 361)
    assert age_line(usage, now + 1200).endswith("(20 min ago)")
    failed = usage.failed("the usage server is busy or failing (HTTP 500)", now + 600)
    assert failed.is_stale(now + 601)
    assert age_line(failed, now + 601) == (f"as of {time.strftime('%H:%M', time.gmtime(now))}, "
                                           "could not update: the usage server is busy or failing (HTTP 500)")
    assert short_line(Usage("", now, (week, UsageWindow("5 h", 190, 200, 10, None))), now) == "5 h: 95 % used"
    assert format_span(59) == "1 min" and format_span(86400 * 1.5) == "1 d 12 h"


# --------------------------------------------------------------------------- the client
def test_client_sends_the_token_and_device_headers(usage_server: FakeKimiUsage) -> None:
    from kimi_tray.kimi.oauth import device_headers

    client = UsageClient(usage_server.url, device_headers("d" * 32))
    usage = client.fetch("at-secret", NOW)
    assert [w.name for w in usage.windows] == ["Week", "5 h"] and usage.fetched_at == NOW
    sent = usage_server.requests[-1]
    assert sent["path"] == "/coding/v1/usages"
    assert sent["headers"]["Authorization"] == "Bearer at-secret"
    assert sent["headers"]["Accept"] == "application/json"
    assert sent["headers"]["X-Msh-Device-Id"] == "d" * 32 and sent["headers"]["X-Msh-Platform"] == "kimi_cli"


@pytest.mark.parametrize(("fault", "kind", "words"), [
    ("401", UsageUnauthorized, "HTTP 401"),
    ("403", UsageUnauthorized, "HTTP 403"),
    ("429:120", TransientError, "HTTP 429"),
    ("500", TransientError, "HTTP 500"),
    ("malformed", TransientError, "not JSON"),
    ("drop", TransientError, "could not reach"),
])
def test_client_faults_are_typed(usage_server, fault, kind, words) -> None:
    usage_server.fail_next(fault)
    with pytest.raises(kind) as caught:
        UsageClient(usage_server.url).fetch("at-secret", NOW)
    assert words in str(caught.value) and "at-secret" not in str(caught.value)
    if fault.startswith("429"):
        assert caught.value.retry_after == 120


def test_usage_url_is_https_or_loopback(env) -> None:
    with pytest.raises(ConfigError, match="only https"):
        UsageClient("http://api.example.com/coding/v1")
    # A value meant for the Kimi CLI never stops the renewals: only the requests are refused.
    plain = load_settings({**env, "KIMI_CODE_BASE_URL": "http://api.example.com/coding/v1"})
    with pytest.raises(ConfigError, match="Kimi API base URL"):
        UsageClient(plain.usage_base_url)
    assert load_settings(env).usage_base_url == env["KIMI_CODE_BASE_URL"]
    clean = {k: v for k, v in env.items() if k not in ("KIMI_CODE_BASE_URL", "KIMI_TRAY_CONFIG")}
    assert load_settings(clean).usage_base_url == "https://api.kimi.com/coding/v1"


def test_config_keys(env, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('usage_base_url = "https://kimi.example/v1"\nusage_interval = 600\n'
                      "usage_thresholds = [50, 90]\nusage_notify_back = true\n")
    clean = {k: v for k, v in env.items() if k != "KIMI_CODE_BASE_URL"}
    settings = load_settings({**clean, "KIMI_TRAY_CONFIG": str(config)})
    assert settings.usage_base_url == "https://kimi.example/v1" and settings.usage_interval == 600
    assert settings.usage_thresholds == (50.0, 90.0) and settings.usage_notify_back
    config.write_text("usage_thresholds = [120]\n")
    with pytest.raises(ConfigError, match="usage_thresholds"):
        load_settings({**clean, "KIMI_TRAY_CONFIG": str(config)})


# --------------------------------------------------------------------------- the policy
def test_policy_spacing_backoff_resets_and_dead_tokens() -> None:
    policy = FetchPolicy(interval=300, periodic=True)
    assert policy.due_at(token_ok=False) is None, "no fetch while the token is dead or expired"
    assert policy.due_at(True) == 0.0, "the first fetch is at once"
    policy.succeeded(NOW, [NOW + 1000, None])
    assert policy.due_at(True) == NOW + 300
    policy.request()
    assert policy.due_at(True) == NOW + 60, "asked again: at once, but never twice within a minute"
    policy.succeeded(NOW + 60, [NOW + 200])
    assert policy.due_at(True) == NOW + 205, "just after a window's reset"
    policy.succeeded(NOW + 205, [NOW + 200])
    assert policy.due_at(True) == NOW + 505, "a reset already past does not loop"
    assert policy.failed(NOW + 505) == 60 and policy.failed(NOW + 565) == 120
    assert policy.due_at(True) == NOW + 685
    policy.request()
    assert policy.due_at(True) == NOW + 685, "a request waits out the backoff"
    policy.request(urgent=True)
    assert policy.due_at(True) == NOW + 625, "a resume or login forgets it (the minimum gap stays)"
    assert policy.failed(NOW + 700, retry_after=900) == 900, "Retry-After wins when longer"
    for _ in range(20):
        delay = policy.failed(NOW)
    assert delay == 1800, "capped"
    quiet = FetchPolicy(interval=300, periodic=False)
    assert quiet.due_at(True) is None, "without a desktop session only requests fetch"
    quiet.request()
    assert quiet.due_at(True) == 0.0


# --------------------------------------------------------------------------- the engine
def quiet_settings(settings: Settings, **changes) -> Settings:
    return settings.with_overrides(openclaw_mode="off", **changes)


def seed(home: Path, server: FakeKimiOAuth, clock: FakeClock, left: float = 880) -> dict:
    tokens = server.issue()
    write_credentials(kimi_file(home), tokens, clock.now() + left)
    return tokens


def test_tray_engine_fetches_at_once_and_publishes_the_stand_ins_numbers(
        settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    usage_server.reply = kimi_reply(clock.now(), week_used=1024)
    seed(home, oauth_server, clock)
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    usage = engine.status.usage
    assert usage_server.count == 1 and usage is not None and not usage.is_stale(clock.now())
    assert [(w.name, w.used, w.limit, w.remaining) for w in usage.windows] == \
        [("Week", 1024, 2048, 1024), ("5 h", 50, 200, 150)]
    saved = json.loads((settings.state_dir / "usage.json").read_text())
    assert saved["last"]["windows"][0]["used"] == 1024
    assert oct((settings.state_dir / "usage.json").stat().st_mode & 0o777) == "0o600"
    restarted = Engine(quiet_settings(settings), clock=clock)
    assert restarted.snapshot().usage.windows == usage.windows, "the last numbers survive a restart"


def test_401_renews_the_token_first_then_succeeds(settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock)
    usage_server.rejected_tokens.add(tokens["access_token"])  # the server no longer takes it
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    assert oauth_server.successful_refreshes == 1, "a 401 renews the token first"
    assert usage_server.count == 2, "then tries exactly once more"
    sent = [r["headers"]["Authorization"] for r in usage_server.requests]
    assert sent[0] == f"Bearer {tokens['access_token']}" and sent[1] != sent[0]
    assert engine.status.usage is not None and not engine.status.usage.error
    assert engine.status.health is Health.FRESH


def test_401_with_a_dead_refresh_token_stops_asking(settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock)
    usage_server.rejected_tokens.add(tokens["access_token"])
    oauth_server.revoke_all()
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    assert usage_server.count == 1, "no second try with a token the server refused"
    for _ in range(30):
        clock.advance(engine.step())
    assert engine.status.health is Health.NEEDS_LOGIN
    assert usage_server.count == 1, "no fetch at all while a login is needed"
    assert engine.status.usage.is_stale(clock.now()) and "HTTP 401" in engine.status.usage.error


def test_a_server_that_refuses_every_token_costs_one_renewal_not_one_per_try(
        settings, home, usage_server) -> None:
    clock = FakeClock(start=time.time())
    oauth_server = FakeKimiOAuth(lifetime=86400).start()  # day-long tokens: no routine renewals
    try:
        write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 86000)
        usage_server.fail_always("401")
        engine = Engine(quiet_settings(settings, oauth_host=oauth_server.url), clock=clock)
        engine.send(WatchUsage())
        start = clock.now()
        while clock.now() - start < 6 * 3600:
            clock.advance(engine.step())
    finally:
        oauth_server.stop()
    assert oauth_server.successful_refreshes == 1, "one renewal to rule out an old token, then no more"
    assert 2 <= usage_server.count <= 18 and "HTTP 401" in engine.status.usage.error  # backoff to 30 min
    assert engine.status.health is Health.FRESH


@pytest.mark.parametrize("fault", ["500", "429:300", "malformed", "drop"])
def test_failures_mark_the_numbers_stale_and_back_off(settings, home, oauth_server, usage_server,
                                                      fault) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock)
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    assert not engine.status.usage.is_stale(clock.now())
    usage_server.fail_always(fault)
    start, before = clock.now(), usage_server.count
    while clock.now() - start < 3600:
        clock.advance(engine.step())
    tries = usage_server.count - before
    assert 1 <= tries <= 7, f"backoff: {tries} tries in an hour"
    usage = engine.status.usage
    assert usage.is_stale(clock.now()) and usage.error and usage.windows, "old numbers kept, marked stale"
    assert "could not update" in age_line(usage, clock.now())
    usage_server.clear_faults()
    engine.send(FetchUsage(urgent=True))
    clock.advance(engine.step())
    clock.advance(engine.step())
    assert not engine.status.usage.is_stale(clock.now()), "recovers at once after a resume/login"


def test_a_simulated_day_stays_within_the_fetch_budget(settings, home, oauth_server, usage_server) -> None:
    """Tokens renew every ~450 s all day; the tray fetches every 5 minutes plus at window resets."""
    clock = FakeClock(start=time.time())
    usage_server.reply = kimi_reply(clock.now(), window_reset_in=3 * 3600)
    seed(home, oauth_server, clock)
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    start, times = clock.now(), []
    while clock.now() - start < 86400:
        before = usage_server.count
        delay = engine.step()
        if usage_server.count > before:
            times.append(clock.now())
        clock.advance(delay)
    assert oauth_server.successful_refreshes >= 180, "the token kept renewing meanwhile"
    assert 288 <= len(times) <= 288 + 3, f"{len(times)} fetches in a day"
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 60
    reset = start + 3 * 3600 + 5
    assert any(reset <= t <= reset + 60 for t in times), "a fetch just after the window's reset"


def test_daemon_fetches_only_when_asked(settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock)
    engine = Engine(quiet_settings(settings), clock=clock)  # no watch_usage(): headless
    start = clock.now()
    while clock.now() - start < 86400:
        clock.advance(engine.step())
    assert usage_server.count == 0
    assert engine.usage_for_cli(force=False) is not None and usage_server.count == 1
    assert engine.usage_for_cli(force=False) is not None and usage_server.count == 1, "fresh: no refetch"


def test_no_fetch_with_an_expired_token_and_at_once_after_renewal(settings, home, oauth_server,
                                                                  usage_server) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=-10)  # expired, server down
    oauth_server.fail_always("503")
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    for _ in range(20):
        clock.advance(min(engine.step(), 30))
    assert usage_server.count == 0, "never ask with an expired token"
    oauth_server.clear_faults()
    for _ in range(5):
        clock.advance(min(engine.step(), 30))
        if usage_server.count:
            break
    assert usage_server.count == 1 and engine.status.health.is_ok


def test_resume_fetches_at_once(settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock)
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    clock.advance(90)
    engine.step()
    assert usage_server.count == 1
    assert engine.usage.policy.due_at(True) == pytest.approx(clock.now() - 90 + 300)
    clock.jump_wall(120)  # asleep for two minutes: the 5-minute fetch is not due yet
    engine.step()
    assert usage_server.count == 2, "a resume fetches at once"


# --------------------------------------------------------------------------- notifications
class RecordingNotifier:
    """A notifier whose "screen" is a list (the D-Bus path is covered in test_tray_e2e)."""

    name = "record"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, title: str, message: str) -> None:
        self.sent.append((title, message))


def usage_at(now: float, used: float, limit: float = 200, resets: float = 3600) -> Usage:
    return Usage("Intermediate", now, (UsageWindow("5 h", used, limit, limit - used, now + resets),))


def test_thresholds_notify_once_per_episode_even_across_restarts(tmp_path) -> None:
    store, notes = UsageStore(tmp_path), RecordingNotifier()
    alerts = UsageAlerts(notes, store, (80, 95), back=True)
    for used in (100, 161, 165):
        alerts.check(usage_at(NOW, used), NOW)
    assert [t for t, _ in notes.sent] == ["Kimi quota 80 % used"]
    alerts = UsageAlerts(notes, store, (80, 95), back=True)  # a restart
    alerts.check(usage_at(NOW, 170), NOW)
    assert len(notes.sent) == 1
    alerts.check(usage_at(NOW, 191), NOW)
    alerts.check(usage_at(NOW, 200), NOW)
    alerts.check(usage_at(NOW, 200), NOW)
    assert [t for t, _ in notes.sent] == ["Kimi quota 80 % used", "Kimi quota 95 % used",
                                          "Kimi quota exhausted"]
    assert "resets at" in notes.sent[-1][1]
    alerts.check(usage_at(NOW, 4), NOW)  # the window reset
    assert notes.sent[-1][0] == "Kimi quota is back"
    alerts.check(usage_at(NOW, 170), NOW)
    assert notes.sent[-1][0] == "Kimi quota 80 % used" and len(notes.sent) == 5, "a new episode"


def test_a_jump_notifies_the_highest_threshold_only_and_thresholds_can_be_off(tmp_path) -> None:
    notes = RecordingNotifier()
    UsageAlerts(notes, UsageStore(tmp_path / "a"), (80, 95)).check(usage_at(NOW, 196), NOW)
    assert [t for t, _ in notes.sent] == ["Kimi quota 95 % used"]
    silent = RecordingNotifier()
    alerts = UsageAlerts(silent, UsageStore(tmp_path / "b"), (), exhausted=False, back=False)
    for used in (196, 200, 3):
        alerts.check(usage_at(NOW, used), NOW)
    assert silent.sent == []


def test_old_numbers_from_the_file_never_notify(tmp_path) -> None:
    from kimi_tray.core.health import Status

    notes = RecordingNotifier()
    alerts = UsageAlerts(notes, UsageStore(tmp_path))
    old = Usage("", NOW - 3600, (UsageWindow("5 h", 196, 200, 4, NOW + 600),), stale_after=360)
    alerts.on_status(Status(Health.FRESH, NOW, usage=old))
    assert notes.sent == []
    alerts.on_status(Status(Health.FRESH, NOW, usage=dataclasses.replace(old, fetched_at=NOW)))
    assert [t for t, _ in notes.sent] == ["Kimi quota 95 % used"]


def test_stale_numbers_never_notify(settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock)
    usage_server.reply = kimi_reply(clock.now(), window_remaining=10)  # 95 % used
    engine = Engine(quiet_settings(settings), clock=clock)
    notes = RecordingNotifier()
    alerts = UsageAlerts(notes, engine.usage.store)
    engine.add_listener(alerts.on_status)
    engine.send(WatchUsage())
    for _ in range(5):
        clock.advance(engine.step())
    assert [t for t, _ in notes.sent] == ["Kimi quota 95 % used"], "once, however often it is published"
    usage_server.fail_always("500")
    for _ in range(5):
        clock.advance(engine.step())
    assert len(notes.sent) == 1


# --------------------------------------------------------------------------- the CLI
def test_status_json_and_usage_command(env, home, oauth_server, usage_server) -> None:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 880)
    usage_server.reply = kimi_reply(week_used=700)
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    usage = json.loads(status.stdout)["usage"]
    assert usage["plan"] == "Intermediate" and usage["stale"] is False
    assert abs(usage["fetched_at"] - time.time()) < 60
    week, five = usage["windows"]
    assert week == {"name": "Week", "used": 700, "limit": 2048, "remaining": 1348,
                    "resets_at": week["resets_at"], "stale": False}
    assert isinstance(week["resets_at"], int) and week["resets_at"] > time.time() + 5 * 86400
    assert five["name"] == "5 h" and five["used"] == 50 and five["remaining"] == 150
    assert usage_server.count == 1
    again = run_cli(["status", "--json"], env)
    assert usage_server.count == 1, "status reuses numbers that are still fresh"
    assert json.loads(again.stdout)["usage"]["windows"][0]["used"] == 700

    fetched = run_cli(["usage", "--json"], env)
    assert fetched.returncode == 0 and usage_server.count == 2, "`usage` fetches now"
    assert json.loads(fetched.stdout)["windows"][1]["limit"] == 200
    text = run_cli(["status"], env)
    assert "Usage:         plan Intermediate, as of " in text.stdout
    assert "Week: 34 % used, resets " in text.stdout and "5 h: 25 % used, resets in 2 h " in text.stdout
    for out in (status.stdout, fetched.stdout, text.stdout, text.stderr):
        assert tokens["access_token"] not in out and tokens["refresh_token"] not in out


def test_usage_command_failures(env, home, oauth_server, usage_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    assert run_cli(["usage"], env).returncode == 0
    usage_server.fail_next("500", "500")
    failed = run_cli(["usage"], env)
    assert failed.returncode == 1
    assert "could not update: the usage server is busy or failing (HTTP 500)" in failed.stdout
    status = json.loads(run_cli(["status", "--json"], env).stdout)["usage"]
    assert status["stale"] is True and status["windows"][0]["stale"] is True
    assert "HTTP 500" in status["error"]
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() - 5)
    before = usage_server.count
    expired = run_cli(["usage"], env)
    assert expired.returncode == 1 and "renew" in expired.stderr and usage_server.count == before
    os.remove(kimi_file(home))
    assert run_cli(["usage"], env).returncode == 3


def test_a_plain_http_api_base_refuses_usage_but_never_stops_renewal(env, home, oauth_server,
                                                                      usage_server) -> None:
    """KIMI_CODE_BASE_URL belongs to the Kimi CLI too: a plain-http value there is refused for the
    requests that would carry the token, and renewal goes on."""
    plain = dict(env, KIMI_CODE_BASE_URL="http://api.example.com/coding/v1")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    renewed = run_cli(["renew"], plain)
    assert renewed.returncode == 0, renewed.stderr
    assert oauth_server.successful_refreshes == 1
    refused = run_cli(["usage"], plain)
    assert refused.returncode == 1 and usage_server.count == 0
    assert "uses plain http; only https is allowed" in refused.stdout + refused.stderr


# --------------------------------------------------------------------------- hostile replies
@pytest.mark.parametrize("reset", [1e300, "99999999999999999999999", -5, "-62135596800", 1e400])
def test_reset_times_out_of_any_calendar_are_unknown_not_a_crash(reset) -> None:
    body = {"usage": {"limit": 100, "used": 10, "resetTime": reset}}
    window = parse_usages(body, fetched_at=NOW).windows[0]
    assert window.resets_at is None
    assert window_line(window, NOW) == "Week: 10 % used"
    cached = Usage.from_cache({"fetched_at": NOW, "windows": [
        {"name": "Week", "used": 10, "limit": 100, "remaining": 90, "resets_at": 1e300}]}, 360)
    assert cached is not None and cached.windows[0].resets_at is None, "an edited usage.json too"


def test_epoch_seconds_with_a_fraction_are_a_time() -> None:
    assert parse_time("1800000000.5") == 1_800_000_000.5


def test_names_from_the_server_fit_one_menu_line(caplog) -> None:
    body = {"user": {"membershipLevel": "LEVEL_" + "GOLD" * 500},
            "limits": [{"window": {"duration": 5, "timeUnit": "TIME_UNIT_" + "X" * 5000},
                        "detail": {"limit": 10, "remaining": 5}},
                       {"window": {"duration": 1e300, "timeUnit": "TIME_UNIT_MINUTE"},
                        "detail": {"limit": 10, "remaining": 5}},
                       {"window": {"duration": 3, "timeUnit": "TIME_UNIT_\nEVIL\tU\x1b[31m"},
                        "detail": {"limit": 10, "remaining": 5}}]}
    usage = parse_usages(body, fetched_at=NOW)
    assert len(usage.plan) <= 32
    for window in usage.windows:
        assert len(window.name) <= 32, window.name
        assert window.name.isprintable(), repr(window.name)
        assert len(window_line(window, NOW)) <= 80
    assert usage.windows[2].name == "3 evil u [31m"


# --------------------------------------------------------------------------- a slow server
def test_a_trickling_reply_ends_at_the_clients_timeout(usage_server) -> None:
    """A byte every half second never trips httpx's per-read timeout; the whole reply has a deadline."""
    usage_server.fail_next("trickle:0.5")
    outcome: list[BaseException | Usage] = []

    def fetch() -> None:
        try:
            outcome.append(UsageClient(usage_server.url, timeout=2).fetch("at-secret", NOW))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "still reading the reply a byte at a time"
    assert isinstance(outcome[0], TransientError) and "did not answer in time" in str(outcome[0])


def test_a_hanging_usage_server_never_holds_up_the_engine(settings, home, oauth_server,
                                                          usage_server) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock)
    usage_server.fail_next("slow:6")
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    started = time.monotonic()
    engine.step()
    assert time.monotonic() - started < 3, "the step went on while the usage server hung"
    assert wait_for(lambda: usage_server.count == 1, timeout=2)
    engine.send(RenewNow())  # Renew now, clicked while the usage request hangs
    started = time.monotonic()
    engine.step()
    assert time.monotonic() - started < 3 and oauth_server.successful_refreshes == 1, \
        "the renewal did not wait for the usage server"
    assert engine.status.usage is None or engine.status.usage.fetched_at is None
    assert wait_for(lambda: (engine.step(), engine.status.usage)[1] is not None
                    and engine.status.usage.fetched_at is not None, timeout=10), \
        "the late answer is shown once it arrives"
    assert usage_server.count == 1 and not engine.status.usage.error


def test_a_plain_http_usage_url_is_refused_but_the_token_still_renews(env, home, oauth_server,
                                                                    settings) -> None:
    """KIMI_CODE_BASE_URL belongs to the Kimi CLI: a plain-http value there (a LAN proxy, say) must
    never carry our token, and must not stop the renewals either."""
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 880)
    plain = {**env, "KIMI_CODE_BASE_URL": "http://api.example.com/coding/v1"}
    status = run_cli(["status"], plain)
    assert status.returncode == 0, status.stderr
    assert ("Usage unknown: The Kimi API base URL (usage_base_url, or KIMI_CODE_BASE_URL) "
            "http://api.example.com/coding/v1 uses plain http") in status.stdout
    usage = run_cli(["usage"], plain)
    assert usage.returncode == 1 and "only https is allowed" in usage.stderr
    clock = FakeClock(start=time.time())
    engine = Engine(quiet_settings(settings, usage_base_url="http://api.example.com/coding/v1"),
                     clock=clock)
    engine.send(WatchUsage())
    for _ in range(20):
        clock.advance(engine.step())
    assert oauth_server.successful_refreshes >= 1 and engine.status.health.is_ok
    assert "plain http" in engine.status.usage.error
    for out in (status.stdout, status.stderr, usage.stdout, usage.stderr):
        assert tokens["access_token"] not in out


def test_status_waits_only_briefly_for_a_slow_usage_server(env, home, oauth_server, usage_server) -> None:
    """`status` is a quick look (panels and scripts call it in a loop): old numbers beat a long wait."""
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    usage_server.fail_next("slow:9")
    started = time.monotonic()
    status = run_cli(["status", "--json"], env)
    took = time.monotonic() - started
    assert status.returncode == 0, status.stderr
    assert took < 7, f"status waited {took:.1f} s for the usage server"
    assert "did not answer in time" in json.loads(status.stdout)["usage"]["error"]


def test_alert_memory_of_the_wrong_shape_is_forgotten_not_fatal(tmp_path) -> None:
    """A usage.json edited by hand (or by an older version) must not silence every notification."""
    (tmp_path / "usage.json").write_text(json.dumps(
        {"alerts": {"5 h": "x", "Week": {"levels": "abc", "exhausted": "no"}}}))
    store, notes = UsageStore(tmp_path), RecordingNotifier()
    alerts = UsageAlerts(notes, store, (80, 95))
    usage = Usage("", NOW, (UsageWindow("5 h", 190, 200, 10, None), UsageWindow("Week", 10, 200, 190, None)))
    alerts.check(usage, NOW)
    assert [title for title, _ in notes.sent] == ["Kimi quota 95 % used"]
    assert store.load_alerts()["5 h"] == {"levels": [80.0, 95.0], "exhausted": False}
    alerts.check(usage, NOW + 300)
    assert len(notes.sent) == 1, "and it is remembered again"


def test_two_windows_with_the_same_name_notify_once_each(tmp_path) -> None:
    """A 7-day entry in `limits` is named like the weekly quota; alerts remember windows by name."""
    body = {"usage": {"limit": 100, "used": 85},
            "limits": [{"window": {"duration": 7, "timeUnit": "TIME_UNIT_DAY"},
                        "detail": {"limit": 100, "remaining": 90}}]}
    usage = parse_usages(body, fetched_at=NOW)
    assert [w.name for w in usage.windows] == ["Week", "Week (2)"]
    notes = RecordingNotifier()
    alerts = UsageAlerts(notes, UsageStore(tmp_path), (80, 95))
    for minute in range(0, 30, 5):
        alerts.check(parse_usages(body, fetched_at=NOW + 60 * minute), NOW + 60 * minute)
    assert [title for title, _ in notes.sent] == ["Kimi quota 80 % used"]


def test_a_401_for_a_token_renewed_meanwhile_retries_without_renewing_again(
        settings, home, oauth_server, usage_server) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock)
    usage_server.fail_next("slow:4")  # the request with the old token is slow...
    engine = Engine(quiet_settings(settings), clock=clock)
    engine.send(WatchUsage())
    engine.step()
    engine.send(RenewNow())  # ...and the token is renewed while it hangs
    engine.step()
    assert oauth_server.successful_refreshes == 1
    usage_server.rejected_tokens.add(tokens["access_token"])  # so the old one is refused
    assert wait_for(lambda: (engine.step(), engine.status.usage)[1] is not None
                    and engine.status.usage.fetched_at is not None, timeout=10)
    assert oauth_server.successful_refreshes == 1, "the new token was not renewed again"
    assert usage_server.count == 2 and not engine.status.usage.error


def test_status_never_renews_the_token_for_the_usage_server(env, home, oauth_server, usage_server) -> None:
    """`status` is a look: panels run it every few seconds. A usage server that refuses every token
    must not turn that into a renewal (a new refresh token) a minute; `usage` and the tray may."""
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    usage_server.fail_always("401")
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert "HTTP 401" in json.loads(status.stdout)["usage"]["error"]
    assert oauth_server.successful_refreshes == 0 and usage_server.count == 1
    usage = run_cli(["usage"], env)
    assert usage.returncode == 1 and oauth_server.successful_refreshes == 1 and usage_server.count == 3


def test_a_reply_far_too_large_to_be_usage_is_refused(usage_server) -> None:
    usage_server.reply = json.dumps(kimi_reply(NOW)).encode() + b" " * (2 << 20)  # valid JSON, 2 MiB
    with pytest.raises(TransientError, match="far too large"):
        UsageClient(usage_server.url).fetch("at-secret", NOW)
