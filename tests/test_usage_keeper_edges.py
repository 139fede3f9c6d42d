"""The usage keeper at its edges: when it asks, a 401 answered by one renewal and one retry,
failures with their backoff and Retry-After, slow servers, and what `status`/`usage` get.

Real parts: the loopback usage server, the real HTTP client and the usage file in tmp_path; the
engine side (which token, renew now) is a small host like the engine's; time is a FakeClock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.usage import Usage
from kimi_tray.engine.usage import STATUS_USAGE_WAIT, UsageKeeper
from kimi_tray.stores.usage_store import UsageStore
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage, kimi_reply

NOW = 1_800_000_000.0


@pytest.fixture
def usage_server() -> Iterator[FakeKimiUsage]:
    """The loopback usage server, polling for shutdown often (these tests are run many times)."""
    server = FakeKimiUsage()
    server.thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02},
                                     daemon=True)
    yield server.start()
    server.stop()


@pytest.fixture
def oauth_server() -> Iterator[FakeKimiOAuth]:
    """Bound but never serving: these tests refresh nothing, and skip its shutdown wait."""
    server = FakeKimiOAuth()
    yield server
    server.server.server_close()
REFUSED = "the usage server refused the access token (HTTP 401)"


class Host:
    """What the engine answers the keeper: its access token, and a renewal on request."""

    def __init__(self, server: FakeKimiUsage, token: str | None = "at-1", renew_gives: str | None = "at-2",
                 renewed_meanwhile: str | None = None, expires_at: float = math.inf) -> None:
        self.server, self.token, self.renew_gives = server, token, renew_gives
        self.expires_at = expires_at  # no token to ask with from then on
        self.renewed_meanwhile = renewed_meanwhile  # the token after the first ask (a renewal raced)
        self.renewals = 0
        self.asked = 0

    def usage_token(self, now: float) -> str | None:
        self.asked += 1
        if self.renewed_meanwhile is not None and self.asked > 1:
            self.token, self.renewed_meanwhile = self.renewed_meanwhile, None
        return self.token if now < self.expires_at else None

    def renew_for_usage(self) -> bool:
        self.renewals += 1
        if self.renew_gives is None:
            return False
        self.token = self.renew_gives
        return True


def sent(server: FakeKimiUsage) -> list[str]:
    return [r["headers"]["Authorization"].removeprefix("Bearer ") for r in server.requests]


@pytest.fixture
def keeper_settings(settings: Settings, usage_server: FakeKimiUsage) -> Settings:
    usage_server.reply = kimi_reply(now=NOW)
    return settings.with_overrides(openclaw_mode="off")


def make(settings: Settings, clock: FakeClock, home: Path, last_renewal: float | None = None,
         woken: list[bool] | None = None) -> UsageKeeper:
    return UsageKeeper(settings, clock, lambda: home, (lambda: woken.append(True)) if woken is not None
                       else (lambda: None), last_renewal)


# ----------------------------------------------------------------------------- when it asks
def test_a_watched_keeper_fetches_at_once_then_every_interval(keeper_settings: Settings, home: Path,
                                                             usage_server: FakeKimiUsage) -> None:
    clock, woken = FakeClock(NOW), []
    keeper = make(keeper_settings.with_overrides(usage_interval=120), clock, home, woken=woken)
    host = Host(usage_server)
    assert keeper.stale_after() == 180
    assert keeper.delay(host, NOW) == math.inf, "not watched: never on its own"
    keeper.watch()
    assert keeper.delay(host, NOW) == 0
    keeper.step(host, NOW, None)
    assert usage_server.count == 1 and sent(usage_server) == ["at-1"] and woken == [True]
    assert keeper.usage is not None and keeper.usage.fetched_at == NOW and keeper.usage.error == ""
    assert keeper.usage.stale_after == 180 and keeper.usage.plan
    saved = UsageStore(keeper_settings.state_dir).load_usage(180)
    assert saved is not None and saved.fetched_at == NOW and saved.windows == keeper.usage.windows
    assert keeper.delay(host, NOW) == 120
    clock.advance(119)
    keeper.step(host, clock.now(), None)
    assert usage_server.count == 1 and keeper.delay(host, clock.now()) == 1
    clock.advance(1)
    keeper.step(host, clock.now(), None)
    assert usage_server.count == 2 and keeper.usage.fetched_at == NOW + 120


def test_without_a_token_nothing_is_asked(keeper_settings: Settings, home: Path,
                                          usage_server: FakeKimiUsage) -> None:
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()
    host = Host(usage_server, token=None)
    keeper.step(host, NOW, None)
    assert usage_server.count == 0 and keeper.usage is None and keeper.delay(host, NOW) == math.inf


def test_requests_count_only_when_watched_and_usage_can_be_off(keeper_settings: Settings, home: Path,
                                                              usage_server: FakeKimiUsage) -> None:
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.request(urgent=True)
    keeper.step(Host(usage_server), NOW, None)
    assert usage_server.count == 0 and not keeper.policy.requested, "the daemon keeps the server quiet"

    UsageStore(keeper_settings.state_dir).save_usage(Usage("Plan", NOW, (), "", 360.0, NOW))
    off = make(keeper_settings.with_overrides(usage_enabled=False), FakeClock(NOW), home)
    assert off.usage is None
    off.watch()
    assert not off.policy.periodic and not off.policy.requested
    on = make(keeper_settings, FakeClock(NOW), home)
    assert on.usage is not None and on.usage.plan == "Plan"


def test_a_new_token_after_stale_numbers_fetches_but_a_routine_renewal_does_not(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home, last_renewal=NOW - 50)
    keeper.watch()
    host = Host(usage_server)
    keeper.step(host, NOW, NOW - 50)
    clock.advance(100)
    keeper.step(host, clock.now(), NOW + 100)  # a renewal; the numbers are 100 s old: fresh
    assert usage_server.count == 1 and not keeper.policy.requested
    clock.advance(300)  # 400 s old: stale (360 s)
    keeper.policy.periodic = False  # only the renewal can ask now
    keeper.step(host, clock.now(), NOW + 400)
    assert usage_server.count == 1, "not watched: no fetch"
    keeper.policy.periodic = True
    keeper.step(host, clock.now(), NOW + 401)
    assert usage_server.count == 2 and keeper.usage is not None and keeper.usage.fetched_at == NOW + 400


# ----------------------------------------------------------------------------- 401: renew, then retry once
def test_a_refused_token_is_renewed_and_asked_again_once(keeper_settings: Settings, home: Path,
                                                         usage_server: FakeKimiUsage) -> None:
    usage_server.rejected_tokens = {"at-1"}
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()
    host = Host(usage_server)
    keeper.step(host, NOW, None)
    assert host.renewals == 1 and sent(usage_server) == ["at-1", "at-2"]
    assert keeper.usage is not None and keeper.usage.error == "" and keeper.usage.fetched_at == NOW
    assert keeper.policy.failures == 0


def test_a_token_renewed_while_asking_is_used_without_another_renewal(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    usage_server.rejected_tokens = {"at-1"}
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()
    host = Host(usage_server, renewed_meanwhile="at-9")
    keeper.step(host, NOW, None)
    assert host.renewals == 0 and sent(usage_server) == ["at-1", "at-9"]
    assert keeper.usage is not None and keeper.usage.error == ""


def test_a_renewal_that_does_not_help_is_not_repeated(keeper_settings: Settings, home: Path,
                                                      usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    usage_server.rejected_tokens = {"at-1", "at-2", "at-3"}
    keeper = make(keeper_settings, clock, home)
    keeper.watch()
    host = Host(usage_server)
    keeper.step(host, NOW, None)
    assert host.renewals == 1 and sent(usage_server) == ["at-1", "at-2"]
    assert keeper.usage is not None and keeper.usage.error == REFUSED and keeper.usage.checked_at == NOW
    host.renew_gives = "at-3"
    clock.advance(60)
    keeper.step(host, clock.now(), None)
    assert host.renewals == 1, "a 401 even with a new token: renewing again would not help"
    assert sent(usage_server) == ["at-1", "at-2", "at-2"]
    assert keeper.policy.failures == 2

    usage_server.rejected_tokens = set()  # a success forgets it
    clock.advance(120)
    keeper.step(host, clock.now(), None)
    assert keeper.usage.error == "" and keeper.policy.failures == 0
    usage_server.rejected_tokens = {"at-2"}
    clock.advance(300)
    keeper.step(host, clock.now(), None)
    assert host.renewals == 2 and sent(usage_server)[-2:] == ["at-2", "at-3"]


def test_a_failed_renewal_leaves_the_refusal_and_the_next_token_fetches_at_once(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    usage_server.rejected_tokens = {"at-1"}
    keeper = make(keeper_settings, clock, home, last_renewal=NOW - 10)
    keeper.watch()
    host = Host(usage_server, renew_gives=None)
    keeper.step(host, NOW, NOW - 10)
    assert host.renewals == 1 and sent(usage_server) == ["at-1"]
    assert keeper.usage is not None and keeper.usage.error == REFUSED
    assert keeper.policy.not_before == NOW + 60
    clock.advance(5)
    host.token = "at-2"  # a login later
    keeper.step(host, clock.now(), NOW + 5)
    assert sent(usage_server) == ["at-1"], "never twice within a minute"
    clock.advance(55)
    keeper.step(host, clock.now(), NOW + 5)
    assert sent(usage_server) == ["at-1", "at-2"] and keeper.usage.error == ""


def test_a_refusal_after_a_failure_backoff_is_forgotten_by_the_new_token(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    """Failures pushed the next try minutes away; the token was refused and could not be renewed;
    a login then fetches after the minimum gap, not after the backoff."""
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home)
    keeper.watch()
    host = Host(usage_server, renew_gives=None)
    usage_server.fail_next("500", "500", "500")
    for _ in range(3):
        keeper.step(host, clock.now(), None)
        clock.advance(keeper.delay(host, clock.now()))
    assert keeper.policy.failures == 3
    usage_server.rejected_tokens = {"at-1"}
    keeper.step(host, clock.now(), None)
    tried = clock.now()
    assert keeper.policy.not_before == tried + 480
    host.token = "at-2"
    keeper.step(host, tried + 1, tried + 1)
    assert keeper.policy.not_before == tried + 60
    clock.advance(60)
    keeper.step(host, clock.now(), tried + 1)
    assert sent(usage_server)[-1] == "at-2" and keeper.usage is not None and keeper.usage.error == ""


# ----------------------------------------------------------------------------- failures
def test_a_failure_keeps_the_numbers_and_backs_off(keeper_settings: Settings, home: Path,
                                                   usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home)
    keeper.watch()
    host = Host(usage_server)
    keeper.step(host, NOW, None)
    windows = keeper.usage.windows if keeper.usage else ()
    assert windows
    clock.advance(300)
    usage_server.fail_next("500")
    keeper.step(host, clock.now(), None)
    usage = keeper.usage
    assert usage is not None and usage.error == "the usage server is busy or failing (HTTP 500)"
    assert usage.windows == windows and usage.fetched_at == NOW and usage.checked_at == NOW + 300
    assert keeper.policy.not_before == NOW + 300 + 60 and keeper.delay(host, clock.now()) == 60
    saved = UsageStore(keeper_settings.state_dir).load_usage(360)
    assert saved is not None and saved.error == usage.error and saved.windows == windows


@pytest.mark.parametrize(("retry_after", "wait"), [(30, 60), (120, 120), (7200, 3600)])
def test_retry_after_is_honoured_when_longer_than_backoff(keeper_settings: Settings, home: Path,
                                                         usage_server: FakeKimiUsage, retry_after: int,
                                                         wait: int) -> None:
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()
    usage_server.fail_next(f"429:{retry_after}")
    keeper.step(Host(usage_server), NOW, None)
    assert keeper.usage is not None and keeper.usage.error == "the usage server is busy or failing (HTTP 429)"
    assert keeper.policy.not_before == NOW + wait


def test_a_bad_server_address_is_a_failure_not_a_crash(keeper_settings: Settings, home: Path,
                                                       usage_server: FakeKimiUsage) -> None:
    keeper = make(keeper_settings.with_overrides(usage_base_url="http://example.com/coding/v1"),
                  FakeClock(NOW), home)
    keeper.watch()
    keeper.step(Host(usage_server), NOW, None)
    assert keeper.usage is not None and "uses plain http" in keeper.usage.error
    assert keeper.usage.checked_at == NOW and keeper.policy.failures == 1 and usage_server.count == 0
    assert keeper.usage.stale_after == 360 and keeper.usage.fetched_at is None


def test_a_slow_answer_does_not_hold_the_step_and_is_taken_later(keeper_settings: Settings, home: Path,
                                                                 usage_server: FakeKimiUsage) -> None:
    clock, woken = FakeClock(NOW), []
    keeper = make(keeper_settings.with_overrides(http_timeout=5.0), clock, home, woken=woken)
    keeper.watch()
    host = Host(usage_server)
    usage_server.fail_next("slow:1.6")
    keeper.step(host, NOW, None)
    assert keeper.usage is None, "the step went on after 1 s"
    assert 8.0 < keeper.delay(host, NOW) <= 10.0, "until the request's own limit (HTTP timeout + 5 s)"
    keeper.step(host, NOW, None)  # waits up to 1 s more: the answer comes
    assert keeper.usage is not None and keeper.usage.error == "" and usage_server.count == 1
    assert woken == [True]


def test_a_request_past_its_limit_is_left_and_reported(keeper_settings: Settings, home: Path,
                                                       usage_server: FakeKimiUsage) -> None:
    keeper = make(keeper_settings, FakeClock(NOW), home)
    usage_server.fail_next("slow:3")
    usage = keeper.fetch_now(Host(usage_server), wait=0.3)
    assert usage is not None and usage.error == "the usage server did not answer in time"
    assert usage.checked_at == NOW and keeper.policy.failures == 1


# ----------------------------------------------------------------------------- status and usage commands
def test_status_shows_a_refusal_without_renewing(keeper_settings: Settings, home: Path,
                                                 usage_server: FakeKimiUsage) -> None:
    usage_server.rejected_tokens = {"at-1"}
    keeper = make(keeper_settings, FakeClock(NOW), home)
    host = Host(usage_server)
    usage = keeper.for_cli(host, force=False)
    assert usage is not None and usage.error == REFUSED and host.renewals == 0
    usage = keeper.for_cli(host, force=True)  # `kimi-tray usage`: renews and asks again
    assert usage is not None and usage.error == "" and host.renewals == 1


def test_status_fetches_only_stale_numbers_not_tried_within_a_minute(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home)
    host = Host(usage_server)
    assert keeper.for_cli(Host(usage_server, token=None), force=False) is None and usage_server.count == 0
    first = keeper.for_cli(host, force=False)
    assert usage_server.count == 1 and first is not None and first.fetched_at == NOW
    clock.advance(360)
    assert keeper.for_cli(host, force=False) is first and usage_server.count == 1, "360 s old: fresh"
    clock.advance(1)
    usage_server.fail_next("500")
    failed = keeper.for_cli(host, force=False)
    assert usage_server.count == 2 and failed is not None and failed.error
    clock.advance(59)
    assert keeper.for_cli(host, force=False) is failed and usage_server.count == 2, "tried 59 s ago"
    clock.advance(1)
    again = keeper.for_cli(host, force=False)
    assert usage_server.count == 3 and again is not None and again.error == ""
    assert keeper.for_cli(host, force=True) is not again and usage_server.count == 4


def test_status_waits_a_few_seconds_at_most(keeper_settings: Settings, home: Path,
                                           usage_server: FakeKimiUsage) -> None:
    import time

    keeper = make(keeper_settings, FakeClock(NOW), home)
    usage_server.fail_next(f"slow:{STATUS_USAGE_WAIT + 2}")
    started = time.monotonic()
    usage = keeper.for_cli(Host(usage_server), force=False)
    took = time.monotonic() - started
    assert usage is not None and usage.error == "the usage server did not answer in time"
    assert STATUS_USAGE_WAIT - 0.1 < took < STATUS_USAGE_WAIT + 1.5


def test_only_an_urgent_request_forgets_the_failure_backoff(keeper_settings: Settings, home: Path,
                                                            usage_server: FakeKimiUsage) -> None:
    """The menu opening asks politely (the backoff stands); a resume or a login asks urgently."""
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home)
    keeper.watch()
    host = Host(usage_server)
    usage_server.fail_next("500", "500")
    keeper.step(host, NOW, None)
    clock.advance(60)
    keeper.step(host, clock.now(), None)
    assert keeper.policy.not_before == NOW + 60 + 120
    keeper.request()
    assert keeper.policy.requested and keeper.delay(host, clock.now()) == 120
    keeper.request(urgent=True)
    assert keeper.delay(host, clock.now()) == 60


def test_an_expired_token_is_not_used_and_nothing_is_due(keeper_settings: Settings, home: Path,
                                                         usage_server: FakeKimiUsage) -> None:
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home)
    keeper.watch()
    host = Host(usage_server, expires_at=NOW + 10)
    keeper.step(host, NOW, None)
    assert usage_server.count == 1 and keeper.delay(host, NOW) == 300
    assert keeper.delay(host, NOW + 10) == math.inf
    clock.advance(300)
    keeper.step(host, clock.now(), None)
    assert usage_server.count == 1 and keeper.for_cli(host, force=True) is keeper.usage


def test_only_the_first_step_after_a_refusal_and_a_new_token_is_urgent(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    """Urgent skips the failure backoff (down to the minimum gap after the last try): once, for
    the first new token after a refused one; not for the same token again, nor a routine renewal."""
    clock = FakeClock(NOW)
    keeper = make(keeper_settings, clock, home, last_renewal=NOW - 100)
    keeper.watch()
    host = Host(usage_server, renew_gives=None)
    keeper.step(host, NOW, NOW - 50)  # a renewal seen: numbers fetched
    clock.advance(300)
    usage_server.fail_next("500")
    keeper.step(host, clock.now(), NOW - 50)
    clock.advance(60)
    usage_server.rejected_tokens = {"at-1"}
    keeper.step(host, clock.now(), NOW - 50)  # refused, and the renewal did not work
    refused = clock.now()
    assert keeper.usage is not None and keeper.usage.error == REFUSED
    assert keeper.policy.failures == 2 and keeper.policy.not_before == refused + 120
    keeper.step(host, refused + 1, NOW - 50)
    assert keeper.policy.not_before == refused + 120, "the same token as before: no urgency"

    host.token, usage_server.rejected_tokens = "at-2", set()
    keeper.step(host, refused + 2, NOW + 400)  # a new token after the refusal
    assert keeper.policy.not_before == refused + 60
    clock.advance(60)
    usage_server.fail_next("500")
    keeper.step(host, clock.now(), NOW + 400)
    assert sent(usage_server)[-1] == "at-2" and keeper.policy.failures == 3
    failed_at = clock.now()
    assert keeper.policy.not_before == failed_at + 240
    keeper.step(host, failed_at + 1, NOW + 460)  # a routine renewal: the backoff stands
    assert keeper.policy.not_before == failed_at + 240


def test_the_next_fetch_comes_just_after_a_window_resets(keeper_settings: Settings, home: Path,
                                                         usage_server: FakeKimiUsage) -> None:
    usage_server.reply = kimi_reply(now=NOW, window_reset_in=1000)
    keeper = make(keeper_settings.with_overrides(usage_interval=3600), FakeClock(NOW), home)
    keeper.watch()
    host = Host(usage_server)
    keeper.step(host, NOW, None)
    assert keeper.delay(host, NOW) == 1005, "5 s after the 5-hour window rolls over, not in an hour"


def test_a_renewal_that_leaves_no_token_is_a_refusal(keeper_settings: Settings, home: Path,
                                                     usage_server: FakeKimiUsage) -> None:
    usage_server.rejected_tokens = {"at-1"}
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()

    class Gone(Host):
        def renew_for_usage(self) -> bool:
            self.renewals += 1
            self.token = None
            return True

    host = Gone(usage_server)
    keeper.step(host, NOW, None)
    assert host.renewals == 1 and sent(usage_server) == ["at-1"]
    assert keeper.usage is not None and keeper.usage.error == REFUSED


def test_a_bug_in_the_usage_client_is_a_failure_with_its_kind(keeper_settings: Settings, home: Path,
                                                              usage_server: FakeKimiUsage) -> None:
    from kimi_tray.kimi.usage_client import UsageClient

    class Broken(UsageClient):
        def fetch(self, access_token: str, now: float, stale_after: float = 360.0) -> Usage:
            raise RuntimeError("a bug")

    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper._client = Broken(usage_server.url)  # the client the keeper would build, with a bug
    usage = keeper.fetch_now(Host(usage_server))
    assert usage is not None and usage.error == "unexpected error (RuntimeError)"
    assert keeper.policy.failures == 1


def test_a_fetch_without_a_token_asks_nothing(keeper_settings: Settings, home: Path,
                                              usage_server: FakeKimiUsage) -> None:
    keeper = make(keeper_settings, FakeClock(NOW), home)
    assert keeper.fetch_now(Host(usage_server, token=None)) is None
    assert usage_server.count == 0 and keeper.policy.failures == 0


def test_a_token_renewed_while_asking_and_refused_too_is_not_renewed_again(
        keeper_settings: Settings, home: Path, usage_server: FakeKimiUsage) -> None:
    usage_server.rejected_tokens = {"at-1", "at-9"}
    keeper = make(keeper_settings, FakeClock(NOW), home)
    keeper.watch()
    host = Host(usage_server, renewed_meanwhile="at-9")
    keeper.step(host, NOW, None)
    assert sent(usage_server) == ["at-1", "at-9"] and host.renewals == 0
    assert keeper.usage is not None and keeper.usage.error == REFUSED
