"""One refresh at more edges: what the user is told about a token the disk refused, and what the
log says about each retry.

Real parts as in tests/test_renewal_edges.py: the loopback OAuth server, real credential and
state files in tmp_path, an immutable file for a disk that refuses; time is a FakeClock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import pytest

from kimi_tray.core import logs
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError, TransientError
from kimi_tray.engine.recovery import RECOVERY_FILE
from kimi_tray.stores.state import fingerprint
from tests.conftest import immutable, kimi_file, read_json, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.test_renewal_edges import (  # noqa: F401 (oauth_server: the fixture)
    NOW,
    RotatingMeanwhile,
    Sleeper,
    kept,
    login,
    make,
    oauth_server,
)

TAIL = ("as soon as the credential file can be written (the next `kimi-tray renew` or the "
        "running tray).")


def test_a_refused_token_tells_where_it_is_kept_and_when_it_is_put_in_place(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:  # noqa: F811
    clock = FakeClock(NOW)
    old = login(oauth_server, home, NOW + 10)
    new = oauth_server.issue()
    recovery = settings.state_dir / RECOVERY_FILE
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    recovery.write_bytes(kept(new, old["refresh_token"]).to_json())
    renewal = make(settings, clock)
    with immutable(kimi_file(home)), pytest.raises(LocalFileError) as caught:
        renewal.refresh_once()
    assert renewal.pending is not None
    assert str(caught.value) == (f"The new token is not saved yet: {renewal.pending.reason} It is "
                                 f"kept in {recovery} and is put in place {TAIL}")


def test_each_retry_is_logged_with_its_attempt_reason_and_wait(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("500", "429:42")
    renewal = make(settings, clock)
    with caplog.at_level(logging.INFO, logger="kimi_tray.engine.renewal"):
        creds, renewed = renewal.renew(False, 900, Sleeper(clock), lambda: 0.0)
    assert renewed
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries == [
        "Renewal attempt 1 failed (The Kimi OAuth server is busy or failing (HTTP 500).); "
        "retrying in 2 s.",
        "Renewal attempt 2 failed (The Kimi OAuth server is busy or failing (HTTP 429).); "
        "retrying in 42 s."]


def test_giving_up_says_how_long_was_tried(settings: Settings, home: Path,
                                           oauth_server: FakeKimiOAuth) -> None:  # noqa: F811
    clock = FakeClock(NOW)
    login(oauth_server, home, NOW + 10)
    oauth_server.fail_next("500", "429:700")
    renewal = make(settings, clock)
    with pytest.raises(TransientError) as caught:
        renewal.renew(False, 100, Sleeper(clock), lambda: 0.0)
    assert str(caught.value) == ("The Kimi OAuth server is busy or failing (HTTP 429). "
                                 "Gave up after 2 attempt(s) in 2 s.")


# ----------------------------------------------------------------------------- what the log says
def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "kimi_tray.engine.renewal"]


def test_a_kept_token_put_in_place_is_logged(settings: Settings, home: Path,
                                             oauth_server: FakeKimiOAuth,  # noqa: F811
                                             caplog: pytest.LogCaptureFixture) -> None:
    old = login(oauth_server, home, NOW + 10)
    new = oauth_server.issue()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(new, old["refresh_token"]).to_json())
    renewal = make(settings, FakeClock(NOW))
    with caplog.at_level(logging.INFO, logger="kimi_tray.engine.renewal"):
        assert renewal.refresh_once()[1]
    assert messages(caplog) == [("INFO", "Saved the new Kimi token that was kept in the recovery file.")]


def test_a_kept_token_older_than_the_file_is_dropped_with_a_warning(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    login(oauth_server, home, NOW + 800)
    stale = oauth_server.issue()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / RECOVERY_FILE).write_bytes(kept(stale, "rt-someone-else").to_json())
    renewal = make(settings, FakeClock(NOW))
    with caplog.at_level(logging.INFO, logger="kimi_tray.engine.renewal"):
        assert renewal.refresh_once()[1] is False
    assert messages(caplog) == [(
        "WARNING", f"The recovery file holds an older token than {kimi_file(home)} (a newer login "
                   "or renewal is there); it is dropped.")]


def test_a_token_another_program_rotated_meanwhile_is_logged(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + 900)
    renewal = make(settings, FakeClock(NOW), oauth=client)
    with caplog.at_level(logging.INFO, logger="kimi_tray.engine.renewal"):
        assert renewal.refresh_once()[1] is False
    assert messages(caplog) == [
        ("INFO", "Another program rotated the refresh token meanwhile; using its token.")]


def test_a_slow_answer_after_a_newer_login_is_logged_and_the_login_kept(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    login(oauth_server, home, NOW + 10)
    newer: dict = {}

    def log_in_meanwhile() -> None:
        newer.update(oauth_server.issue())
        write_credentials(kimi_file(home), newer, time.time() + 900)

    oauth_server.fail_next("late:0.4")
    oauth_server.on_rotate = log_in_meanwhile
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0), FakeClock(NOW))
    with caplog.at_level(logging.INFO, logger="kimi_tray.engine.renewal"):
        creds, renewed = renewal.refresh_once()
    assert not renewed and creds.refresh_token == newer["refresh_token"]
    assert messages(caplog) == [
        ("INFO", "The Kimi OAuth server is slow; waiting for its answer outside the Kimi lock."),
        ("WARNING", f"Another program wrote a new login to {kimi_file(home)} while we waited for "
                    "the server; it is kept.")]


# ----------------------------------------------------------------------------- the new token
def test_a_renewed_token_pair_is_masked_in_every_later_log_line(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:  # noqa: F811
    login(oauth_server, home, NOW + 10)
    creds, renewed = make(settings, FakeClock(NOW)).refresh_once()
    assert renewed
    assert logs.redact(f"a={creds.access_token} r={creds.refresh_token}") == "a=[redacted] r=[redacted]"


def test_a_slow_answer_the_disk_refuses_is_kept_and_put_in_place_later(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth) -> None:  # noqa: F811
    """The answer came outside the lock and the file refused it: the kept token still names the
    token it replaces, so the file (still holding that one) takes it at the next attempt."""
    old = login(oauth_server, home, NOW + 10)
    cred = kimi_file(home)
    stack = contextlib.ExitStack()
    oauth_server.fail_next("late:0.4")
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    renewal = make(settings.with_overrides(locked_http_timeout=0.1, http_timeout=5.0), FakeClock(NOW))
    with stack, pytest.raises(LocalFileError, match="It is kept in"):
        renewal.refresh_once()
    oauth_server.on_rotate = None
    issued = oauth_server.rotations[-1]["refresh_token"]
    assert renewal.pending is not None and renewal.pending.refresh_token == issued
    assert renewal.pending.replaces == fingerprint(old["refresh_token"])
    creds, renewed = renewal.refresh_once()
    assert renewed and creds.refresh_token == issued == read_json(cred)["refresh_token"]
    assert oauth_server.refresh_calls == 1


@pytest.mark.parametrize(("left", "renewed"), [(449, True), (450, True), (451, False)])
def test_a_token_rotated_meanwhile_is_renewed_from_half_its_lifetime_left(
        settings: Settings, home: Path, oauth_server: FakeKimiOAuth,  # noqa: F811
        left: int, renewed: bool) -> None:
    """Another program's token is due by the same rule as ours: at half its 900 s lifetime."""
    login(oauth_server, home, NOW + 10)
    client = RotatingMeanwhile(oauth_server, home, NOW + left, lifetime=900)
    creds, did = make(settings, FakeClock(NOW), oauth=client).refresh_once()
    assert client.theirs is not None and did is renewed
    assert oauth_server.successful_refreshes == int(renewed)
    assert (creds.refresh_token == client.theirs["refresh_token"]) is not renewed
