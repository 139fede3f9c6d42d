"""The Kimi quota: when to ask (the fetch policy), asking on a thread, keeping the last numbers.

A slow usage server never holds up a renewal: the request runs on its own thread and wakes the
engine when its answer is there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kimi_tray.core.clock import Clock
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError, TransientError
from kimi_tray.core.usage import Usage
from kimi_tray.engine.background import BackgroundCall
from kimi_tray.engine.owned import Owned
from kimi_tray.engine.usage_policy import MIN_GAP as USAGE_MIN_GAP
from kimi_tray.engine.usage_policy import FetchPolicy
from kimi_tray.stores.usage_store import UsageStore

if TYPE_CHECKING:
    from pathlib import Path

    from kimi_tray.kimi.exchange import Exchange
    from kimi_tray.kimi.usage_client import UsageClient

log = logging.getLogger(__name__)

USAGE_WAIT = 1.0  # real seconds a step waits for a usage reply before it goes on without it
STATUS_USAGE_WAIT = 3.0  # ... and `kimi-tray status` (`kimi-tray usage` waits the HTTP timeout)


class UsageHost(Protocol):
    """What the usage keeper asks the engine."""

    def usage_token(self, now: float) -> str | None:
        """The access token to ask with, or None when it is dead, expired or being replaced."""

    def renew_for_usage(self) -> bool:
        """Renew now (the usage server refused the token); True when it worked."""


class _Fetch:
    """One usage request in flight and what it may do on a 401."""

    def __init__(self, call: BackgroundCall[Usage], token: str, after_renewal: bool, may_renew: bool) -> None:
        self.call = call
        self.token = token
        self.after_renewal = after_renewal  # the retry with a freshly renewed token after a 401
        self.may_renew = may_renew  # False for `status`: a 401 is shown, never answered with a renewal


def _unexpected_usage_error(exc: Exception) -> KimiTrayError:
    return KimiTrayError(f"unexpected error ({type(exc).__name__})")


class UsageKeeper(Owned):
    def __init__(self, settings: Settings, clock: Clock, kimi_home: Callable[[], Path],
                 wake: Callable[[], None], last_renewal: float | None,
                 exchange: Callable[[], Exchange] | None = None) -> None:
        self.settings = settings
        self._new_exchange = exchange
        self.clock = clock
        self._kimi_home = kimi_home
        self._wake = wake
        self.policy = FetchPolicy(interval=settings.usage_interval)
        self.store = UsageStore(settings.state_dir)
        self._client: UsageClient | None = None
        self.usage: Usage | None = (
            self.store.load_usage(self.stale_after()) if settings.usage_enabled else None)
        self._seen_renewal = last_renewal
        self._token_refused = False  # a new token then fetches at once, despite any backoff
        self._renewal_did_not_help = False  # a 401 even with a new token: renew no more for it
        self._fetch: _Fetch | None = None  # the request in flight, if any

    def stale_after(self) -> float:
        """Numbers older than their refresh interval (plus the minimum gap) are not fresh."""
        return self.settings.usage_interval + USAGE_MIN_GAP

    @property
    def client(self) -> UsageClient:
        if self._client is None:
            from kimi_tray.kimi.oauth import device_headers
            from kimi_tray.kimi.usage_client import UsageClient
            from kimi_tray.stores.credentials import device_id

            headers = device_headers(device_id(self._kimi_home()))
            self._client = UsageClient(self.settings.usage_base_url, headers,
                                       timeout=self.settings.http_timeout,
                                       exchange=self._new_exchange() if self._new_exchange else None)
        return self._client

    # ----------------------------------------------------------------- commands
    def watch(self) -> None:
        """A desktop session shows the quota: fetch now and then periodically.

        Without this (the daemon) the engine never fetches on its own, so a server stays quiet.
        """
        if self.settings.usage_enabled:
            self.policy.periodic = True
            self.policy.request()

    def request(self, urgent: bool = False) -> None:
        """Fetch as soon as the policy allows (the menu opened with old numbers, a resume)."""
        if self.policy.periodic:
            self.policy.request(urgent)

    # ----------------------------------------------------------------- the loop
    def step(self, host: UsageHost, now: float, last_renewal: float | None) -> None:
        if last_renewal != self._seen_renewal:
            # A new token (renewal or login) after numbers went stale (token expired, login
            # needed, 401): fetch at once. Routine renewals keep the periodic rhythm.
            self._seen_renewal = last_renewal
            if self.usage is None or self.usage.is_stale(now):
                self.request(urgent=self._token_refused)
                self._token_refused = False
        token = host.usage_token(now)
        if self._fetch is None and token is not None and self.policy.is_due(now, True):
            self._start(token)
        self._collect(host, USAGE_WAIT)

    def delay(self, host: UsageHost, now: float) -> float:
        if self._fetch is not None:  # its thread wakes the loop when the answer comes
            return max(0.0, self._fetch.call.give_up_at - time.monotonic())
        due = self.policy.due_at(host.usage_token(now) is not None)
        return float("inf") if due is None else max(0.0, due - now)

    def _start(self, token: str, after_renewal: bool = False, may_renew: bool = True) -> None:
        try:
            client = self.client
        except KimiTrayError as exc:
            self._failed(exc)
            return
        stale_after, clock = self.stale_after(), self.clock
        call = BackgroundCall(lambda: client.fetch(token, clock.now(), stale_after), "kimi-usage",
                              self.settings.http_timeout + 5.0, _unexpected_usage_error,
                              on_done=self._wake)
        self._fetch = _Fetch(call, token, after_renewal, may_renew)

    def _collect(self, host: UsageHost, wait: float) -> None:
        """Take the answer of the request in flight if it came within `wait` s (real time)."""
        from kimi_tray.kimi.usage_client import UsageUnauthorized

        fetch = self._fetch
        if fetch is None:
            return
        call = fetch.call
        if not call.wait(min(wait, call.give_up_at - time.monotonic())):
            if call.expired:  # left to finish on its own, unheard
                call.abandon()
                self._fetch = None
                self._failed(TransientError("the usage server did not answer in time"))
            return
        self._fetch = None
        try:
            usage = call.result()
        except KimiTrayError as exc:
            outcome = exc
        else:
            self._renewal_did_not_help = False
            self.policy.succeeded(usage.fetched_at or self.clock.now(),
                                  (w.resets_at for w in usage.windows))
            self.usage = usage
            self.store.save_usage(usage)
            return
        if isinstance(outcome, UsageUnauthorized) and fetch.may_renew and not self._renewal_did_not_help:
            token = host.usage_token(self.clock.now())
            if token is not None and token != fetch.token and not fetch.after_renewal:
                # Refused a token renewed while the request was under way: ask with the new one.
                self._start(token, after_renewal=True)
                self._collect(host, wait)
                return
            if fetch.after_renewal:
                self._renewal_did_not_help = True  # renewing again would not help either
            else:
                log.info("The usage server refused the access token; renewing it first.")
                if host.renew_for_usage():
                    token = host.usage_token(self.clock.now())
                    if token is not None:
                        self._start(token, after_renewal=True)
                        self._collect(host, wait)
                        return
                self._token_refused = True
        self._failed(outcome)

    def _failed(self, exc: KimiTrayError) -> None:
        now = self.clock.now()
        delay = self.policy.failed(now, getattr(exc, "retry_after", None))
        log.warning("Could not update the Kimi usage (%s); next try in %.0f s at the earliest.", exc, delay)
        self.usage = (self.usage or Usage(stale_after=self.stale_after())).failed(str(exc), now)
        self.store.save_usage(self.usage)

    # ----------------------------------------------------------------- the CLI
    def fetch_now(self, host: UsageHost, wait: float | None = None, may_renew: bool = True) -> Usage | None:
        """One fetch, waiting for its answer at most `wait` s (default: the HTTP timeout); on a
        401 renew the token first (if `may_renew`) and try once more. Never raises."""
        token = host.usage_token(self.clock.now())
        if self._fetch is None and token is not None:
            self._start(token, may_renew=may_renew)
        if self._fetch is not None and wait is not None:
            self._fetch.call.give_up_at = min(self._fetch.call.give_up_at, time.monotonic() + wait)
        while self._fetch is not None:
            self._collect(host, self._fetch.call.give_up_at - time.monotonic())
        return self.usage

    def for_cli(self, host: UsageHost, force: bool) -> Usage | None:
        """For `status` (fetch only when the numbers are stale, waiting a few seconds at most: old
        numbers beat a slow answer there; a 401 is shown, not answered with a renewal) and `usage`
        (fetch now)."""
        now = self.clock.now()
        usage = self.usage
        if host.usage_token(now) is None:
            return usage
        recently_tried = (usage is not None and usage.checked_at is not None
                          and now - usage.checked_at < USAGE_MIN_GAP)
        if force:
            return self.fetch_now(host)
        if usage is None or (usage.is_stale(now) and not recently_tried):
            return self.fetch_now(host, wait=STATUS_USAGE_WAIT, may_renew=False)
        return usage
