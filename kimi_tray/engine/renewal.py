"""One refresh under the Kimi lock: save proven before the request, the answer never dropped.

Prove the save can succeed, take the lock, re-read the file, refresh only if still needed (another
program may have done it), write atomically, release. A token the server issued that cannot be
written yet is kept (memory and recovery file) and put in place before anything else.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError, LocalFileError, LoginNeeded, TransientError
from kimi_tray.core.health import refresh_due_at
from kimi_tray.engine.background import BackgroundCall
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.owned import Owned
from kimi_tray.engine.recovery import (
    RECOVERY_FILE,
    Unsaved,
    file_takes,
    read_recovery,
    remove_recovery,
    write_recovery,
)
from kimi_tray.stores.credentials import Credentials, CredentialSource, choose_source, device_id
from kimi_tray.stores.fileio import PreparedWrite
from kimi_tray.stores.state import fingerprint

if TYPE_CHECKING:
    from kimi_tray.kimi.exchange import Exchange
    from kimi_tray.kimi.oauth import OAuthClient, Timeouts, TokenResponse

log = logging.getLogger(__name__)

BACKOFF_FIRST = 5.0
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 600.0
LOCKED_CONNECT_TIMEOUT = 2.0
LATE_ANSWER_WAIT = 60.0  # no new request with a token while an earlier one may still answer
MIN_ATTEMPT_TIME = 1.0

RetryListener = Callable[[int, int, str, float], None]
RefreshCall = BackgroundCall["TokenResponse"]


def backoff_delay(failures: int, retry_after: float | None, rng: Callable[[], float]) -> float:
    """Capped exponential backoff with jitter; a server's Retry-After wins when it is longer."""
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))
    delay = base * (0.5 + 0.5 * rng())
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


@contextlib.contextmanager
def no_gc_pause() -> Iterator[None]:
    """No garbage-collector pause between a refresh answer and its rename: until the rename,
    the rotated token exists only in this process."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def max_more_attempts(failures: int, time_left: float) -> int:
    """How many more attempts can still start before a deadline (each one at least 1 s), with
    the shortest backoff delays; an upper bound shown to the user as "attempt 2 of N"."""
    more = 1
    while True:
        time_left -= MIN_ATTEMPT_TIME + 0.5 * min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures + more - 1))
        if time_left < MIN_ATTEMPT_TIME:
            return more
        more += 1


def _unexpected_refresh_error(exc: Exception) -> KimiTrayError:
    return TransientError(f"Unexpected error during the refresh ({type(exc).__name__}).", maybe_sent=True)


class Renewal(Owned):
    """The Kimi credential file and every refresh of it (owned by the engine's thread)."""

    def __init__(self, settings: Settings, clock: Clock, memory: Memory,
                 oauth: OAuthClient | None = None, source: CredentialSource | None = None,
                 wake: Callable[[], None] = lambda: None,
                 exchange: Callable[[], Exchange] | None = None) -> None:
        """exchange: makes what carries the HTTP requests out (default: httpx in this process)."""
        self.settings = settings
        self._new_exchange = exchange
        self.clock = clock
        self.memory = memory
        self.fixed_source = source is not None
        self.source = source or choose_source(settings)
        self._oauth = oauth
        self._wake = wake
        self.pending: Unsaved | None = None
        self._recovery_written = False  # the pending token is in the recovery file, not only in memory
        self._earlier_request: RefreshCall | None = None  # one we stopped waiting for
        self._sent_earlier = False
        self.last_refresh_mono: float | None = None
        self.recovery_path = settings.state_dir / RECOVERY_FILE
        # Late answers arrive on their request's thread; the owner takes them from here.
        self._late: queue.SimpleQueue[tuple[Unsaved, bool]] = queue.SimpleQueue()
        self.source.sweep_temp_files()
        pending = read_recovery(self.recovery_path)
        if pending is not None:
            self.pending, self._recovery_written = pending, True
            logs.register_secret(pending.access_token, pending.refresh_token)

    @property
    def oauth(self) -> OAuthClient:
        if self._oauth is None:
            from kimi_tray.kimi.oauth import OAuthClient, device_headers

            headers = device_headers(device_id(self.source.home))
            self._oauth = OAuthClient(self.settings.oauth_host, self.settings.client_id, headers,
                                      timeout=self.settings.http_timeout, now=self.clock.now,
                                      exchange=self._new_exchange() if self._new_exchange else None)
        return self._oauth

    def reselect_source(self) -> CredentialSource:
        """Which Kimi file is managed can change (the other CLI logged in); a fixed one stays."""
        if not self.fixed_source:
            self.source = choose_source(self.settings)
        return self.source

    def take_late_answers(self) -> bool:
        """Adopt tokens that came after we stopped waiting; True when there was one."""
        taken = False
        while True:
            try:
                unsaved, written = self._late.get_nowait()
            except queue.Empty:
                return taken
            self.pending, self._recovery_written, taken = unsaved, written, True

    # ----------------------------------------------------------------- one refresh
    def refresh_once(self, force: bool = False, deadline: float | None = None) -> tuple[Credentials, bool]:
        """Under the Kimi lock: save a token kept in recovery, re-read the file, refresh only if
        still needed (after proving the answer can be saved), save atomically.

        Under the lock the request is waited for at most `locked_http_timeout` in all (connect,
        send and the whole reply), so a Kimi CLI waiting for the lock does not give up on us; a
        slower answer is waited for outside the lock and saved under it again. Every wait ends
        by `deadline` (monotonic); an answer that comes even later is kept, never dropped.
        Returns the credentials now on disk and whether we refreshed.
        """
        self.take_late_answers()
        self._wait_for_earlier_request(deadline)
        self.take_late_answers()
        with contextlib.ExitStack() as keep, no_gc_pause():
            with self._kimi_lock(deadline):
                creds, recovered = self._save_pending_or_read()
                if (not force or recovered) and self.clock.now() < refresh_due_at(creds.expires_at,
                                                                                 creds.expires_in):
                    return creds, recovered  # a token saved from recovery is this renewal
                prepared = keep.enter_context(self.source.prepare_save())
                whole = self._request_time(deadline)
                started = time.monotonic()
                call = self._send(creds.refresh_token, self._timeout(deadline))
                if call.wait(min(self.settings.locked_http_timeout, whole)):
                    token, sent = self._finish_rereading(call, creds, deadline)
                    if token is None:
                        return sent, False
                    if sent is not creds:  # the file changed since the save was prepared
                        prepared.base = None
                    return self._save_new(token, sent.refresh_token, prepared), True
            log.info("The Kimi OAuth server is slow; waiting for its answer outside the Kimi lock.")
            if not call.wait(whole - (time.monotonic() - started)) and call.abandon():
                self._earlier_request = call
                raise TransientError(
                    f"The Kimi OAuth server at {self.oauth.host} did not answer in time.", maybe_sent=True)
            try:
                token = self._outcome(call, creds.refresh_token)
            except LoginNeeded:
                with self._kimi_lock(deadline):
                    again = self.read_credentials()
                if again.refresh_token == creds.refresh_token:
                    raise
                log.info("Another program rotated the refresh token meanwhile; using its token.")
                return again, False
            prepared.base = None  # read before the answer came: read it again under the lock
            return self._save_under_lock(token, creds.refresh_token, prepared, deadline)

    def renew(self, force: bool, give_up_after: float, stop: Callable[[float], bool],
              rng: Callable[[], float], on_retry: RetryListener | None = None) -> tuple[Credentials, bool]:
        """refresh_once, retrying transient faults with backoff; ends within `give_up_after` s,
        the attempt in flight included. stop(delay) sleeps the delay; True means give up now."""
        deadline = self.clock.monotonic() + give_up_after
        failures = 0
        while True:
            try:
                return self.refresh_once(force=force, deadline=deadline)
            except TransientError as exc:
                failures += 1
                delay = backoff_delay(failures, exc.retry_after, rng)
                left = deadline - self.clock.monotonic()
                if delay + MIN_ATTEMPT_TIME > left:
                    raise TransientError(
                        f"{exc} Gave up after {failures} attempt(s) in {give_up_after - left:.0f} s."
                    ) from None
                if on_retry is not None:
                    on_retry(failures, failures + max_more_attempts(failures, left - delay), str(exc), delay)
                log.info("Renewal attempt %d failed (%s); retrying in %.0f s.", failures, exc, delay)
                if stop(delay):
                    raise

    def _save_under_lock(self, token: TokenResponse, replaced: str, prepared: PreparedWrite,
                         deadline: float | None) -> tuple[Credentials, bool]:
        """Take the Kimi lock again for a token that came outside it; a lock we cannot get must
        not cost the token either, and a login made meanwhile is not replaced by it."""
        try:
            lock = self._kimi_lock(deadline)
            lock.__enter__()
        except KimiTrayError as exc:
            self._keep_unsaved(self._unsaved(token, replaced, f"{exc}".rstrip(".") + ", so the new "
                                             "token could not be written under it."))
            raise self._unsaved_error() from None
        try:
            current = self._load_or_none()
            if not file_takes(current, fingerprint(replaced), token.refresh_token):
                log.warning("Another program wrote a new login to %s while we waited for the "
                            "server; it is kept.", self.source.path)
                return self.read_credentials(), False
            return self._save_new(token, replaced, prepared), True
        finally:
            lock.__exit__(None, None, None)

    def _load_or_none(self) -> Credentials | None:
        try:
            return self.source.load()
        except LocalFileError:
            return None

    def _wait_for_earlier_request(self, deadline: float | None) -> None:
        """A request we stopped waiting for may still bring a rotated token: never send the same
        refresh token again while it may; its answer, when it comes, is kept as unsaved."""
        call = self._earlier_request
        if call is None:
            return
        if call.running and not call.expired:
            # `renew` waits for it within its limit; the loop does not (the answer wakes it)
            wait = 0.0 if deadline is None else min(call.give_up_at - time.monotonic(),
                                                    self._time_left(deadline))
            if not call.wait(wait) and not call.expired:
                raise TransientError("An earlier refresh is still waiting for the Kimi OAuth "
                                     "server's answer.")
        self._earlier_request = None

    def _late_answer(self, token: TokenResponse, replaced: str) -> None:
        """On the request's thread: the server answered after we had stopped waiting. The new
        token exists only here: write it to the recovery file at once, and hand it to the owner."""
        unsaved = self._unsaved(token, replaced, "Its answer came after kimi-tray had stopped waiting.")
        self._late.put((unsaved, write_recovery(self.recovery_path, unsaved)))
        self._wake()

    def _kimi_lock(self, deadline: float | None) -> AbstractContextManager[object]:
        wait = self.settings.lock_timeout
        if deadline is not None:
            wait = max(0.1, min(wait, self._time_left(deadline)))
        return self.source.lock(wait, self.settings.kimi_lock_disabled)

    def _time_left(self, deadline: float | None) -> float:
        return float("inf") if deadline is None else deadline - self.clock.monotonic()

    def _request_time(self, deadline: float | None) -> float:
        """How long one request is waited for in all: the HTTP timeout, never past the deadline."""
        left = self._time_left(deadline)
        if left < MIN_ATTEMPT_TIME:
            raise TransientError("No time was left for another attempt.")
        return min(self.settings.http_timeout, left)

    def _late_wait(self) -> float:
        return max(LATE_ANSWER_WAIT, 4 * self.settings.http_timeout)

    def _timeout(self, deadline: float | None) -> Timeouts:
        """httpx's own limits (per connect and per read) for a request on its thread. The caller
        bounds the whole request itself; these only end a thread nobody waits for any more, so
        they are long: an answer that comes late still carries the rotated token."""
        from kimi_tray.kimi.oauth import Timeouts

        connect = min(LOCKED_CONNECT_TIMEOUT, self._request_time(deadline))
        return Timeouts(connect=connect, read=self._late_wait())

    def _finish_rereading(self, call: RefreshCall, creds: Credentials,
                          deadline: float | None) -> tuple[TokenResponse | None, Credentials]:
        """Under the lock: the answer; on a rejection, use a token another program rotated
        meanwhile if there is one.

        Returns (new token, the credentials it replaced), or (None, current credentials) when
        another program's fresh token makes our refresh unnecessary.
        """
        try:
            return self._outcome(call, creds.refresh_token), creds
        except LoginNeeded:
            again = self.read_credentials()
            if again.refresh_token == creds.refresh_token:
                raise
            log.info("Another program rotated the refresh token meanwhile; using its token.")
            if self.clock.now() < refresh_due_at(again.expires_at, again.expires_in):
                return None, again
            second = self._send(again.refresh_token, self._timeout(deadline))
            if not second.wait(min(self.settings.locked_http_timeout, self._request_time(deadline))) \
                    and second.abandon():
                self._earlier_request = second
                raise TransientError(
                    f"The Kimi OAuth server at {self.oauth.host} did not answer in time.",
                    maybe_sent=True) from None
            return self._outcome(second, again.refresh_token), again

    def _save_new(self, token: TokenResponse, replaced: str, prepared: PreparedWrite) -> Credentials:
        """Put a token the server just issued on disk; if that fails, never drop it."""
        logs.register_secret(token.access_token, token.refresh_token)
        expires_at = self.clock.now() + token.expires_in
        try:
            saved = self.source.save(token.access_token, token.refresh_token, expires_at,
                                     token.expires_in, token.scope, token.token_type, prepared=prepared)
        except LocalFileError as exc:
            self._keep_unsaved(Unsaved(token.access_token, token.refresh_token, expires_at,
                                       token.expires_in, token.scope, token.token_type,
                                       fingerprint(replaced), str(exc)))
            raise self._unsaved_error() from None
        self.record_new_token()
        return saved

    def _unsaved(self, token: TokenResponse, replaced: str, reason: str) -> Unsaved:
        logs.register_secret(token.access_token, token.refresh_token)
        return Unsaved(token.access_token, token.refresh_token, self.clock.now() + token.expires_in,
                       token.expires_in, token.scope, token.token_type, fingerprint(replaced), reason)

    def record_new_token(self) -> None:
        """A new token (renewed or from a login) replaces any dead one we remembered."""
        state = self.memory.state
        state.dead_refresh_fp = ""
        state.dead_reason = ""
        state.inflight_refresh_fp = ""
        state.last_renewal = self.clock.now()
        self.last_refresh_mono = self.clock.monotonic()
        self.memory.save()

    def _send(self, refresh_token: str, timeout: Timeouts) -> RefreshCall:
        """Start one request. The token is marked in flight first: if we die or stop waiting
        before the answer is saved, a later rejection can say this attempt may have been accepted."""
        state = self.memory.state
        self._sent_earlier = state.inflight_refresh_fp == fingerprint(refresh_token)
        state.inflight_refresh_fp = fingerprint(refresh_token)
        self.memory.save()
        oauth = self.oauth
        return BackgroundCall(lambda: oauth.refresh(refresh_token, timeout), "kimi-refresh",
                              self._late_wait(), _unexpected_refresh_error,
                              on_late=lambda token: self._late_answer(token, refresh_token))

    def _outcome(self, call: RefreshCall, refresh_token: str) -> TokenResponse:
        """The answer of a finished request, remembering a rejected token as dead."""
        earlier = self._sent_earlier
        state = self.memory.state
        try:
            return call.result()
        except LoginNeeded:
            reason = "The Kimi refresh token was rejected."
            if earlier:
                reason = ("The Kimi refresh token was rejected. An earlier attempt with it timed out or "
                          "was interrupted after reaching the server, which may have accepted it and "
                          "rotated the token; its answer was lost.")
            state.inflight_refresh_fp = ""
            self._remember_dead(refresh_token, reason)
            raise LoginNeeded(f"{reason} A new login is needed.") from None
        except TransientError as exc:
            if not exc.maybe_sent:
                state.inflight_refresh_fp = "" if not earlier else fingerprint(refresh_token)
                self.memory.save()
            raise

    def read_credentials(self) -> Credentials:
        if not self.source.path.exists() and not self.source.path.is_symlink():
            raise LoginNeeded(f"No Kimi credentials at {self.source.path}.")
        creds = self.source.load()
        logs.register_secret(creds.access_token, creds.refresh_token)
        if not creds.can_refresh:
            raise LoginNeeded(f"{self.source.path} holds no refresh token; a new login is needed.")
        return creds

    def _remember_dead(self, refresh_token: str, reason: str) -> None:
        self.memory.state.dead_refresh_fp = fingerprint(refresh_token)
        self.memory.state.dead_reason = reason
        self.memory.save()

    # ----------------------------------------------------------------- unsaved tokens
    def _keep_unsaved(self, unsaved: Unsaved) -> None:
        """Keep a token the server issued but the disk refused: in memory and in the recovery
        file, until the credential file takes it."""
        self.pending = unsaved
        self._recovery_written = write_recovery(self.recovery_path, unsaved)

    def _unsaved_error(self) -> LocalFileError:
        reason = self.pending.reason if self.pending else ""
        where = f"kept in {self.recovery_path}" if self._recovery_written else "kept in memory only"
        return LocalFileError(
            f"The new token is not saved yet: {reason} It is {where} and is put in place as soon "
            "as the credential file can be written (the next `kimi-tray renew` or the running tray)."
        )

    def _save_pending_or_read(self) -> tuple[Credentials, bool]:
        """Under the lock: put a token kept in recovery in place before anything else; True
        when it was."""
        saved = False
        pending = self.pending
        if pending is not None:
            if file_takes(self._load_or_none(), pending.replaces, pending.refresh_token):
                try:
                    with self.source.prepare_save() as prepared:
                        self.source.save(pending.access_token, pending.refresh_token, pending.expires_at,
                                         pending.expires_in, pending.scope, pending.token_type,
                                         prepared=prepared)
                except LocalFileError as exc:
                    self.pending = replace(pending, reason=str(exc))
                    raise self._unsaved_error() from None
                log.info("Saved the new Kimi token that was kept in the recovery file.")
                self.record_new_token()
                saved = True
            else:
                log.warning("The recovery file holds an older token than %s (a newer login or "
                            "renewal is there); it is dropped.", self.source.path)
            self.pending = None
            self._recovery_written = False
            remove_recovery(self.recovery_path)
        return self.read_credentials(), saved
