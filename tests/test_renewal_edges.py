"""One refresh at its edges: when it is due for each lifetime, backoff and Retry-After, a dead
refresh token, the recovery hand-over and late answers.

Real parts: the loopback OAuth server, real credential files and locks in tmp_path, real state
files; time is a FakeClock (the server's waits are real, and short).
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core import logs
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError, LockTimeout, LoginNeeded, TransientError
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.recovery import RECOVERY_FILE, Unsaved, read_recovery
from kimi_tray.engine.renewal import (
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    Renewal,
    backoff_delay,
    max_more_attempts,
    no_gc_pause,
)
from kimi_tray.kimi.oauth import OAuthClient, TokenResponse
from kimi_tray.stores.fileio import FileLock
from kimi_tray.stores.state import fingerprint
from tests.conftest import fill_up, kimi_file, read_json, small_tmpfs, wait_for, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage
from tests.test_token_safety import immutable

NOW = 1_800_000_000.0


@pytest.fixture
def oauth_server() -> Iterator[FakeKimiOAuth]:
    """The loopback OAuth server, polling for shutdown often (these tests are run many times)."""
    server = FakeKimiOAuth()
    server.thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02},
                                     daemon=True)
    yield server.start()
    server.stop()


@pytest.fixture
def usage_server() -> Iterator[FakeKimiUsage]:
    """Bound but never serving: these tests ask for no usage, and skip its shutdown wait."""
    server = FakeKimiUsage()
    yield server
    server.server.server_close()


def make(settings: Settings, clock: FakeClock, **kwargs: object) -> Renewal:
    return Renewal(settings.with_overrides(openclaw_mode="off"), clock, Memory(settings.state_dir),
                   **kwargs)  # type: ignore[arg-type]


def login(server: FakeKimiOAuth, home: Path, expires_at: float, lifetime: float = 900) -> dict:
    tokens = server.issue()
    write_credentials(kimi_file(home), tokens, expires_at, expires_in=lifetime)
    return tokens


# ----------------------------------------------------------------------------- backoff
@pytest.mark.parametrize(("failures", "low", "high"), [
    (0, 2.5, 5.0), (1, 2.5, 5.0), (2, 5.0, 10.0), (3, 10.0, 20.0), (4, 20.0, 40.0),
    (5, 30.0, 60.0), (12, 30.0, 60.0)])
def test_backoff_doubles_from_5_s_to_a_60_s_cap_with_half_jitter(failures: int, low: float,
                                                                  high: float) -> None:
    assert backoff_delay(failures, None, lambda: 0.0) == low
    assert backoff_delay(failures, None, lambda: 1.0) == high
    assert backoff_delay(failures, None, lambda: 0.5) == (low + high) / 2


def test_retry_after_wins_only_when_longer_and_is_capped() -> None:
    assert backoff_delay(1, 3.0, lambda: 1.0) == 5.0, "a shorter Retry-After does not shorten backoff"
    assert backoff_delay(1, 30.0, lambda: 1.0) == 30.0
    assert backoff_delay(5, 200.0, lambda: 0.0) == 200.0
    assert backoff_delay(1, RETRY_AFTER_CAP + 100, lambda: 0.0) == RETRY_AFTER_CAP == 600.0
    assert backoff_delay(1, 0.0, lambda: 0.0) == 2.5
    assert BACKOFF_CAP == 60.0


@pytest.mark.parametrize(("failures", "time_left", "more"), [
    (1, 6.9, 1), (1, 7.0, 2), (1, 17.9, 2), (1, 18.0, 3),
    (10, 93.9, 3), (10, 94.0, 4), (10, 0.0, 1), (0, 4.4, 1), (0, 4.5, 2)])
def test_attempts_left_before_a_deadline_count_the_shortest_backoffs(failures: int, time_left: float,
                                                                     more: int) -> None:
    """Each further attempt costs at least 1 s plus half its backoff (5 s doubling, 60 s cap)."""
    assert max_more_attempts(failures, time_left) == more


# ----------------------------------------------------------------------------- when a refresh is due
@pytest.mark.parametrize("lifetime", [60, 300, 900, 3600])
def test_a_refresh_is_due_at_half_the_token_lifetime(settings: Settings, home: Path,
                                                     oauth_server: FakeKimiOAuth, lifetime: int) -> None:
    clock = FakeClock(NOW)
    tokens = login(oauth_server, home, NOW + lifetime / 2 + 1, lifetime)
    renewal = make(settings, clock)
    creds, renewed = renewal.refresh_once()
    assert not renewed and oauth_server.refresh_calls == 0
    assert creds.refresh_token == tokens["refresh_token"] and creds.expires_in == lifetime

    clock.advance(1)  # exactly half the lifetime left
    creds, renewed = renewal.refresh_once()
    assert renewed and oauth_server.successful_refreshes == 1
    assert creds.refresh_token in oauth_server.valid_refresh


def test_a_file_without_a_lifetime_is_refreshed_at_450_s_left(settings: Settings, home: Path,
                                                             oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 451, lifetime=0)
    renewal = make(settings, clock)
    assert renewal.refresh_once()[1] is False
    clock.advance(1)
    assert renewal.refresh_once()[1] is True


def test_force_refreshes_a_fresh_token_and_saves_what_the_server_said(settings: Settings, home: Path,
                                                                      oauth_server: FakeKimiOAuth) -> None:
    oauth_server.lifetime = 300
    clock = FakeClock(NOW)
    old = oauth_server.issue()
    write_credentials(kimi_file(home), old, NOW + 3000, expires_in=3600, scope="old-scope",
                      token_type="OldType")
    renewal = make(settings, clock)
    creds, renewed = renewal.refresh_once(force=True)
    assert renewed
    assert creds.access_token not in logs.redact(f"got {creds.access_token}"), "masked in logs"
    saved = read_json(kimi_file(home))
    assert saved["expires_at"] == NOW + 300 == creds.expires_at
    assert saved["expires_in"] == 300 and saved["scope"] == "kimi-code" and saved["token_type"] == "Bearer"
    assert saved["refresh_token"] == creds.refresh_token != old["refresh_token"]
    assert saved["access_token"] == creds.access_token != old["access_token"]
    state = Memory(settings.state_dir).state  # what the next process reads
    assert state == renewal.memory.state
    assert state.last_renewal == NOW and state.inflight_refresh_fp == "" and state.dead_refresh_fp == ""
    assert renewal.last_refresh_mono == clock.monotonic()


def test_a_new_token_forgets_a_dead_one_remembered_before(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    renewal = make(settings, clock)
    renewal.memory.state.dead_refresh_fp = fingerprint("rt-old")
    renewal.memory.state.dead_reason = "The Kimi refresh token was rejected."
    renewal.memory.save()
    assert renewal.refresh_once()[1]
    state = Memory(settings.state_dir).state
    assert state == renewal.memory.state
    assert state.dead_refresh_fp == "" and state.dead_reason == ""


# ----------------------------------------------------------------------------- a dead refresh token
def test_a_rejected_refresh_token_is_remembered_as_dead(settings: Settings, home: Path,
                                                        oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    tokens = login(oauth_server, home, NOW + 10)
    oauth_server.revoke_all()
    renewal = make(settings, clock)
    with pytest.raises(LoginNeeded) as caught:
        renewal.refresh_once()
    assert str(caught.value) == "The Kimi refresh token was rejected. A new login is needed."
    state = Memory(settings.state_dir).state
    assert state == renewal.memory.state
    assert state.dead_refresh_fp == fingerprint(tokens["refresh_token"])
    assert state.dead_reason == "The Kimi refresh token was rejected."
    assert state.inflight_refresh_fp == ""
    assert read_json(kimi_file(home))["refresh_token"] == tokens["refresh_token"], "file left as it was"


def test_a_rejection_after_an_interrupted_attempt_says_the_answer_may_be_lost(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    tokens = login(oauth_server, home, NOW + 10)
    oauth_server.revoke_all()
    renewal = make(settings, clock)
    renewal.memory.state.inflight_refresh_fp = fingerprint(tokens["refresh_token"])  # a crash mid-request
    with pytest.raises(LoginNeeded) as caught:
        renewal.refresh_once()
    assert str(caught.value) == (
        "The Kimi refresh token was rejected. An earlier attempt with it timed out or was interrupted "
        "after reaching the server, which may have accepted it and rotated the token; its answer was "
        "lost. A new login is needed.")
    state = Memory(settings.state_dir).state
    assert state.dead_reason.startswith("The Kimi refresh token was rejected. An earlier attempt")
    assert state.inflight_refresh_fp == ""


def test_a_failure_that_never_reached_the_server_clears_the_in_flight_mark(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("500")
    renewal = make(settings, clock)
    with pytest.raises(TransientError, match=r"HTTP 500"):
        renewal.refresh_once()
    assert Memory(settings.state_dir).state.inflight_refresh_fp == ""


def test_a_failure_after_an_interrupted_attempt_keeps_the_in_flight_mark(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    tokens = login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("500")
    renewal = make(settings, clock)
    renewal.memory.state.inflight_refresh_fp = fingerprint(tokens["refresh_token"])
    with pytest.raises(TransientError):
        renewal.refresh_once()
    assert Memory(settings.state_dir).state.inflight_refresh_fp == fingerprint(tokens["refresh_token"])


class RotatingMeanwhile(OAuthClient):
    """Another program renews with our refresh token just before our request reaches the server
    (it writes the file without the Kimi lock, as an old Kimi CLI might)."""

    def __init__(self, server: FakeKimiOAuth, home: Path, expires_at: float, lifetime: float = 900,
                 then: tuple[str, ...] = ()) -> None:
        super().__init__(server.url, "17e5f671-d194-4dfb-9706-5516cb48c098", {})
        self.server, self.home, self.expires_at, self.lifetime = server, home, expires_at, lifetime
        self.then = then  # faults for the requests after ours
        self.theirs: dict | None = None

    def refresh(self, refresh_token, timeout=None) -> TokenResponse:  # type: ignore[no-untyped-def]
        if self.theirs is not None:
            return super().refresh(refresh_token, timeout)
        self.server.valid_refresh.discard(refresh_token)
        self.theirs = self.server.issue()
        write_credentials(kimi_file(self.home), self.theirs, self.expires_at, expires_in=self.lifetime)
        try:
            return super().refresh(refresh_token, timeout)
        finally:
            self.server.fail_next(*self.then)


def test_a_token_another_program_rotated_meanwhile_is_used_when_fresh(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    ours = login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 900)
    renewal = make(settings, clock, oauth=client)
    creds, renewed = renewal.refresh_once()
    assert client.theirs is not None
    assert not renewed and creds.refresh_token == client.theirs["refresh_token"]
    assert oauth_server.refresh_calls == 1, "their fresh token needs no second request"
    assert Memory(settings.state_dir).state.dead_refresh_fp == fingerprint(ours["refresh_token"])


def test_a_token_another_program_rotated_meanwhile_is_renewed_when_due(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 449)
    renewal = make(settings, clock, oauth=client)
    creds, renewed = renewal.refresh_once()
    assert client.theirs is not None and renewed and oauth_server.successful_refreshes == 1
    assert oauth_server.requests[-1]["grant_type"] == "refresh_token"
    assert creds.refresh_token in oauth_server.valid_refresh
    assert read_json(kimi_file(home))["refresh_token"] == creds.refresh_token


# ----------------------------------------------------------------------------- renew: retries
class Sleeper:
    """stop(delay) for renew: records each delay and moves the fake clock by it."""

    def __init__(self, clock: FakeClock, give_up_at: int | None = None) -> None:
        self.clock, self.delays, self.give_up_at = clock, [], give_up_at

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        self.clock.advance(delay)
        return self.give_up_at is not None and len(self.delays) >= self.give_up_at


def test_renew_waits_a_retry_after_longer_than_all_its_backoff(settings: Settings, home: Path,
                                                               oauth_server: FakeKimiOAuth) -> None:
    """Retry-After 200 s beats the whole backoff sum (5+10+20+40+60 s would retry far earlier)."""
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("429:200", "429:700")
    renewal = make(settings, clock)
    sleep, retries = Sleeper(clock), []
    creds, renewed = renewal.renew(False, 900, sleep, lambda: 0.0,
                                   lambda n, of, why, delay: retries.append((n, of, why, delay)))
    assert renewed and sleep.delays == [200.0, 600.0]
    assert [r[0] for r in retries] == [1, 2] and [r[3] for r in retries] == [200.0, 600.0]
    assert retries[0][1] == 1 + max_more_attempts(1, 900 - 200)
    assert retries[1][1] == 2 + max_more_attempts(2, 900 - 200 - 600)
    assert retries[0][2] == "The Kimi OAuth server is busy or failing (HTTP 429)."
    assert creds.refresh_token in oauth_server.valid_refresh


def test_renew_retries_when_the_wait_fits_and_gives_up_when_it_does_not(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    """A retry needs its delay plus 1 s before the deadline: 99 s of 100 fit, 100 s do not."""
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("429:99")
    renewal = make(settings, clock)
    sleep = Sleeper(clock)
    assert renewal.renew(False, 100, sleep, lambda: 0.0)[1] and sleep.delays == [99.0]

    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("429:100")
    renewal = make(settings, clock)
    sleep = Sleeper(clock)
    with pytest.raises(TransientError) as caught:
        renewal.renew(False, 100, sleep, lambda: 0.0)
    assert sleep.delays == []
    assert str(caught.value) == ("The Kimi OAuth server is busy or failing (HTTP 429). "
                                 "Gave up after 1 attempt(s) in 0 s.")


def test_renew_counts_attempts_and_time_when_it_gives_up(settings: Settings, home: Path,
                                                         oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_always("500")
    renewal = make(settings, clock)
    sleep, retries = Sleeper(clock), []
    with pytest.raises(TransientError) as caught:
        renewal.renew(False, 30, sleep, lambda: 1.0, lambda *a: retries.append(a))
    assert sleep.delays == [5.0, 10.0], "the next 20 s wait would not fit in the 15 s left"
    assert str(caught.value).endswith("Gave up after 3 attempt(s) in 15 s.")
    assert [(n, of) for n, of, _, _ in retries] == [(1, 1 + max_more_attempts(1, 25)),
                                                    (2, 2 + max_more_attempts(2, 15))]
    assert len(oauth_server.requests) == 3


def test_renew_stops_when_asked_with_the_last_error(settings: Settings, home: Path,
                                                    oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_always("502")
    renewal = make(settings, clock)
    sleep = Sleeper(clock, give_up_at=1)
    with pytest.raises(TransientError) as caught:
        renewal.renew(False, 900, sleep, lambda: 0.0)
    assert str(caught.value) == "The Kimi OAuth server is busy or failing (HTTP 502)."
    assert sleep.delays == [2.5] and len(oauth_server.requests) == 1


def test_renew_does_not_retry_a_dead_token(settings: Settings, home: Path,
                                           oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.revoke_all()
    sleep = Sleeper(clock)
    with pytest.raises(LoginNeeded):
        make(settings, clock).renew(False, 900, sleep, lambda: 0.0)
    assert sleep.delays == [] and oauth_server.refresh_calls == 1


def test_no_attempt_starts_with_less_than_a_second_left(settings: Settings, home: Path,
                                                       oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    renewal = make(settings, clock)
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once(deadline=clock.monotonic() + 0.99)
    assert str(caught.value) == "No time was left for another attempt."
    assert oauth_server.refresh_calls == 0
    assert renewal.refresh_once(deadline=clock.monotonic() + 1.0)[1]


# ----------------------------------------------------------------------------- recovery hand-over
def kept(tokens: dict, replaces: str, expires_at: float = NOW + 900) -> Unsaved:
    return Unsaved(tokens["access_token"], tokens["refresh_token"], expires_at, 900, "kimi-code",
                   "Bearer", fingerprint(replaces), "disk full")


def test_a_token_kept_in_recovery_is_saved_first_and_counts_as_the_renewal(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    old = login(oauth_server, home, NOW + 10)
    new = oauth_server.issue()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(new, old["refresh_token"]).to_json())
    renewal = make(settings, clock)
    assert renewal.pending is not None
    creds, renewed = renewal.refresh_once(force=True)
    assert renewed and oauth_server.refresh_calls == 0, "the kept token is this renewal"
    assert creds.refresh_token == new["refresh_token"] == read_json(kimi_file(home))["refresh_token"]
    assert read_json(kimi_file(home))["expires_at"] == NOW + 900
    assert renewal.pending is None and not (settings.state_dir / RECOVERY_FILE).exists()
    assert Memory(settings.state_dir).state.last_renewal == NOW


def test_a_kept_token_older_than_the_file_is_dropped(settings: Settings, home: Path,
                                                    oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    current = login(oauth_server, home, NOW + 800)
    stale = oauth_server.issue()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(stale, "rt-someone-else").to_json())
    renewal = make(settings, clock)
    creds, renewed = renewal.refresh_once()
    assert not renewed and creds.refresh_token == current["refresh_token"]
    assert read_json(kimi_file(home))["refresh_token"] == current["refresh_token"]
    assert renewal.pending is None and not (settings.state_dir / RECOVERY_FILE).exists()
    assert oauth_server.refresh_calls == 0


def test_a_token_the_disk_refuses_is_kept_and_put_in_place_later(settings: Settings, home: Path,
                                                                 oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    cred = write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10, scope="old-scope",
                             token_type="Old")
    renewal = make(settings, clock)
    stack = contextlib.ExitStack()
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    with stack:
        with pytest.raises(LocalFileError) as caught:
            renewal.refresh_once()
        oauth_server.on_rotate = None
        recovery = settings.state_dir / RECOVERY_FILE
        message = str(caught.value)
        assert message.startswith("The new token is not saved yet: ")
        assert f"It is kept in {recovery} and is put in place" in message
        assert renewal.pending is not None and renewal.pending.expires_at == NOW + 900
        assert message.startswith(f"The new token is not saved yet: {renewal.pending.reason} It is kept")
        assert renewal.pending.reason.startswith("Could not ")
        issued = oauth_server.rotations[-1]["refresh_token"]
        assert renewal.pending.refresh_token == issued
        on_disk = read_recovery(recovery)
        assert on_disk is not None and on_disk.refresh_token == issued
        with pytest.raises(LocalFileError, match="It is kept in .* and is put in place"):
            renewal.refresh_once()  # still refused: still kept
        assert renewal.pending is not None and recovery.exists()
    clock.advance(5)
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == issued == read_json(cred)["refresh_token"]
    assert read_json(cred)["expires_at"] == NOW + 900, "the expiry the server gave, not a new one"
    assert (read_json(cred)["scope"], read_json(cred)["token_type"]) == ("kimi-code", "Bearer")
    assert oauth_server.successful_refreshes == 1 and not recovery.exists()


# ----------------------------------------------------------------------------- slow and late answers
def test_a_slow_answer_is_waited_for_outside_the_lock_and_saved(settings: Settings, home: Path,
                                                                oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("late:0.6")
    renewal = make(settings.with_overrides(locked_http_timeout=0.2, http_timeout=5.0), clock)
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == read_json(kimi_file(home))["refresh_token"]
    assert creds.refresh_token == oauth_server.rotations[-1]["refresh_token"]


def test_a_late_answer_is_kept_and_the_token_is_not_sent_again(settings: Settings, home: Path,
                                                               oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10, scope="old-scope", token_type="Old")
    oauth_server.lifetime = 600
    oauth_server.fail_next("late:1.5")
    woken: list[bool] = []
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=0.4), clock,
                   wake=lambda: woken.append(True))
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once()
    assert "did not answer in time" in str(caught.value) and caught.value.maybe_sent
    with pytest.raises(TransientError, match="An earlier refresh is still waiting"):
        renewal.refresh_once()
    assert oauth_server.refresh_calls == 1
    assert wait_for(lambda: woken == [True], timeout=10)
    recovery = settings.state_dir / RECOVERY_FILE
    assert recovery.exists()
    assert renewal.take_late_answers() and not renewal.take_late_answers()
    issued = oauth_server.rotations[-1]["refresh_token"]
    assert renewal.pending is not None and renewal.pending.refresh_token == issued
    assert renewal.pending.reason == "Its answer came after kimi-tray had stopped waiting."
    assert logs.redact(f"{renewal.pending.access_token} {issued}") == "[redacted] [redacted]"
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == issued == read_json(kimi_file(home))["refresh_token"]
    assert oauth_server.refresh_calls == 1 and oauth_server.reused == []
    assert not recovery.exists()
    saved = read_json(kimi_file(home))
    assert (saved["expires_in"], saved["scope"], saved["token_type"]) == (600, "kimi-code", "Bearer")
    assert saved["expires_at"] == NOW + 600


def test_a_late_answer_saved_after_a_newer_login_keeps_the_login(settings: Settings, home: Path,
                                                                 oauth_server: FakeKimiOAuth) -> None:
    """The slow answer came outside the lock, and a login was written meanwhile: the login stays."""
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    newer: dict = {}

    def log_in_meanwhile() -> None:
        newer.update(oauth_server.issue())
        write_credentials(kimi_file(home), newer, time.time() + 900)

    oauth_server.fail_next("late:0.6")
    oauth_server.on_rotate = log_in_meanwhile
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0), clock)
    creds, renewed = renewal.refresh_once()
    assert not renewed and creds.refresh_token == newer["refresh_token"]
    assert json.loads(kimi_file(home).read_text())["refresh_token"] == newer["refresh_token"]


# ----------------------------------------------------------------------------- the Kimi lock
def kimi_lock(home: Path) -> FileLock:
    """The lock the Python Kimi CLI takes on its file, as another process would hold it."""
    return FileLock(kimi_file(home).with_name("kimi-code.lock"), timeout=1)


@pytest.mark.parametrize(("lock_timeout", "left", "waited"), [
    (0.3, None, 0.3), (10.0, 0.4, 0.4), (10.0, 0.01, 0.1)])
def test_the_kimi_lock_is_waited_for_until_the_deadline_at_most(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth, lock_timeout: float,
        left: float | None, waited: float) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    renewal = make(settings.with_overrides(lock_timeout=lock_timeout), clock)
    deadline = None if left is None else clock.monotonic() + left
    with kimi_lock(home):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=rf"for more than {waited:g} s\.$"):
            renewal.refresh_once(deadline=deadline)
        took = time.monotonic() - started
    assert waited - 0.05 < took < waited + 1.0
    assert oauth_server.refresh_calls == 0


def test_a_slow_answer_that_cannot_get_the_lock_back_is_kept(settings: Settings, home: Path,
                                                             oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    other = kimi_lock(home)
    oauth_server.fail_next("late:0.8")
    oauth_server.on_rotate = lambda: threading.Timer(0.3, other.acquire).start()
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0, lock_timeout=5.0),
                   clock)
    started = time.monotonic()
    try:
        with pytest.raises(LocalFileError) as caught:
            renewal.refresh_once(deadline=clock.monotonic() + 1.5)  # the lock is waited for 1.5 s, not 5
        assert time.monotonic() - started < 4.0
    finally:
        assert wait_for(lambda: other._fd is not None)
        other.release()
    message = str(caught.value)
    assert message.startswith("The new token is not saved yet: Another program held ")
    assert "for more than 1.5 s, so the new token could not be written under it. It is kept in" in message
    issued = oauth_server.rotations[-1]["refresh_token"]
    assert renewal.pending is not None and renewal.pending.refresh_token == issued
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == issued == read_json(kimi_file(home))["refresh_token"]


def test_a_slow_rejection_is_a_dead_token_unless_another_program_renewed(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.revoke_all()
    oauth_server.fail_next("slow:0.5")
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0), clock)
    with pytest.raises(LoginNeeded, match="rejected"):
        renewal.refresh_once()

    oauth_server.fail_next("slow:0.6")
    theirs = oauth_server.issue()
    threading.Timer(0.3, lambda: write_credentials(kimi_file(home), theirs, NOW + 900)).start()
    creds, renewed = renewal.refresh_once()
    assert not renewed and creds.refresh_token == theirs["refresh_token"]


# ----------------------------------------------------------------------------- an earlier request
def test_renew_waits_for_an_earlier_request_and_uses_its_answer(settings: Settings, home: Path,
                                                                 oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("late:1.5")
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=0.4), clock)
    with pytest.raises(TransientError, match="did not answer in time"):
        renewal.refresh_once()
    with pytest.raises(TransientError, match="An earlier refresh is still waiting"):
        renewal.refresh_once(deadline=clock.monotonic() + 0.2)  # its answer is not there yet
    creds, renewed = renewal.refresh_once(deadline=clock.monotonic() + 10)
    assert renewed and creds.refresh_token == oauth_server.rotations[-1]["refresh_token"]
    assert oauth_server.refresh_calls == 1 and oauth_server.reused == []


class Broken(OAuthClient):
    def refresh(self, refresh_token, timeout=None) -> TokenResponse:  # type: ignore[no-untyped-def]
        raise ValueError("a bug")


def test_a_bug_in_the_request_is_a_transient_error_that_may_have_reached_the_server(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    tokens = login(oauth_server, home, NOW + 10)
    renewal = make(settings, clock, oauth=Broken(oauth_server.url, "client", {}))
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once()
    assert str(caught.value) == "Unexpected error during the refresh (ValueError)."
    assert caught.value.maybe_sent
    assert Memory(settings.state_dir).state.inflight_refresh_fp == fingerprint(tokens["refresh_token"])


def test_no_garbage_collector_pause_until_the_rename() -> None:
    assert gc.isenabled()
    with no_gc_pause():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with no_gc_pause():
            assert not gc.isenabled()
        assert not gc.isenabled(), "left as it was found"
    finally:
        gc.enable()


def test_the_managed_file_follows_the_newest_login_unless_fixed(settings: Settings, home: Path,
                                                                oauth_server: FakeKimiOAuth) -> None:
    login(oauth_server, home, NOW + 100)
    renewal = make(settings, FakeClock(NOW))
    fixed = make(settings, FakeClock(NOW), source=renewal.source)
    assert renewal.source.path == kimi_file(home)
    other = settings.kimi_code_home / "credentials" / "kimi-code.json"
    write_credentials(other, oauth_server.issue(), NOW + 800)
    assert renewal.reselect_source().path == other == renewal.source.path
    assert fixed.reselect_source().path == kimi_file(home)


def test_a_new_renewal_sweeps_stale_temp_files_and_masks_a_kept_token(settings: Settings, home: Path,
                                                                       oauth_server: FakeKimiOAuth) -> None:
    import os

    old = login(oauth_server, home, NOW + 800)
    leftover = kimi_file(home).with_name("kimi-code.json.tmp.4242.abcd1234")
    leftover.write_text("{}")
    os.utime(leftover, (time.time() - 120, time.time() - 120))
    secret = "at-kept-" + "x" * 20
    unsaved = Unsaved(secret, "rt-kept-" + "y" * 20, NOW + 900, 900, "kimi-code", "Bearer",
                      fingerprint(old["refresh_token"]), "disk full")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(unsaved.to_json())
    renewal = make(settings, FakeClock(NOW))
    assert not leftover.exists()
    assert renewal.last_refresh_mono is None
    assert renewal.pending == unsaved
    assert secret not in logs.redact(f"token {secret} here"), "a kept token never reaches a log"


def test_a_token_neither_file_takes_is_kept_in_memory(settings: Settings, home: Path,
                                                      oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    cred = kimi_file(home)
    renewal = make(settings, clock)
    renewal.memory.save()
    stack = contextlib.ExitStack()

    def refuse_both() -> None:
        stack.enter_context(immutable(cred))
        stack.enter_context(immutable(settings.state_dir))

    oauth_server.on_rotate = refuse_both
    with stack:
        with pytest.raises(LocalFileError) as caught:
            renewal.refresh_once()
        oauth_server.on_rotate = None
        assert "It is kept in memory only and is put in place" in str(caught.value)
        assert not (settings.state_dir / RECOVERY_FILE).exists()
    issued = oauth_server.rotations[-1]["refresh_token"]
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == issued == read_json(cred)["refresh_token"]


def test_renew_forced_refreshes_a_fresh_token(settings: Settings, home: Path,
                                              oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 800)
    renewal = make(settings, clock)
    assert renewal.renew(False, 60, Sleeper(clock), lambda: 0.0)[1] is False
    assert renewal.renew(True, 60, Sleeper(clock), lambda: 0.0)[1] is True
    assert oauth_server.successful_refreshes == 1


def test_renew_waits_for_the_kimi_lock_within_its_own_limit(settings: Settings, home: Path,
                                                            oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    renewal = make(settings.with_overrides(lock_timeout=5.0), clock)
    sleep = Sleeper(clock)
    with kimi_lock(home):
        started = time.monotonic()
        with pytest.raises(TransientError,
                           match=r"for more than 0.5 s\. Gave up after 1 attempt\(s\) in 0 s\.$"):
            renewal.renew(False, 0.5, sleep, lambda: 0.0)
        assert time.monotonic() - started < 2.5
    assert sleep.delays == [] and oauth_server.refresh_calls == 0


@pytest.mark.parametrize("answer", ["at once", "outside the lock"])
def test_a_disk_filling_up_during_the_request_cannot_stop_the_save(settings: Settings, tmp_path: Path,
                                                                   oauth_server: FakeKimiOAuth,
                                                                   answer: str) -> None:
    """The space was reserved before the request: the answer still fits afterwards."""
    share = tmp_path / "share"
    with small_tmpfs(share):
        cred = share / "credentials" / "kimi-code.json"
        write_credentials(cred, oauth_server.issue(), NOW + 10, foreign="kept")
        oauth_server.on_rotate = lambda: fill_up(share)
        if answer == "outside the lock":
            oauth_server.fail_next("late:0.4")
        renewal = make(settings.with_overrides(kimi_share_dir=share, locked_http_timeout=0.1,
                                               http_timeout=5.0), FakeClock(NOW))
        creds, renewed = renewal.refresh_once()
        assert (share / "filler").exists()
        saved = read_json(cred)
        assert renewed and saved["refresh_token"] == creds.refresh_token in oauth_server.valid_refresh
        assert saved["foreign"] == "kept"


def test_a_token_rotated_meanwhile_is_due_by_its_own_lifetime(settings: Settings, home: Path,
                                                              oauth_server: FakeKimiOAuth) -> None:
    """Their 1-hour token with 1000 s left is due (half of 3600 s), though a 900 s one would not be."""
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 1000, lifetime=3600)
    creds, renewed = make(settings, clock, oauth=client).refresh_once()
    assert renewed and oauth_server.successful_refreshes == 1


def test_a_token_rotated_meanwhile_and_rejected_too_is_dead(settings: Settings, home: Path,
                                                            oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 100, then=("401",))
    renewal = make(settings, clock, oauth=client)
    with pytest.raises(LoginNeeded):
        renewal.refresh_once()
    assert client.theirs is not None
    assert renewal.memory.state.dead_refresh_fp == fingerprint(client.theirs["refresh_token"])


def test_a_slow_answer_for_a_token_rotated_meanwhile_is_kept_late(settings: Settings, home: Path,
                                                                   oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 100, then=("late:1.2",))
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=0.4), clock, oauth=client)
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once()
    assert str(caught.value) == f"The Kimi OAuth server at {oauth_server.url} did not answer in time."
    assert caught.value.maybe_sent
    with pytest.raises(TransientError, match="An earlier refresh is still waiting"):
        renewal.refresh_once()
    creds, renewed = renewal.refresh_once(deadline=clock.monotonic() + 10)
    assert renewed and creds.refresh_token == oauth_server.rotations[-1]["refresh_token"]
    assert oauth_server.reused == []


def test_a_slow_answer_the_file_already_holds_is_saved_as_ours(settings: Settings, home: Path,
                                                               oauth_server: FakeKimiOAuth) -> None:
    """Another kimi-tray saved this very answer meanwhile: it is ours, not a new login."""
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)

    def saved_elsewhere() -> None:
        access, refresh = oauth_server.issued[-2:]
        write_credentials(kimi_file(home), {"access_token": access, "refresh_token": refresh}, NOW + 900)

    oauth_server.fail_next("late:0.5")
    oauth_server.on_rotate = saved_elsewhere
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0), clock)
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == oauth_server.rotations[-1]["refresh_token"]


def test_no_credential_file_needs_a_login_and_a_read_token_is_masked(settings: Settings, home: Path,
                                                                     oauth_server: FakeKimiOAuth) -> None:
    renewal = make(settings, FakeClock(NOW))
    with pytest.raises(LoginNeeded) as caught:
        renewal.refresh_once()
    assert str(caught.value) == f"No Kimi credentials at {kimi_file(home)}."
    tokens = login(oauth_server, home, NOW + 800)
    assert renewal.refresh_once()[1] is False
    assert logs.redact(f"{tokens['access_token']} {tokens['refresh_token']}") == "[redacted] [redacted]"


def test_a_file_without_a_refresh_token_needs_a_login(settings: Settings, home: Path,
                                                      oauth_server: FakeKimiOAuth) -> None:
    write_credentials(kimi_file(home), {"access_token": "at-only", "refresh_token": ""}, NOW + 800)
    with pytest.raises(LoginNeeded) as caught:
        make(settings, FakeClock(NOW)).refresh_once()
    assert str(caught.value) == f"{kimi_file(home)} holds no refresh token; a new login is needed."
    assert oauth_server.refresh_calls == 0


def test_a_kept_token_the_file_already_holds_is_still_this_renewal(settings: Settings, home: Path,
                                                                   oauth_server: FakeKimiOAuth) -> None:
    """Another kimi-tray put the kept token in place already (the replaced token's mark differs)."""
    clock = FakeClock(NOW)
    new = login(oauth_server, home, NOW + 900)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(new, "rt-unknown").to_json())
    creds, renewed = make(settings, clock).refresh_once()
    assert renewed and creds.refresh_token == new["refresh_token"]
    assert not (settings.state_dir / RECOVERY_FILE).exists()


def test_a_kept_token_the_disk_still_refuses_says_why_now(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    old = login(oauth_server, home, NOW + 10)
    new = oauth_server.issue()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(new, old["refresh_token"]).to_json())
    renewal = make(settings, clock)
    with immutable(kimi_file(home)), pytest.raises(LocalFileError) as caught:
        renewal.refresh_once()
    assert renewal.pending is not None and renewal.pending.reason != "disk full"
    assert renewal.pending.reason.startswith(f"{kimi_file(home)} is immutable")
    assert str(caught.value).startswith(f"The new token is not saved yet: {renewal.pending.reason} ")
    assert oauth_server.refresh_calls == 0
