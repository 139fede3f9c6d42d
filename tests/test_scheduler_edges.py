"""The engine's step at its edges, driven with no thread and a fake clock: when a refresh is due
for each token lifetime, the least gap between two refreshes, backoff and Retry-After, a resume,
a wall clock set back, and what each command does.

Real parts: the loopback OAuth server, real credential and state files.
"""

from __future__ import annotations

import json
import logging
import stat
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.health import GatewayRestart, Health, LoginView, Status
from kimi_tray.engine.commands import (
    CancelLogin,
    FileChanged,
    GatewayRestarted,
    LoginCodeShown,
    LoginEnded,
    RememberForcedLoginWarning,
    RenewNow,
    RestartGateway,
    Resumed,
    StartLogin,
    UseEvents,
)
from kimi_tray.engine.scheduler import (
    MIN_LOOP_DELAY,
    RESUME_JUMP,
    RESUME_RETRY,
    RESUME_WINDOW,
    Engine,
)
from kimi_tray.stores.credentials import CredentialSource
from kimi_tray.stores.state import StateStore, fingerprint
from tests.conftest import calls, immutable, kimi_file, read_json, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth

POLL = 30.0  # the settings' poll interval


@pytest.fixture
def quiet(settings: Settings) -> Settings:
    """No OpenClaw, no quota fetches: only the renewal schedule drives the step."""
    assert settings.poll_interval == POLL
    return settings.with_overrides(openclaw_mode="off", usage_enabled=False)


def seed(home: Path, server: FakeKimiOAuth, clock: FakeClock, left: float, lifetime: float = 900) -> dict:
    server.lifetime = int(lifetime)
    tokens = server.issue()
    write_credentials(kimi_file(home), tokens, clock.now() + left)
    return tokens


def make(settings: Settings, clock: FakeClock, **kw) -> Engine:
    return Engine(settings, clock=clock, rng=lambda: 0.5, **kw)


def refreshes(server: FakeKimiOAuth) -> int:
    return len([r for r in server.requests if r["grant_type"] == "refresh_token"])


# ----------------------------------------------------------------------------- due times
@pytest.mark.parametrize("lifetime", [60, 300, 900, 3600])
def test_a_refresh_is_due_at_half_the_lifetime_not_half_a_second_earlier(
        quiet: Settings, home: Path, oauth_server: FakeKimiOAuth, lifetime: float) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=lifetime, lifetime=lifetime)
    engine = make(quiet, clock)
    assert engine.step() == min(POLL, lifetime / 2)
    clock.advance(lifetime / 2 - 0.5)
    assert engine.step() == MIN_LOOP_DELAY and refreshes(oauth_server) == 0
    assert engine.status.health is not Health.NEEDS_LOGIN
    clock.advance(0.5)
    delay = engine.step()
    assert refreshes(oauth_server) == 1 and oauth_server.successful_refreshes == 1
    assert engine.status.expires_at == pytest.approx(clock.now() + lifetime)
    assert engine.status.lifetime == lifetime and engine.status.failures == 0
    assert delay == min(POLL, lifetime / 2), "the next refresh is due half a lifetime later"
    assert engine.status.last_renewal == clock.now()


def test_no_busy_loop_while_nothing_is_due(quiet: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=3600, lifetime=3600)
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    assert engine.step() == 1800.0, "events wake it: sleep until the refresh is due"
    engine.send(UseEvents(600.0))
    assert engine.step() == 600.0


@pytest.mark.parametrize("lifetime", [60, 900])
def test_at_most_one_refresh_per_quarter_lifetime_even_if_the_file_says_due(
        quiet: Settings, home: Path, oauth_server: FakeKimiOAuth, lifetime: float) -> None:
    """Another program writes a token already due right after our refresh: the gap holds."""
    gap = max(10.0, lifetime / 4)
    clock = FakeClock()
    seed(home, oauth_server, clock, left=1, lifetime=lifetime)
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    engine.step()
    assert refreshes(oauth_server) == 1
    seed(home, oauth_server, clock, left=1, lifetime=lifetime)
    clock.advance(1)
    assert engine.step() == pytest.approx(gap - 1)
    assert refreshes(oauth_server) == 1
    clock.advance(gap - 1.5)
    engine.step()
    assert refreshes(oauth_server) == 1, "half a second before the gap ends"
    clock.advance(0.5)
    engine.step()
    assert refreshes(oauth_server) == 2


def test_the_gap_holds_when_the_wall_clock_is_set_back(quiet: Settings, home: Path,
                                                       oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=1)
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    engine.step()
    clock.jump_wall(-300)  # back by more than the gap: the wall clock alone would allow a refresh
    seed(home, oauth_server, clock, left=1)
    engine.step()
    assert refreshes(oauth_server) == 1, "the monotonic copy of the gap still holds"
    clock.advance(224)
    engine.step()
    assert refreshes(oauth_server) == 1
    clock.advance(1)
    engine.step()
    assert refreshes(oauth_server) == 2


def test_a_wall_clock_set_back_never_delays_a_refresh(quiet: Settings, home: Path,
                                                      oauth_server: FakeKimiOAuth) -> None:
    """Due by the monotonic clock: the file's expiry looks far away, the refresh runs anyway."""
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    assert engine.step() == 450
    clock.jump_wall(-1000)
    assert engine.step() == 450, "sleeps by the monotonic clock, not 1450 s"
    clock.advance(449.5)
    engine.step()
    assert refreshes(oauth_server) == 0
    clock.advance(0.5)
    engine.step()
    assert oauth_server.successful_refreshes == 1, "forced past the wall clock's own check"


# ----------------------------------------------------------------------------- failures
def test_backoff_after_failures_then_recovery(quiet: Settings, home: Path, oauth_server: FakeKimiOAuth,
                                              caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.scheduler")
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("500", "500")
    engine = make(quiet, clock)
    seen: list[Status] = []
    engine.add_listener(seen.append)
    assert engine.step() == pytest.approx(3.75), "5 s with the jitter at its middle"
    assert engine.status.failures == 1 and engine.status.message.startswith("renewal failing: ")
    assert engine.status.health is Health.AGING
    assert seen[0].renewing is True, "faces see the attempt while it runs"
    assert not any(s.renewing for s in seen[1:])
    (line,) = [r.getMessage() for r in caplog.records]
    reason = engine.status.message.removeprefix("renewal failing: ")
    assert "500" in reason and line == f"Renewal failed ({reason}); next attempt in 4 s."
    clock.advance(3.25)
    engine.step()
    assert refreshes(oauth_server) == 1
    clock.advance(0.5)
    assert engine.step() == pytest.approx(7.5)
    assert refreshes(oauth_server) == 2 and engine.status.failures == 2
    clock.advance(7.5)
    caplog.clear()
    engine.step()
    assert oauth_server.successful_refreshes == 1
    assert engine.status.failures == 0 and engine.status.message == ""
    assert engine.status.health is Health.FRESH
    assert [r.getMessage() for r in caplog.records] == ["Renewed the Kimi token; it now lasts 900 s."]


def test_a_token_that_cannot_be_saved_is_not_asked_for_and_says_why(quiet: Settings, home: Path,
                                                                    oauth_server: FakeKimiOAuth,
                                                                    caplog) -> None:
    caplog.set_level(logging.ERROR, logger="kimi_tray.engine.scheduler")
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    (kimi_file(home).parent / "kimi-code.lock").touch()
    with immutable(kimi_file(home).parent):
        engine = make(quiet, clock)
        assert engine.step() == pytest.approx(3.75)
        status = engine.status
        assert status.failures == 1 and status.health is Health.AGING
        assert status.message and not status.message.startswith("renewal failing")
        assert [r.getMessage() for r in caplog.records] == [status.message]
        clock.advance(3.75)
        assert engine.step() == pytest.approx(7.5)
        assert engine.status.failures == 2
    assert oauth_server.refresh_calls == 0, "no token is asked for that could not be saved"
    clock.advance(7.5)
    engine.step()
    assert engine.status.failures == 0 and engine.status.message == ""
    assert oauth_server.successful_refreshes == 1


def test_a_retry_after_longer_than_all_backoff_is_honoured(quiet: Settings, home: Path,
                                                           oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:500")
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    assert engine.step() == pytest.approx(500)
    clock.advance(499.5)
    engine.step()
    assert refreshes(oauth_server) == 1, "not before the server said"
    clock.advance(0.5)
    engine.step()
    assert oauth_server.successful_refreshes == 1


def test_a_rejected_token_asks_for_a_login_and_stops_trying(quiet: Settings, home: Path,
                                                             oauth_server: FakeKimiOAuth, caplog) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    oauth_server.revoke_all()
    engine = make(quiet, clock)
    assert engine.step() == POLL
    assert engine.status.health is Health.NEEDS_LOGIN and engine.status.failures == 0
    assert "Run `kimi-tray login`" in caplog.text
    for _ in range(5):
        clock.advance(engine.step())
    assert refreshes(oauth_server) == 1
    engine.send(RenewNow())  # the menu's Renew now asks again
    engine.step()
    assert refreshes(oauth_server) == 2


@pytest.mark.parametrize("failure", ["401", "500"])
def test_a_login_from_elsewhere_seen_without_an_event_clears_the_old_failure(
        quiet: Settings, home: Path, oauth_server: FakeKimiOAuth, failure: str) -> None:
    """A network filesystem or a missed event: the new login is seen by the step's own look at
    the file, and the rejected (or failing) old token's message goes with it."""
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    if failure == "401":
        oauth_server.revoke_all()
    else:
        oauth_server.fail_always("500")
    engine = make(quiet, clock)
    engine.step()
    assert engine.status.message, "the failure is shown"
    oauth_server.clear_faults()
    clock.advance(1)
    write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 880)  # `kimi login`
    engine.step()
    assert (engine.status.health, engine.status.message, engine.status.failures) == (Health.FRESH, "", 0)


def test_a_login_landing_right_after_the_rejection_clears_it(quiet: Settings, home: Path,
                                                              oauth_server: FakeKimiOAuth) -> None:
    """`kimi login` elsewhere lands just after our refresh of the old token was rejected (here:
    as the engine logs the rejection): the rejection was the old token's."""
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    oauth_server.revoke_all()
    fresh = oauth_server.issue()

    class LoginElsewhere(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Run `kimi-tray login`" in record.getMessage():
                write_credentials(kimi_file(home), fresh, clock.now() + 880)

    handler = LoginElsewhere()
    logging.getLogger("kimi_tray.engine.scheduler").addHandler(handler)
    try:
        engine = make(quiet, clock)
        engine.step()
    finally:
        logging.getLogger("kimi_tray.engine.scheduler").removeHandler(handler)
    assert refreshes(oauth_server) == 1
    assert read_json(kimi_file(home))["refresh_token"] == fresh["refresh_token"]
    assert (engine.status.health, engine.status.message, engine.status.failures) == (Health.FRESH, "", 0)


def test_a_transient_failure_right_after_a_resume_is_retried_quickly(quiet: Settings, home: Path,
                                                                     oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=2000, lifetime=3600)
    engine = make(quiet, clock)
    engine.step()
    clock.jump_wall(RESUME_JUMP + 0.5 + 1000)  # asleep: the token is now due
    oauth_server.fail_next("500", "500", "500")
    assert engine.step() == RESUME_RETRY
    clock.advance(RESUME_WINDOW - RESUME_RETRY)
    assert engine.step() == RESUME_RETRY, "still inside the window"
    clock.advance(RESUME_RETRY)  # the window is over: plain backoff again (20 s at the middle)
    assert engine.step() == pytest.approx(15)
    assert refreshes(oauth_server) == 3


def test_a_server_retry_after_wins_even_after_a_resume(quiet: Settings, home: Path,
                                                       oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=2000, lifetime=3600)
    engine = make(quiet, clock)
    engine.send(UseEvents(3600.0))
    engine.step()
    engine.send(Resumed())
    clock.advance(1000)
    oauth_server.fail_next("429:40")
    assert engine.step() == pytest.approx(40)


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize(("jump", "resumed"), [(RESUME_JUMP, False), (RESUME_JUMP + 0.5, True)])
def test_a_resume_is_a_wall_clock_jump_of_more_than_a_minute(quiet: Settings, home: Path,
                                                             oauth_server: FakeKimiOAuth, caplog,
                                                             jump: float, resumed: bool) -> None:
    """A resume forgets the Retry-After wait: the network is back, try now."""
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:300")
    engine = make(quiet, clock)
    engine.step()
    clock.jump_wall(jump)
    engine.step()
    assert refreshes(oauth_server) == (2 if resumed else 1)
    assert ("resume from sleep" in caplog.text) is resumed


def test_a_resume_signal_also_forgets_the_wait(quiet: Settings, home: Path,
                                               oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:300")
    engine = make(quiet, clock)
    engine.step()
    engine.send(Resumed())
    engine.step()
    assert oauth_server.successful_refreshes == 1


def test_after_a_long_sleep_the_gap_since_our_refresh_is_on_the_wall_clock(quiet: Settings, home: Path,
                                                                           oauth_server: FakeKimiOAuth
                                                                           ) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    engine = make(quiet, clock)
    engine.step()
    assert refreshes(oauth_server) == 1
    clock.jump_wall(3 * 3600)  # the monotonic clock stood still; the new token has expired
    engine.step()
    assert oauth_server.successful_refreshes == 2
    assert engine.status.health is Health.FRESH


# ----------------------------------------------------------------------------- commands
def test_renew_now_refreshes_even_a_fresh_token(quiet: Settings, home: Path,
                                                oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.step()
    engine.send(RenewNow())
    engine.step()
    assert oauth_server.successful_refreshes == 1 and engine.status.health is Health.FRESH


def test_the_forced_login_warning_time_is_saved(quiet: Settings, home: Path,
                                                oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.send(RememberForcedLoginWarning(clock.now() - 3))
    engine.step()
    assert engine.status.last_forced_login_warning == clock.now() - 3
    assert StateStore(quiet.state_dir).load().last_forced_login_warning == clock.now() - 3


def test_a_changed_credential_file_with_a_new_token_forgets_the_backoff(quiet: Settings, home: Path,
                                                                        oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:300")
    engine = make(quiet, clock)
    engine.step()
    assert engine.status.failures == 1
    same = read_json(kimi_file(home))
    write_credentials(kimi_file(home), same, same["expires_at"], touched=True)
    engine.send(FileChanged(kimi_file(home)))
    engine.step()
    assert engine.status.failures == 1 and refreshes(oauth_server) == 1, "the same token: still waiting"
    seed(home, oauth_server, clock, left=300)  # another program logged in
    engine.send(FileChanged(kimi_file(home)))
    engine.step()
    assert engine.status.failures == 0 and oauth_server.successful_refreshes == 1


def test_a_changed_state_file_is_taken(quiet: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    tokens = seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.step()
    other = StateStore(quiet.state_dir)
    state = other.load()
    state.dead_refresh_fp, state.dead_reason = fingerprint(tokens["refresh_token"]), "Rejected elsewhere."
    other.save(state)
    engine.step()
    assert engine.status.health is Health.FRESH, "not read without an event"
    engine.send(FileChanged(engine.memory.path))
    engine.step()
    assert engine.status.health is Health.NEEDS_LOGIN and engine.status.message == "Rejected elsewhere."


def test_login_reports_of_another_attempt_are_ignored(quiet: Settings, home: Path,
                                                      oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    engine = make(quiet, clock)
    engine.send(GatewayRestarted(1, True, "ignored kind"))  # not a login report
    engine.send(LoginCodeShown(1, "CODE", "u", "u?c", 600))
    engine.step()
    assert engine.status.login is None, "no login was started"
    engine._login = LoginView(2, "starting")  # as StartLogin leaves it, without a worker thread
    engine.send(LoginCodeShown(1, "OLD", "u", "u?c", 600))
    engine.send(LoginCodeShown(2, "CODE", "http://h/d", "http://h/d?c", 600))
    engine.step()
    assert engine.status.login == LoginView(2, "waiting", "CODE", "http://h/d", "http://h/d?c",
                                            clock.now() + 600)
    assert engine.status.login_in_progress
    engine.send(LoginEnded(2, None, error="The login was denied in the browser."))
    engine.step()
    assert engine.status.login == LoginView(2, "failed", message="The login was denied in the browser.")
    engine._login = LoginView(3, "waiting")
    engine.send(LoginEnded(3, None, cancelled=True, error="cancelled"))
    engine.step()
    assert engine.status.login == LoginView(3, "cancelled", message="cancelled")


def test_a_successful_login_replaces_a_dead_token_and_clears_the_failures(quiet: Settings, home: Path,
                                                                          oauth_server: FakeKimiOAuth
                                                                          ) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=100)
    oauth_server.revoke_all()
    engine = make(quiet, clock)
    engine.step()
    assert engine.status.health is Health.NEEDS_LOGIN
    tokens = seed(home, oauth_server, clock, left=900)  # what the login worker saved
    saved = CredentialSource(kimi_file(home), home / ".kimi", "kimi-cli").load()
    engine._login = LoginView(1, "waiting")
    engine.send(LoginEnded(1, saved))
    engine.step()
    assert engine.status.health is Health.FRESH and engine.status.failures == 0
    assert engine.status.login == LoginView(1, "done", message="Logged in; OpenClaw off.")
    assert engine.status.expires_at == saved.expires_at
    assert saved.refresh_token == tokens["refresh_token"]


def test_start_login_runs_one_login_and_cancel_ends_it(quiet: Settings, home: Path,
                                                       oauth_server: FakeKimiOAuth) -> None:
    oauth_server.device_script = ["pending"]
    clock = FakeClock()
    engine = make(quiet, clock)
    engine.send(StartLogin())
    engine.send(StartLogin())  # a second click while one starts
    engine.step()
    login = engine.status.login  # its worker may have got the code within this same step
    assert login is not None and login.attempt == 1 and login.phase in ("starting", "waiting")
    assert engine.status.login_in_progress and engine.status.health is Health.NEEDS_LOGIN
    engine.send(CancelLogin())
    engine.step()
    worker_ended = threading.Event()
    engine.add_listener(lambda s: worker_ended.set() if s.login and not s.login.active else None)
    for _ in range(200):
        engine.step()
        if worker_ended.is_set():
            break
        worker_ended.wait(0.05)
    assert engine.status.login is not None and engine.status.login.phase == "cancelled"
    assert engine.status.login.attempt == 1 and not kimi_file(home).exists()


def test_a_gateway_restart_runs_once_at_a_time_and_its_outcome_shows(quiet: Settings) -> None:
    clock = FakeClock()
    engine = make(quiet, clock)
    engine.send(RestartGateway())
    engine.send(RestartGateway())  # a second click while the first runs
    for _ in range(200):
        engine.step()
        restart = engine.status.gateway_restart
        if restart is not None and not restart.running:
            break
        threading.Event().wait(0.05)
    assert engine.status.gateway_restart == GatewayRestart(
        1, False, False, "OpenClaw sync is off; there is no gateway to restart.")
    engine.send(GatewayRestarted(7, False, "The gateway restart failed."))
    engine.step()
    assert engine.status.gateway_restart == GatewayRestart(7, False, False, "The gateway restart failed.")
    engine.send(GatewayRestarted(8, True, "Restarted."))
    engine.step()
    assert engine.status.gateway_restart == GatewayRestart(8, False, True, "Restarted.")


# ----------------------------------------------------------------------------- what faces read
def test_the_first_status_says_starting(quiet: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    assert engine.status.health is Health.ERROR and engine.status.message == "starting"
    assert engine.status.now == clock.now()
    assert engine.handle().status is engine.status


def test_a_failing_listener_does_not_stop_the_others(quiet: Settings, caplog) -> None:
    engine = make(quiet, FakeClock())
    seen: list[Status] = []

    def broken(status: Status) -> None:
        raise RuntimeError("face bug")

    engine.add_listener(broken)
    engine.handle().add_listener(seen.append)
    engine.step()
    assert seen == [engine.status]
    assert "A status listener failed" in caplog.text


def test_usage_is_asked_only_with_a_live_token(settings: Settings, home: Path,
                                               oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    tokens = seed(home, oauth_server, clock, left=100)
    engine = make(settings.with_overrides(openclaw_mode="off"), clock)
    engine.snapshot()
    now = clock.now()
    assert engine.usage_token(now) == tokens["access_token"]
    assert engine.usage_token(now + 99.5) == tokens["access_token"]
    assert engine.usage_token(now + 100) is None, "expired at its expiry"
    off = make(settings.with_overrides(openclaw_mode="off", usage_enabled=False), clock)
    off.snapshot()
    assert off.usage_token(now) is None
    engine._login = LoginView(1, "waiting")
    assert engine.usage_token(now) is None, "not while a login replaces it"
    engine._login = LoginView(1, "failed")
    assert engine.usage_token(now) == tokens["access_token"]
    state = engine.memory.state
    state.dead_refresh_fp = fingerprint(tokens["refresh_token"])
    assert engine.usage_token(now) is None, "not with a token the server rejected"


def test_usage_is_never_asked_without_a_readable_file(settings: Settings, home: Path) -> None:
    engine = make(settings.with_overrides(openclaw_mode="off"), FakeClock())
    engine.snapshot()
    assert engine.usage_token(FakeClock().now()) is None
    kimi_file(home).parent.mkdir(parents=True)
    kimi_file(home).write_text("{not json")
    engine.snapshot()
    assert engine.status.health is Health.ERROR or engine.snapshot().health is Health.ERROR
    assert engine.usage_token(FakeClock().now()) is None


def test_renew_for_usage_says_whether_it_worked(quiet: Settings, home: Path,
                                                oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.snapshot()
    assert engine.renew_for_usage() is True and oauth_server.successful_refreshes == 1
    oauth_server.fail_next("500")
    clock.advance(300)
    assert engine.renew_for_usage() is False


def test_credential_paths_are_both_cli_files_unless_one_is_chosen(settings: Settings, home: Path,
                                                                  tmp_path: Path) -> None:
    engine = make(settings, FakeClock())
    assert engine.credential_paths() == [settings.kimi_share_dir / "credentials" / "kimi-code.json",
                                         settings.kimi_code_home / "credentials" / "kimi-code.json"]
    chosen = tmp_path / "mine.json"
    assert make(settings.with_overrides(credentials_file=chosen), FakeClock()).credential_paths() == [chosen]
    fixed = CredentialSource(tmp_path / "fixed.json", tmp_path, "kimi-cli")
    assert make(settings, FakeClock(), source=fixed).credential_paths() == [fixed.path]
    assert engine.watched_paths()[:3] == [*engine.credential_paths(), engine.memory.path]


def test_a_login_only_engine_runs_no_renewal(quiet: Settings, home: Path,
                                             oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=10)
    engine = make(quiet, clock, routine=False)
    assert engine.step() == POLL
    engine.send(RenewNow())
    assert engine.step() == POLL
    assert refreshes(oauth_server) == 0


def test_stop_before_start_and_join_of_a_thread_never_started(quiet: Settings) -> None:
    engine = make(quiet, FakeClock())
    assert engine.join(0.1) is False
    engine.stop(timeout=1)  # no thread: returns at once
    handle = engine.handle()
    assert handle.join(0) is False


def test_the_loop_survives_a_failing_step(quiet: Settings, caplog) -> None:
    calls: list[float] = []

    class Flaky(Engine):
        def step(self) -> float:
            calls.append(self.clock.now())
            if len(calls) == 1:
                raise RuntimeError("bug")
            if len(calls) >= 3:
                self._stop.set()
            return 5.0

    clock = FakeClock()
    engine = Flaky(quiet, clock=clock)
    start = clock.now()
    engine.handle().start()
    assert engine.join(10) is False
    assert "Unexpected error in the engine loop" in [r.getMessage() for r in caplog.records]
    assert calls == [start, start + POLL, start + POLL + 5.0], "after a failure: one poll interval"


def test_stop_ends_the_thread_and_a_running_login(quiet: Settings, home: Path,
                                                  oauth_server: FakeKimiOAuth) -> None:
    oauth_server.device_script = ["pending"]
    engine = Engine(quiet)
    statuses: list[Status] = []
    engine.add_listener(statuses.append)
    handle = engine.handle()
    handle.start()
    handle.send(StartLogin())
    for _ in range(200):
        if statuses and statuses[-1].login is not None and statuses[-1].login.phase == "waiting":
            break
        threading.Event().wait(0.05)
    worker = engine._login_worker
    assert worker is not None
    handle.stop(timeout=10)
    assert handle.join(0) is False
    assert worker.cancel.is_set()



# ----------------------------------------------------------------------------- OpenClaw and unsaved
@pytest.fixture
def file_mode(settings: Settings, env: dict[str, str], monkeypatch) -> Settings:
    """OpenClaw's legacy file as the target; its gateway restart is the shell's fast path."""
    from kimi_tray.stores.openclaw import legacy_profiles_path

    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    profiles = legacy_profiles_path(settings.openclaw_state_dir, "main")
    profiles.parent.mkdir(parents=True)
    profiles.write_text(json.dumps({"version": 1, "profiles": {}}))
    return settings.with_overrides(openclaw_mode="file", usage_enabled=False)


def profile(settings: Settings) -> dict | None:
    from kimi_tray.stores.openclaw import legacy_profiles_path

    return read_json(legacy_profiles_path(settings.openclaw_state_dir, "main"))["profiles"].get(
        "kimi-coding:default")


def test_openclaw_gets_the_token_once_and_again_after_an_outside_change(file_mode: Settings, home: Path,
                                                                        oauth_server: FakeKimiOAuth,
                                                                        env: dict[str, str]) -> None:
    from kimi_tray.stores.openclaw import legacy_profiles_path

    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock, left=900)
    engine = make(file_mode, clock)
    engine.step()
    held = profile(file_mode)
    assert held is not None and held["access"] == tokens["access_token"]
    assert engine.status.openclaw == "in_sync"
    restarts = len(calls(env))
    engine.step()
    assert len(calls(env)) == restarts, "nothing to hand over a second time"
    path = legacy_profiles_path(file_mode.openclaw_state_dir, "main")
    path.write_text(json.dumps({"version": 1, "profiles": {}}))
    engine.step()
    assert profile(file_mode) is None, "not noticed without an event"
    engine.send(FileChanged(path))
    engine.step()
    again = profile(file_mode)
    assert again is not None and again["access"] == tokens["access_token"]
    assert engine.watched_paths()[-1] == path


def test_an_expired_token_is_not_handed_to_openclaw(file_mode: Settings, home: Path,
                                                    oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=-1)
    oauth_server.fail_always("500")
    engine = make(file_mode, clock)
    engine.step()
    assert profile(file_mode) is None and engine.status.health is Health.EXPIRED


def test_renew_hands_over_only_what_openclaw_lacks(file_mode: Settings, home: Path,
                                                   oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock, left=900)
    engine = make(file_mode, clock)
    first = engine.renew(force=False)
    assert first.renewed is False and first.credentials.refresh_token == tokens["refresh_token"]
    assert first.openclaw.state == "in_sync"
    second = engine.renew(force=False)
    assert second.renewed is False and second.openclaw == engine.memory.state.openclaw
    assert second.restart_message == ""
    forced = engine.renew()
    assert forced.renewed is True and oauth_server.successful_refreshes == 1
    assert forced.restart_message, "the gateway restart after the hand-off is told"
    held = profile(file_mode)
    assert held is not None and held["access"] == forced.credentials.access_token


def test_snapshot_reads_the_file_now(quiet: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    engine = make(quiet, clock)
    assert engine.snapshot().health is Health.NEEDS_LOGIN
    seed(home, oauth_server, clock, left=400)
    snap = engine.snapshot()
    assert snap.health is Health.AGING and snap.expires_at == clock.now() + 400
    kimi_file(home).unlink()
    assert engine.snapshot().health is Health.NEEDS_LOGIN


def test_an_unsaved_token_is_retried_and_the_engine_wakes_when_the_files_token_changes_colour(
        quiet: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    from kimi_tray.engine.recovery import RECOVERY_FILE, Unsaved, write_recovery

    clock = FakeClock()
    old = seed(home, oauth_server, clock, left=125)
    fresh = oauth_server.issue()
    unsaved = Unsaved(fresh["access_token"], fresh["refresh_token"], clock.now() + 900, 900, "kimi-code",
                      "Bearer", fingerprint(old["refresh_token"]), "disk full")
    write_recovery(quiet.state_dir / RECOVERY_FILE, unsaved)
    (kimi_file(home).parent / "kimi-code.lock").touch()
    with immutable(kimi_file(home).parent):
        engine = make(quiet, clock)
        engine.send(UseEvents(3600.0))
        assert engine.step() == pytest.approx(3.75), "the first backoff"
        status = engine.status
        assert status.health is Health.ERROR and status.failures == 1
        assert status.message.startswith("new token not saved yet: ")
        assert status.expires_at == clock.now() + 900
        clock.advance(3.75)
        assert engine.step() == pytest.approx(1.25), "wakes when the file's token turns 'expiring'"
        clock.advance(1.25)
        assert engine.step() == pytest.approx(6.25), "then at the next attempt (7.5 s after the last)"
        assert engine.status.failures == 2
        assert refreshes(oauth_server) == 0, "the kept token is put in place, no new one asked"
    clock.advance(6.25)
    engine.step()
    assert engine.status.health is Health.FRESH and engine.status.failures == 0
    assert read_json(kimi_file(home))["refresh_token"] == fresh["refresh_token"]
    assert not (quiet.state_dir / RECOVERY_FILE).exists()


# ----------------------------------------------------------------------------- how it is built
def test_after_the_first_step_nothing_is_failing_renewing_or_running(quiet: Settings, home: Path,
                                                                     oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.step()
    status = engine.status
    assert (status.health, status.failures, status.message, status.renewing) == (Health.FRESH, 0, "", False)
    assert status.login is None and status.gateway_restart is None and not status.login_in_progress
    engine.send(CancelLogin())  # no login runs: nothing to cancel, nothing breaks
    engine.step()
    assert engine.status.login is None


def test_the_state_directory_is_made_private_and_an_unusable_one_is_no_crash(quiet: Settings,
                                                                             tmp_path: Path) -> None:
    state_dir = quiet.state_dir
    state_dir.mkdir(parents=True, mode=0o755)
    state_dir.chmod(0o755)
    make(quiet, FakeClock())
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    engine = make(quiet.with_overrides(state_dir=blocker / "state"), FakeClock())
    assert engine.status.message == "starting"


def test_the_engine_thread_never_keeps_the_process_alive(quiet: Settings) -> None:
    engine = make(quiet, FakeClock())
    engine.send(UseEvents(3600.0))
    engine.start()
    try:
        (thread,) = [t for t in threading.enumerate() if t.name == "kimi-engine"]
        assert thread.daemon is True
    finally:
        engine.stop(timeout=10)
    assert engine.join(0) is False


def test_an_openclaw_target_given_is_the_one_used(quiet: Settings) -> None:
    from kimi_tray.stores.openclaw import choose_target

    target = choose_target(quiet.with_overrides(openclaw_mode="file"))
    engine = make(quiet, FakeClock(), target=target)
    engine.step()
    assert engine.status.openclaw_mode == "file" and engine.handoff.target is target
    assert make(quiet, FakeClock()).status.openclaw_mode == "off"


def test_usage_for_the_cli_is_fetched_with_the_live_token(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth,
                                                          usage_server) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock, left=900)
    engine = make(settings.with_overrides(openclaw_mode="off"), clock)
    usage = engine.usage_for_cli(force=True)
    assert usage is not None and usage.error == "" and usage.windows
    assert usage_server.count == 1
    assert usage_server.requests[-1]["headers"]["Authorization"] == f"Bearer {tokens['access_token']}"


def test_sync_openclaw_hands_over_the_credentials_given(file_mode: Settings, home: Path,
                                                        oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    tokens = seed(home, oauth_server, clock, left=900)
    engine = make(file_mode, clock)
    creds = engine.renewal.read_credentials()
    view, _ = engine.sync_openclaw(creds)
    assert view.state == "in_sync" and view.token_fp == fingerprint(tokens["access_token"])
    held = profile(file_mode)
    assert held is not None and held["access"] == tokens["access_token"]


def wait_for_restart(engine: Engine) -> GatewayRestart:
    for _ in range(400):
        engine.step()
        restart = engine.status.gateway_restart
        if restart is not None and not restart.running:
            return restart
        threading.Event().wait(0.05)
    raise AssertionError(f"the restart did not end: {engine.status.gateway_restart}")


def test_each_gateway_restart_is_a_new_attempt_shown_while_it_runs(file_mode: Settings, monkeypatch,
                                                                   caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.scheduler")
    monkeypatch.setenv("FAKE_OPENCLAW_RESTART_SECONDS", "0.5")
    engine = make(file_mode, FakeClock())
    engine.send(RestartGateway())
    engine.step()
    assert engine.status.gateway_restart == GatewayRestart(1, running=True)
    (worker,) = [t for t in threading.enumerate() if t.name == "restart-gateway"]
    assert worker.daemon is True, "a slow gateway never keeps the process alive"
    first = wait_for_restart(engine)
    assert first.attempt == 1 and first.ok is True and first.message
    assert (logging.INFO, first.message) in [(r.levelno, r.getMessage()) for r in caplog.records]
    engine.send(RestartGateway())
    engine.step()
    assert engine.status.gateway_restart == GatewayRestart(2, running=True)
    assert wait_for_restart(engine).attempt == 2


def test_a_bug_in_the_gateway_restart_is_reported_as_a_failure(quiet: Settings, caplog) -> None:
    engine = make(quiet, FakeClock())

    def broken() -> tuple[bool, str]:
        raise RuntimeError("bug")

    engine.handoff.target.restart_gateway = broken  # type: ignore[method-assign]
    engine.send(RestartGateway())
    failed = "The gateway restart failed (RuntimeError)."
    assert wait_for_restart(engine) == GatewayRestart(1, False, False, failed)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.ERROR, "Unexpected error while restarting the OpenClaw gateway") in logged
    assert (logging.WARNING, failed) in logged


def test_a_new_token_from_elsewhere_also_clears_the_failure_message(quiet: Settings, home: Path,
                                                                    oauth_server: FakeKimiOAuth) -> None:
    """Another program renewed while ours was failing: no failure is left, so no failure is shown
    (the daemon logs each new message; `status --json` prints it)."""
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:300")
    engine = make(quiet, clock)
    engine.step()
    assert engine.status.message.startswith("renewal failing: ")
    seed(home, oauth_server, clock, left=900)
    engine.send(FileChanged(kimi_file(home)))
    engine.step()
    assert engine.status.health is Health.FRESH and engine.status.failures == 0
    assert engine.status.message == ""


# ----------------------------------------------------------------------------- one-shot renew
def test_renew_retries_with_backoff_on_the_engines_clock_and_tells_each_retry(quiet: Settings, home: Path,
                                                                              oauth_server: FakeKimiOAuth
                                                                              ) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("500", "500")
    heard: list[tuple[int, int, str, float]] = []
    engine = make(quiet, clock)
    started = clock.monotonic()
    result = engine.renew(on_retry=lambda *args: heard.append(args))
    assert result.renewed is True and result.restart_message == ""
    waited = clock.monotonic() - started
    assert waited == pytest.approx(3.75 + 7.5), "waited the backoff, jitter at its middle"
    assert [(n, delay) for n, _, _, delay in heard] == [(1, 3.75), (2, 7.5)]
    assert all("500" in reason for _, _, reason, _ in heard)


@pytest.mark.parametrize(("give_up_after", "attempts"), [(None, 4), (10.0, 2)])
def test_renew_gives_up_after_the_time_given_or_the_settings(quiet: Settings, home: Path,
                                                             oauth_server: FakeKimiOAuth,
                                                             give_up_after: float | None,
                                                             attempts: int) -> None:
    """45 s by default: attempts at 0, 3.75, 11.25 and 26.25 s; the next would start after 45 s."""
    from kimi_tray.core.errors import TransientError

    assert quiet.renew_give_up_after == 45.0
    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_always("500")
    with pytest.raises(TransientError, match=f"Gave up after {attempts} attempt"):
        make(quiet, clock).renew(give_up_after=give_up_after)
    assert refreshes(oauth_server) == attempts


def test_a_stop_ends_a_renew_between_attempts(quiet: Settings, home: Path,
                                              oauth_server: FakeKimiOAuth) -> None:
    from kimi_tray.core.errors import TransientError
    from kimi_tray.engine.commands import Stop

    clock = FakeClock()
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_always("500")
    engine = make(quiet, clock)
    engine.send(Stop())
    with pytest.raises(TransientError):
        engine.renew()
    assert refreshes(oauth_server) == 1


def test_join_of_a_running_engine_says_it_still_runs(quiet: Settings) -> None:
    engine = Engine(quiet)  # the real clock: its thread sleeps
    engine.start()
    try:
        assert engine.join(0.1) is True
    finally:
        engine.stop(timeout=10)
    assert engine.join(0.1) is False


def test_stop_waits_only_as_long_as_told_for_a_stuck_step(quiet: Settings) -> None:
    release, stuck = threading.Event(), threading.Event()

    class Stuck(Engine):
        def step(self) -> float:
            stuck.set()
            release.wait(10)
            return 1.0

    engine = Stuck(quiet)
    handle = engine.handle()
    handle.start()
    try:
        assert stuck.wait(10)  # stopped before its first step, the thread would just end
        started = time.monotonic()
        handle.stop(timeout=0.2)
        assert time.monotonic() - started < 5 and handle.join(0) is True
        started = time.monotonic()
        engine.stop(timeout=0.2)
        assert time.monotonic() - started < 5
    finally:
        release.set()
    assert handle.join(10) is False


# ----------------------------------------------------------------------------- more of the step
def test_the_status_names_the_file_its_owner_and_the_target(file_mode: Settings, home: Path,
                                                            oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=900)
    engine = make(file_mode, clock)
    engine.send(RememberForcedLoginWarning(clock.now() - 9))
    engine.step()
    status = engine.status
    assert status.credentials_file == str(kimi_file(home)) and status.credentials_owner == "kimi-cli"
    assert status.openclaw_handoff is True and status.openclaw_mode == "file"
    assert status.openclaw_target == engine.handoff.describe() and status.openclaw_target
    assert status.last_forced_login_warning == clock.now() - 9 and status.usage is None
    assert status.last_renewal is None and status.expires_at == clock.now() + 900
    off = make(file_mode.with_overrides(openclaw_mode="off"), clock)
    off.step()
    assert off.status.openclaw_handoff is False and off.status.openclaw == "off"


def test_a_token_at_its_expiry_or_rejected_is_never_handed_to_openclaw(file_mode: Settings, home: Path,
                                                                        oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=0)
    oauth_server.fail_always("500")
    engine = make(file_mode, clock)
    engine.step()
    assert profile(file_mode) is None and engine.status.health is Health.EXPIRED
    oauth_server.clear_faults()
    seed(home, oauth_server, clock, left=200)
    oauth_server.revoke_all()
    engine.send(FileChanged(kimi_file(home)))
    engine.step()
    assert engine.status.health is Health.NEEDS_LOGIN
    assert profile(file_mode) is None


def test_an_openclaw_that_fails_is_retried_after_30_then_60_s(file_mode: Settings, home: Path,
                                                              oauth_server: FakeKimiOAuth) -> None:
    from kimi_tray.stores.openclaw import legacy_profiles_path

    legacy_profiles_path(file_mode.openclaw_state_dir, "main").write_text("{not json")
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=3600, lifetime=3600)
    engine = make(file_mode, clock)
    engine.send(UseEvents(3600.0))
    assert engine.step() == pytest.approx(30)
    assert engine.status.openclaw == "error"
    clock.advance(30)
    assert engine.step() == pytest.approx(60)


def test_a_successful_login_forgets_the_failures_and_says_where_openclaw_stands(
        file_mode: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=300)
    oauth_server.fail_next("429:300")
    engine = make(file_mode, clock)
    engine.step()
    assert engine.status.failures == 1
    tokens = seed(home, oauth_server, clock, left=900)
    saved = CredentialSource(kimi_file(home), home / ".kimi", "kimi-cli").load()
    engine._login = LoginView(1, "waiting")
    engine.send(LoginEnded(1, saved))
    engine.step()
    status = engine.status
    assert status.login == LoginView(1, "done", message="Logged in; OpenClaw in sync.")
    assert (status.failures, status.message, status.health) == (0, "", Health.FRESH)
    assert status.last_renewal == clock.now()
    held = profile(file_mode)
    assert held is not None and held["access"] == tokens["access_token"]


def test_the_other_clis_file_is_found_when_ours_is_gone(quiet: Settings, home: Path,
                                                        oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=900)
    engine = make(quiet, clock)
    engine.step()
    kimi_file(home).unlink()
    other = quiet.kimi_code_home / "credentials" / "kimi-code.json"
    write_credentials(other, oauth_server.issue(), clock.now() + 800)
    engine.step()
    assert engine.status.health is Health.FRESH and engine.status.credentials_file == str(other)
    assert engine.status.credentials_owner == "kimi-code"


def test_an_unreadable_file_is_an_error_and_no_refresh_is_tried(quiet: Settings, home: Path,
                                                                oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    seed(home, oauth_server, clock, left=10)
    kimi_file(home).write_text("{not json")
    engine = make(quiet, clock)
    engine.send(RenewNow())
    assert engine.step() == POLL
    assert engine.status.health is Health.ERROR and str(kimi_file(home)) in engine.status.message
    assert engine.usage_token(clock.now()) is None and refreshes(oauth_server) == 0


def test_an_empty_access_token_is_never_used_for_the_quota(settings: Settings, home: Path,
                                                           oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock()
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), {**tokens, "access_token": ""}, clock.now() + 800)
    engine = make(settings.with_overrides(openclaw_mode="off"), clock)
    engine.snapshot()
    assert engine.usage_token(clock.now()) is None


def test_the_quota_is_fetched_only_once_a_face_watches_it(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth, usage_server) -> None:
    from kimi_tray.engine.commands import FetchUsage, WatchUsage

    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=3600, lifetime=3600)
    engine = make(settings.with_overrides(openclaw_mode="off"), clock)
    engine.send(UseEvents(3600.0))
    engine.send(FetchUsage(urgent=True))  # the daemon: no face shows the quota
    assert engine.step() == 1800.0
    assert usage_server.count == 0
    engine.send(WatchUsage())
    for _ in range(100):
        engine.step()
        if engine.status.usage is not None:
            break
        threading.Event().wait(0.05)
    assert usage_server.count == 1 and engine.status.usage is not None
    assert engine.step() == pytest.approx(settings.usage_interval, abs=1), "the next fetch sets the sleep"


def test_a_resume_asks_for_the_quota_at_once_despite_a_long_server_wait(settings: Settings, home: Path,
                                                                        oauth_server: FakeKimiOAuth,
                                                                        usage_server) -> None:
    from kimi_tray.engine.commands import WatchUsage

    clock = FakeClock(start=time.time())
    seed(home, oauth_server, clock, left=3600, lifetime=3600)
    engine = make(settings.with_overrides(openclaw_mode="off"), clock)
    usage_server.fail_next("429:3000")

    def fetched(count: int) -> bool:
        for _ in range(100):
            engine.step()
            if usage_server.count >= count and engine.usage._fetch is None:
                return True
            threading.Event().wait(0.05)
        return False

    engine.send(WatchUsage())
    assert fetched(1)
    clock.advance(120)
    engine.step()
    assert usage_server.count == 1, "the server said to wait"
    engine.send(Resumed())
    assert fetched(2), "a resume forgets the wait"


def test_the_gap_holds_across_a_restart_by_the_state_files_time(quiet: Settings, home: Path,
                                                                oauth_server: FakeKimiOAuth) -> None:
    """A new process knows our last refresh only from the state file (no monotonic copy)."""
    clock = FakeClock()
    seed(home, oauth_server, clock, left=1)
    make(quiet, clock).step()
    assert refreshes(oauth_server) == 1
    seed(home, oauth_server, clock, left=1)  # another program writes a token already due
    clock.advance(1)
    restarted = make(quiet, clock)
    restarted.send(UseEvents(3600.0))
    assert restarted.step() == pytest.approx(224)
    clock.advance(223.5)
    restarted.step()
    assert refreshes(oauth_server) == 1, "the gap since the last refresh holds after a restart"
    clock.advance(0.5)
    restarted.step()
    assert refreshes(oauth_server) == 2
