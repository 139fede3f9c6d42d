"""Engine edges that only a changed line showed untested: the hand-off's remembered OpenClaw, the
login's token type, the Kimi lock turned off, an earlier request still out, the least gap after a
renewal another process made, a recovery token the file refuses or must fit on a nearly full disk,
an event on an unchanged-looking file, which credential file is managed, a token rotated meanwhile,
deadlines of slow answers and of the lock, a wall clock set back, a stop during a step, and the
quota after refused tokens.

Real parts: the loopback OAuth and usage servers, real credential, state and lock files, a tiny
tmpfs; a fake clock (the servers' waits are real, and short).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID, Settings
from kimi_tray.core.errors import LockTimeout, LoginNeeded, TransientError
from kimi_tray.engine.commands import FileChanged, RenewNow, StartLogin, Stop, WatchUsage
from kimi_tray.engine.handoff import Handoff
from kimi_tray.engine.login import device_login
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.recovery import RECOVERY_FILE, Unsaved, write_recovery
from kimi_tray.engine.renewal import Renewal
from kimi_tray.engine.scheduler import Engine
from kimi_tray.kimi.oauth import OAuthClient, TokenResponse
from kimi_tray.stores.credentials import CredentialSource
from kimi_tray.stores.fileio import DirectoryLock, FileLock
from kimi_tray.stores.state import OpenClawMemory, fingerprint
from tests.conftest import fill_up, kimi_file, read_json, small_tmpfs, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage

NOW = 1_800_000_000.0


def renewal_for(settings: Settings, clock: FakeClock, **kwargs: object) -> Renewal:
    return Renewal(settings.with_overrides(openclaw_mode="off"), clock, Memory(settings.state_dir),
                   **kwargs)  # type: ignore[arg-type]


def quiet_engine(settings: Settings, clock: FakeClock | None = None) -> Engine:
    return Engine(settings.with_overrides(openclaw_mode="off", usage_enabled=False), clock=clock,
                  rng=lambda: 0.5)


def refreshes(server: FakeKimiOAuth) -> int:
    return len([r for r in server.requests if r["grant_type"] == "refresh_token"])


# ----------------------------------------------------------------------------- hand-off and login
def test_the_hand_off_starts_from_what_the_state_file_remembers_of_openclaw(settings: Settings) -> None:
    """What an earlier run learnt (this OpenClaw keeps a JSON file) is used, not asked again."""
    memory = Memory(settings.state_dir)
    memory.state.openclaw_memory = OpenClawMemory(version="OpenClaw 2026.9.6", generation="file")
    handoff = Handoff(settings.with_overrides(openclaw_mode="auto"), FakeClock(NOW), memory)
    assert handoff.mode == "file"
    assert handoff.describe().startswith("OpenClaw 2026.9.6: ")


def test_a_login_saves_the_token_type_the_server_gave(oauth_server: FakeKimiOAuth, home: Path) -> None:
    issue = oauth_server.issue
    oauth_server.issue = lambda: {**issue(), "token_type": "DPoP"}  # type: ignore[method-assign]
    oauth_server.device_script = ["ok"]
    source = CredentialSource(kimi_file(home), home / ".kimi", "kimi-cli")
    creds = device_login(OAuthClient(oauth_server.url, KIMI_CLIENT_ID), source, 5, clock=FakeClock())
    assert read_json(kimi_file(home))["token_type"] == "DPoP" and creds.token_type == "DPoP"


# ----------------------------------------------------------------------------- the Kimi lock
def test_a_turned_off_kimi_lock_is_not_waited_for(settings: Settings, home: Path,
                                                   oauth_server: FakeKimiOAuth) -> None:
    """KIMI_TRAY_KIMI_LOCK=off: the TypeScript CLI's lock directory, held by someone, is ignored."""
    share = home / ".kimi-code"
    path = share / "credentials" / "kimi-code.json"
    write_credentials(path, oauth_server.issue(), NOW + 10)
    source = CredentialSource(path, share, "kimi-code")
    renewal = renewal_for(settings.with_overrides(kimi_lock_disabled=True, lock_timeout=0.2),
                          FakeClock(NOW), source=source)
    with DirectoryLock(share / "oauth" / "kimi-code", timeout=1):
        creds, renewed = renewal.refresh_once()
    assert renewed and read_json(path)["refresh_token"] == creds.refresh_token
    assert oauth_server.successful_refreshes == 1


# ----------------------------------------------------------------------------- an earlier request
def test_the_loop_is_told_at_once_that_an_earlier_request_is_still_out(settings: Settings, home: Path,
                                                                       oauth_server: FakeKimiOAuth) -> None:
    """Without a deadline (the engine's loop) nothing is waited for: its answer wakes the loop."""
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10)
    oauth_server.fail_next("late:1.5")
    renewal = renewal_for(settings.with_overrides(locked_http_timeout=0.1, http_timeout=0.3),
                          FakeClock(NOW))
    with pytest.raises(TransientError):
        renewal.refresh_once()
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once()
    assert time.monotonic() - started < 0.5
    assert str(caught.value) == "An earlier refresh is still waiting for the Kimi OAuth server's answer."
    assert oauth_server.refresh_calls == 1


def test_an_earlier_request_is_waited_for_only_until_it_is_given_up(settings: Settings, home: Path,
                                                                    oauth_server: FakeKimiOAuth) -> None:
    """Its own give-up time ends the wait, though the caller's deadline is later."""
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10)
    oauth_server.fail_next("late:2")
    renewal = renewal_for(settings.with_overrides(locked_http_timeout=0.1, http_timeout=0.3), clock)
    with pytest.raises(TransientError):
        renewal.refresh_once()
    earlier = renewal._earlier_request
    assert earlier is not None
    earlier.give_up_at = time.monotonic() + 0.2
    started = time.monotonic()
    with pytest.raises(LoginNeeded):  # its token was spent by the earlier request
        renewal.refresh_once(deadline=clock.monotonic() + 30)
    assert time.monotonic() - started < 1.4
    assert oauth_server.refresh_calls == 2


# ----------------------------------------------------------------------------- the least gap
@pytest.mark.parametrize("ago", [0.0, 0.5])
def test_a_renewal_another_process_made_just_now_holds_the_gap(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth, ago: float) -> None:
    """`kimi-tray renew` renewed 0 or 0.5 s ago (the state file says so) and the file's token is due
    already: this engine, which made no refresh itself, still waits out the least gap."""
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 100)
    memory = Memory(settings.state_dir)
    memory.state.last_renewal = NOW - ago
    memory.save()
    engine = quiet_engine(settings, clock)
    engine.step()
    assert refreshes(oauth_server) == 0
    clock.advance(225 - ago)  # a quarter of the 900 s lifetime
    engine.step()
    assert refreshes(oauth_server) == 1


# ----------------------------------------------------------------------------- a recovery token
def test_a_recovery_token_the_file_refuses_does_not_force_a_refresh(settings: Settings, home: Path,
                                                                    oauth_server: FakeKimiOAuth) -> None:
    """A newer login is in the file: the kept token is dropped, and the fresh login is not renewed."""
    clock = FakeClock(NOW)
    login = oauth_server.issue()
    write_credentials(kimi_file(home), login, NOW + 800)
    recovery = settings.state_dir / RECOVERY_FILE
    assert write_recovery(recovery, Unsaved("at-kept", "rt-kept", NOW + 900, 900, "kimi-code", "Bearer",
                                            fingerprint("rt-older"), "the disk was full"))
    engine = quiet_engine(settings, clock)
    assert engine.renewal.pending is not None
    engine.step()
    assert refreshes(oauth_server) == 0 and not recovery.exists()
    assert engine.status.expires_at == NOW + 800
    assert read_json(kimi_file(home))["refresh_token"] == login["refresh_token"]


# ----------------------------------------------------------------------------- events
def test_an_event_rereads_a_file_whose_time_size_and_inode_look_unchanged(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    """A coarse-timestamp file system: a same-size rewrite within the same tick; the event says it."""
    clock = FakeClock(NOW)
    path = write_credentials(kimi_file(home), oauth_server.issue(), NOW + 800)
    engine = quiet_engine(settings, clock)
    engine.step()
    assert engine.status.expires_at == NOW + 800
    before = path.stat()
    newer = oauth_server.issue()
    write_credentials(path, newer, NOW + 850)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size,
                                                                before.st_ino)
    engine.step()
    assert engine.status.expires_at == NOW + 800, "no event: the unchanged-looking file is not read"
    engine.send(FileChanged(path))
    engine.step()
    assert engine.status.expires_at == NOW + 850


# ----------------------------------------------------------------------------- stopping
def test_a_stop_during_a_step_cancels_the_login_under_way(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth) -> None:
    oauth_server.device_interval = 30.0  # the login waits between polls: only a cancel ends it early
    oauth_server.device_script = ["pending"]
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 800)
    engine = quiet_engine(settings)
    before = set(threading.enumerate())
    workers: list[threading.Thread] = []

    def stop_once_the_login_runs(status: object) -> None:
        if getattr(status, "login_in_progress", False) and not workers:
            workers.extend(t for t in set(threading.enumerate()) - before if t.name == "kimi-login")
            engine.send(Stop())

    engine.add_listener(stop_once_the_login_runs)
    engine.send(StartLogin())
    engine.start()
    assert not engine.join(5.0)
    assert len(workers) == 1
    workers[0].join(2.0)
    assert not workers[0].is_alive(), "the login worker was cancelled"


# ----------------------------------------------------------------------------- rotated meanwhile
class RotatingMeanwhile(OAuthClient):
    """Another program renews with our refresh token just before our request reaches the server,
    writing the file without the Kimi lock (as an old Kimi CLI might), with a field of its own."""

    def __init__(self, server: FakeKimiOAuth, path: Path, clock: FakeClock, takes: float = 0.0) -> None:
        super().__init__(server.url, KIMI_CLIENT_ID, {})
        self.server, self.path, self.clock, self.takes = server, path, clock, takes
        self.theirs: dict | None = None

    def refresh(self, refresh_token, timeout=None) -> TokenResponse:  # type: ignore[no-untyped-def]
        if self.theirs is None:
            self.server.valid_refresh.discard(refresh_token)
            self.theirs = self.server.issue()
            write_credentials(self.path, self.theirs, NOW + 100, their_field="theirs")
            self.clock.advance(self.takes)  # our request took that long (on the engine's clock)
        return super().refresh(refresh_token, timeout)


def test_a_token_rotated_meanwhile_is_saved_over_the_file_as_it_is_now(settings: Settings, home: Path,
                                                                       oauth_server: FakeKimiOAuth) -> None:
    """The file read before our request is stale: the other program's fields are kept."""
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10, our_field="ours")
    client = RotatingMeanwhile(oauth_server, kimi_file(home), clock)
    creds, renewed = renewal_for(settings, clock, oauth=client).refresh_once()
    saved = read_json(kimi_file(home))
    assert renewed and client.theirs is not None
    assert saved["refresh_token"] == creds.refresh_token == oauth_server.rotations[-1]["refresh_token"]
    assert saved["their_field"] == "theirs" and "our_field" not in saved


def test_no_second_request_with_a_token_rotated_meanwhile_once_the_time_is_up(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    """Our first request used up the attempt's time: their token is not sent past the deadline."""
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10)
    client = RotatingMeanwhile(oauth_server, kimi_file(home), clock, takes=0.5)
    renewal = renewal_for(settings, clock, oauth=client)
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once(deadline=clock.monotonic() + 1.2)
    assert str(caught.value) == "No time was left for another attempt."
    assert oauth_server.refresh_calls == 1 and client.theirs is not None
    assert read_json(kimi_file(home))["refresh_token"] == client.theirs["refresh_token"]


def test_a_slow_answer_is_not_waited_for_past_the_deadline(settings: Settings, home: Path,
                                                          oauth_server: FakeKimiOAuth) -> None:
    """One second left of a 5 s HTTP timeout: the wait (under the lock and after it) ends at 1 s."""
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10)
    oauth_server.fail_next("late:1.3")
    renewal = renewal_for(settings.with_overrides(locked_http_timeout=0.2, http_timeout=5.0), clock)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        renewal.refresh_once(deadline=clock.monotonic() + 1.0)
    assert time.monotonic() - started > 0.9, "waited until the deadline"
    assert str(caught.value) == f"The Kimi OAuth server at {oauth_server.url} did not answer in time."


# ----------------------------------------------------------------------------- which file is managed
def test_the_managed_file_changes_only_when_it_is_gone_or_an_event_says_so(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    """The other CLI's login appears (fresher): polling keeps the file in use while it exists; an
    event for another file changes nothing; an event for a credential file chooses again."""
    clock = FakeClock(NOW)
    ours = write_credentials(kimi_file(home), oauth_server.issue(), NOW + 800)
    engine = quiet_engine(settings, clock)
    engine.step()
    assert engine.status.credentials_file == str(ours)
    theirs = write_credentials(home / ".kimi-code" / "credentials" / "kimi-code.json",
                               oauth_server.issue(), NOW + 850)
    engine.step()
    assert engine.status.credentials_file == str(ours)
    engine.send(FileChanged(engine.memory.path))
    engine.step()
    assert engine.status.credentials_file == str(ours)
    engine.send(FileChanged(theirs))
    engine.step()
    assert engine.status.credentials_file == str(theirs) and engine.status.expires_at == NOW + 850


class RejectedSlowlyWhileAnotherRenews(OAuthClient):
    """Another program renews with our token while our request is out, and still holds the Kimi
    lock when the server's (slow) rejection of our token comes."""

    def __init__(self, server: FakeKimiOAuth, home: Path, clock: FakeClock) -> None:
        super().__init__(server.url, KIMI_CLIENT_ID, {})
        self.server, self.home, self.clock = server, home, clock
        self.held: list[FileLock] = []

    def refresh(self, refresh_token, timeout=None) -> TokenResponse:  # type: ignore[no-untyped-def]
        self.server.valid_refresh.discard(refresh_token)
        write_credentials(kimi_file(self.home), self.server.issue(), NOW + 800)
        self.clock.advance(0.7)
        lock = FileLock(kimi_file(self.home).with_name("kimi-code.lock"), timeout=5)
        lock.acquire()  # once we have let go of it, waiting outside the lock
        self.held.append(lock)
        return super().refresh(refresh_token, timeout)


def test_the_lock_after_a_slow_rejection_is_waited_for_only_until_the_deadline(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    clock = FakeClock(NOW)
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 10)
    client = RejectedSlowlyWhileAnotherRenews(oauth_server, home, clock)
    renewal = renewal_for(settings.with_overrides(locked_http_timeout=0.1, lock_timeout=2.0), clock,
                          oauth=client)
    started = time.monotonic()
    try:
        with pytest.raises(LockTimeout) as caught:
            renewal.refresh_once(deadline=clock.monotonic() + 1.0)
        assert time.monotonic() - started < 1.5
    finally:
        for lock in client.held:
            lock.release()
    lock_file = kimi_file(home).with_name("kimi-code.lock")
    assert str(caught.value) == f"Another program held {lock_file} for more than 0.3 s."


# ----------------------------------------------------------------------------- a nearly full disk
def test_a_recovery_token_goes_into_the_space_proven_before_it_is_saved(settings: Settings, tmp_path: Path,
                                                                        oauth_server: FakeKimiOAuth) -> None:
    """One page left on the disk: the space reserved when the save was prepared takes the token;
    a second temp file would not fit."""
    share = tmp_path / "share"
    with small_tmpfs(share):
        cred = write_credentials(share / "credentials" / "kimi-code.json", oauth_server.issue(), NOW + 10)
        old = read_json(cred)["refresh_token"]
        assert write_recovery(settings.state_dir / RECOVERY_FILE,
                              Unsaved("at-kept", "rt-kept", NOW + 900, 900, "kimi-code", "Bearer",
                                      fingerprint(old), "the disk was full"))
        renewal = renewal_for(settings.with_overrides(kimi_share_dir=share), FakeClock(NOW))
        fill_up(share)
        with open(share / "filler", "r+b") as filler:
            filler.truncate(os.fstat(filler.fileno()).st_size - 4096)
        creds, recovered = renewal.refresh_once()
        assert recovered and creds.refresh_token == "rt-kept" == read_json(cred)["refresh_token"]
    assert oauth_server.refresh_calls == 0


# ----------------------------------------------------------------------------- a wall clock set back
def test_a_short_token_due_by_the_monotonic_clock_is_renewed_though_the_wall_clock_was_set_back(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:
    """A 300 s token is due at 150 s left, by its own lifetime (not the 450 s of an unknown one):
    with the wall clock 200 s back, the file says 350 s left, and the refresh must still run."""
    clock = FakeClock(NOW)
    oauth_server.lifetime = 300
    write_credentials(kimi_file(home), oauth_server.issue(), NOW + 300, expires_in=300)
    engine = quiet_engine(settings, clock)
    engine.step()
    clock.jump_wall(-200)
    clock.advance(149.5)
    engine.step()
    assert refreshes(oauth_server) == 0
    clock.advance(0.5)
    engine.step()
    assert oauth_server.successful_refreshes == 1
    assert engine.status.expires_at == clock.now() + 300


# ----------------------------------------------------------------------------- usage after a renewal
def test_a_renewal_after_refused_tokens_fetches_the_quota_without_the_backoff(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth, usage_server: FakeKimiUsage) -> None:
    """The usage server refused the token twice and renewing failed both times (backoff now 120 s):
    once a renewal works, the quota is asked for after the least gap (60 s), not the backoff."""
    clock = FakeClock(NOW)
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, NOW + 800)
    usage_server.rejected_tokens.add(tokens["access_token"])
    oauth_server.fail_always("500")
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    engine.send(WatchUsage())
    engine.step()
    clock.advance(60)
    engine.step()
    assert usage_server.count == 2 and oauth_server.successful_refreshes == 0
    oauth_server.clear_faults()
    clock.advance(1)
    engine.send(RenewNow())
    engine.step()
    assert oauth_server.successful_refreshes == 1 and usage_server.count == 2
    clock.advance(58.5)
    engine.step()
    assert usage_server.count == 2
    clock.advance(0.5)
    engine.step()
    assert usage_server.count == 3
    assert engine.status.usage is not None and engine.status.usage.error == ""
