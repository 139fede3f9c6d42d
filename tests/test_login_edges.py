"""The device login at its edges: the code's lifetime to the second, the transient-failure cap on
both sides, what is saved, the lock, and what the login worker reports to the engine.

Real parts: the loopback OAuth server, real files and locks; a fake clock for the code's lifetime.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import DeviceFlowError, LockTimeout
from kimi_tray.engine.commands import LoginCodeShown, LoginEnded, Report
from kimi_tray.engine.login import (
    MAX_TRANSIENT_FAILURES,
    SLOW_DOWN_STEP,
    LoginCancelled,
    LoginProgress,
    LoginWorker,
    device_login,
)
from kimi_tray.kimi.oauth import OAuthClient
from kimi_tray.stores.credentials import CredentialSource
from kimi_tray.stores.fileio import DirectoryLock
from tests.conftest import kimi_file, read_json
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth


def cli_source(home: Path) -> CredentialSource:
    return CredentialSource(kimi_file(home), home / ".kimi", "kimi-cli")


def code_source(home: Path) -> CredentialSource:
    share = home / ".kimi-code"
    return CredentialSource(share / "credentials" / "kimi-code.json", share, "kimi-code")


def client(server: FakeKimiOAuth) -> OAuthClient:
    return OAuthClient(server.url, KIMI_CLIENT_ID)


def test_the_constants_users_feel() -> None:
    assert SLOW_DOWN_STEP == 5.0 and MAX_TRANSIENT_FAILURES == 10


def test_the_saved_file_holds_the_servers_lifetime_scope_and_type(oauth_server: FakeKimiOAuth,
                                                                   home: Path) -> None:
    oauth_server.lifetime = 3600
    oauth_server.device_script = ["ok"]
    clock = FakeClock()
    creds = device_login(client(oauth_server), cli_source(home), 5, clock=clock)
    data = read_json(kimi_file(home))
    assert data["expires_in"] == 3600 and data["scope"] == "kimi-code" and data["token_type"] == "Bearer"
    assert creds.expires_at == pytest.approx(clock.now() + 3600) and data["expires_at"] == creds.expires_at
    assert creds.expires_in == 3600


@pytest.mark.parametrize(("first_advance", "ticks_seen"), [(598.0, [1.0]), (597.5, [1.0, 599.5])])
def test_the_code_expires_exactly_at_its_lifetime(oauth_server: FakeKimiOAuth, home: Path,
                                                  first_advance: float, ticks_seen: list[float]) -> None:
    """The server's code lasts 600 s: a poll at 599.5 s still counts, none at 600 s."""
    oauth_server.device_script = ["pending"]
    oauth_server.device_interval = 1
    ticks: list[float] = []
    clock = FakeClock()
    start = clock.monotonic()

    def tick(progress: LoginProgress) -> None:
        ticks.append(clock.monotonic() - start)
        if len(ticks) == 1:
            clock.advance(first_advance)

    expired = "^The login code expired before it was approved; start again.$"
    with pytest.raises(DeviceFlowError, match=expired):
        device_login(client(oauth_server), cli_source(home), 5, clock=clock, on_tick=tick)
    assert ticks == ticks_seen
    assert not kimi_file(home).exists()


def test_slow_down_adds_five_seconds_each_time(oauth_server: FakeKimiOAuth, home: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.login")
    oauth_server.device_script = ["slow_down", "slow_down", "ok"]
    oauth_server.device_interval = 1
    clock = FakeClock()
    start = clock.monotonic()
    device_login(client(oauth_server), cli_source(home), 5, clock=clock)
    assert clock.monotonic() - start == pytest.approx(1 + 6 + 11), "waits 1, then 6, then 11 s"
    slower = [r.getMessage() for r in caplog.records if "slowly" in r.getMessage()]
    assert slower == ["The server asked to poll more slowly; now every 6 s.",
                      "The server asked to poll more slowly; now every 11 s."]


@pytest.mark.parametrize(("failures", "ends"), [(MAX_TRANSIENT_FAILURES - 1, "saved"),
                                                (MAX_TRANSIENT_FAILURES, "gave up")])
def test_transient_failures_are_retried_up_to_the_cap(oauth_server: FakeKimiOAuth, home: Path,
                                                      failures: int, ends: str) -> None:
    oauth_server.device_script = ["ok"]
    oauth_server.device_interval = 0
    real_start = client(oauth_server).start_device_login
    oauth = client(oauth_server)

    def start_then_fail():  # the start itself succeeds; only the polls meet the faults
        authorization = real_start()
        oauth_server.fail_next(*["500"] * failures)
        return authorization

    oauth.start_device_login = start_then_fail  # type: ignore[method-assign]
    if ends == "saved":
        creds = device_login(oauth, cli_source(home), 5, clock=FakeClock())
        assert read_json(kimi_file(home))["refresh_token"] == creds.refresh_token
    else:
        with pytest.raises(DeviceFlowError, match="^The login could not finish: .*500"):
            device_login(oauth, cli_source(home), 5, clock=FakeClock())
        assert not kimi_file(home).exists()
    polls = [r for r in oauth_server.requests if r["grant_type"] and "device_code" in r["grant_type"]]
    assert len(polls) == failures + (1 if ends == "saved" else 0)


def test_a_cancel_during_the_last_poll_writes_nothing(oauth_server: FakeKimiOAuth, home: Path) -> None:
    oauth_server.device_script = ["ok"]
    cancel = threading.Event()
    with pytest.raises(LoginCancelled, match="^The login was cancelled; nothing was changed.$"):
        device_login(client(oauth_server), cli_source(home), 5, clock=FakeClock(), cancel=cancel,
                     on_tick=lambda progress: cancel.set())
    assert not kimi_file(home).exists()


def test_the_lock_of_the_typescript_cli_is_taken_unless_turned_off(oauth_server: FakeKimiOAuth,
                                                                   home: Path) -> None:
    source = code_source(home)
    held = DirectoryLock(source.home / "oauth" / "kimi-code", timeout=5)
    held.acquire()
    try:
        oauth_server.device_script = ["ok"]
        with pytest.raises(LockTimeout):
            device_login(client(oauth_server), source, 0.3, clock=FakeClock())
        assert not source.path.exists()
        creds = device_login(client(oauth_server), source, 0.3, lock_disabled=True, clock=FakeClock())
        assert read_json(source.path)["refresh_token"] == creds.refresh_token
    finally:
        held.release()


# ----------------------------------------------------------------------------- the worker
class Inbox:
    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.ended = threading.Event()

    def __call__(self, report: Report) -> None:
        self.reports.append(report)
        if isinstance(report, LoginEnded):
            self.ended.set()


def test_the_worker_reports_the_code_then_the_saved_credentials(oauth_server: FakeKimiOAuth,
                                                                home: Path) -> None:
    oauth_server.device_script = ["pending", "ok"]
    inbox = Inbox()
    worker = LoginWorker(7, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox)
    assert worker.attempt == 7 and not worker.cancel.is_set()
    assert worker.start() is worker
    assert inbox.ended.wait(15)
    shown, ended = inbox.reports
    assert isinstance(shown, LoginCodeShown) and isinstance(ended, LoginEnded)
    (device,) = oauth_server.devices.values()
    assert shown == LoginCodeShown(7, device.user_code, f"{oauth_server.url}/device",
                                   f"{oauth_server.url}/device?user_code={device.user_code}", 600)
    assert ended.attempt == 7 and ended.cancelled is False and ended.error == ""
    assert ended.credentials is not None
    assert ended.credentials.refresh_token == read_json(kimi_file(home))["refresh_token"]


def test_the_worker_reports_a_cancel(oauth_server: FakeKimiOAuth, home: Path) -> None:
    oauth_server.device_script = ["pending"]
    inbox = Inbox()
    worker = LoginWorker(2, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox)
    worker.cancel.set()
    worker.start()
    assert inbox.ended.wait(15)
    assert inbox.reports[-1] == LoginEnded(2, None, cancelled=True,
                                           error="The login was cancelled; nothing was changed.")


def test_the_worker_reports_a_failure_in_words(oauth_server: FakeKimiOAuth, home: Path) -> None:
    oauth_server.device_script = ["denied"]
    inbox = Inbox()
    LoginWorker(3, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox).start()
    assert inbox.ended.wait(15)
    assert inbox.reports[-1] == LoginEnded(3, None, error="The login was denied in the browser.")


def test_the_worker_reports_a_bug_by_its_type_only(oauth_server: FakeKimiOAuth, home: Path, caplog) -> None:
    oauth = client(oauth_server)

    def broken():
        raise ZeroDivisionError("secret detail")

    oauth.start_device_login = broken  # type: ignore[method-assign]
    inbox = Inbox()
    LoginWorker(4, oauth, cli_source(home), 5, False, FakeClock(), inbox).start()
    assert inbox.ended.wait(15)
    error = "Unexpected error during the login (ZeroDivisionError)."
    assert inbox.reports == [LoginEnded(4, None, error=error)]
    assert "Unexpected error during the login" in [r.getMessage() for r in caplog.records]


def test_the_worker_passes_its_lock_settings(oauth_server: FakeKimiOAuth, home: Path) -> None:
    source = code_source(home)
    held = DirectoryLock(source.home / "oauth" / "kimi-code", timeout=5)
    held.acquire()
    try:
        for disabled, attempt in ((False, 1), (True, 2)):
            oauth_server.device_script = ["ok"]
            inbox = Inbox()
            LoginWorker(attempt, client(oauth_server), source, 0.3, disabled, FakeClock(), inbox).start()
            assert inbox.ended.wait(15)
            ended = inbox.reports[-1]
            assert isinstance(ended, LoginEnded)
            assert (ended.credentials is not None) is disabled, ended
    finally:
        held.release()


def test_the_worker_runs_on_the_engines_clock(oauth_server: FakeKimiOAuth, home: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.login")
    oauth_server.device_script = ["pending", "pending", "ok"]
    oauth_server.device_interval = 1
    clock = FakeClock()
    started = clock.monotonic()
    inbox = Inbox()
    LoginWorker(5, client(oauth_server), cli_source(home), 5, False, clock, inbox).start()
    assert inbox.ended.wait(15)
    assert clock.monotonic() - started == pytest.approx(3), "three polls a second apart, on the fake clock"
    (device,) = oauth_server.devices.values()
    logged = [r.getMessage() for r in caplog.records]
    assert logged[0] == f"Login started: code {device.user_code} at {oauth_server.url}/device"


def test_the_worker_thread_is_named_and_never_keeps_the_process_alive(oauth_server: FakeKimiOAuth,
                                                                      home: Path) -> None:
    oauth_server.device_script = ["pending"]
    inbox = Inbox()
    worker = LoginWorker(1, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox).start()
    try:
        threads = [t for t in threading.enumerate() if t.name == "kimi-login"]
        assert len(threads) == 1 and threads[0].daemon is True
    finally:
        worker.cancel.set()
    assert inbox.ended.wait(15)


def test_the_worker_logs_how_a_login_ended(oauth_server: FakeKimiOAuth, home: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.login")
    oauth_server.device_script = ["pending"]
    inbox = Inbox()
    worker = LoginWorker(1, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox)
    worker.cancel.set()
    worker.start()
    assert inbox.ended.wait(15)
    assert [r.getMessage() for r in caplog.records][-1] == "Login cancelled."
    caplog.clear()
    oauth_server.device_script = ["denied"]
    inbox = Inbox()
    LoginWorker(2, client(oauth_server), cli_source(home), 5, False, FakeClock(), inbox).start()
    assert inbox.ended.wait(15)
    denied = "Login failed: The login was denied in the browser."
    assert [r.getMessage() for r in caplog.records][-1] == denied


def test_the_new_tokens_are_masked_in_logs_and_the_save_is_logged(oauth_server: FakeKimiOAuth, home: Path,
                                                                  caplog) -> None:
    from kimi_tray.core import logs

    caplog.set_level(logging.INFO, logger="kimi_tray.engine.login")
    oauth_server.device_script = ["ok"]
    creds = device_login(client(oauth_server), cli_source(home), 5, clock=FakeClock())
    masked = logs.redact(f"a {creds.access_token} r {creds.refresh_token}")
    assert creds.access_token not in masked and creds.refresh_token not in masked
    saved = f"Logged in; credentials saved to {kimi_file(home)}."
    assert [r.getMessage() for r in caplog.records][-1] == saved


def test_a_failed_poll_is_logged_with_its_cause(oauth_server: FakeKimiOAuth, home: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="kimi_tray.engine.login")
    oauth_server.device_script = ["ok"]
    oauth = client(oauth_server)
    real_start = oauth.start_device_login

    def start_then_fail():
        authorization = real_start()
        oauth_server.fail_next("500")
        return authorization

    oauth.start_device_login = start_then_fail  # type: ignore[method-assign]
    device_login(oauth, cli_source(home), 5, clock=FakeClock())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("Login poll failed (") and "500" in line and line.endswith("); trying again.")
