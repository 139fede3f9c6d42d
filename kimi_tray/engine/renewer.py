"""The renewal engine: refresh before expiry under the Kimi lock, save, hand the token to OpenClaw.

It knows nothing of any UI. It runs in a background thread, sleeps until the next thing is due,
and publishes immutable Status snapshots to listeners.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock, SystemClock
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import (
    KimiTrayError,
    LocalFileError,
    LockTimeout,
    LoginNeeded,
    OpenClawError,
    TransientError,
)
from kimi_tray.core.health import EXPIRING_BELOW, Health, Status, health_for, min_refresh_gap, refresh_due_at
from kimi_tray.engine.usage_policy import MIN_GAP as USAGE_MIN_GAP
from kimi_tray.engine.usage_policy import FetchPolicy
from kimi_tray.kimi.jwt import jwt_expiry
from kimi_tray.kimi.oauth import OAuthClient, TokenResponse, device_headers
from kimi_tray.kimi.usage_client import UsageClient, UsageUnauthorized
from kimi_tray.kimi.usage_model import Usage
from kimi_tray.stores.credentials import (
    Credentials,
    CredentialSource,
    choose_source,
    device_id,
    fix_permissions,
)
from kimi_tray.stores.fileio import (
    FileLock,
    PreparedWrite,
    atomic_write,
    ensure_private_dir,
    read_json_object,
)
from kimi_tray.stores.openclaw import OpenClawTarget, Token, choose_target
from kimi_tray.stores.state import OpenClawView, PersistentState, StateStore, fingerprint
from kimi_tray.stores.usage_store import UsageStore

if TYPE_CHECKING:  # imported with the first request (kimi_tray.kimi.httpclient says why)
    import httpx

log = logging.getLogger(__name__)

BACKOFF_FIRST = 5.0
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 600.0
RESUME_JUMP = 60.0
SYNC_RETRY_FIRST = 30.0
SYNC_RETRY_CAP = 600.0
OPENCLAW_SYNC_LOCK = "openclaw-sync.lock"  # in the state dir: one OpenClaw hand-off at a time
OPENCLAW_SYNC_WAIT = 180.0  # an offline OpenClaw without its Kimi plugin takes over a minute
USAGE_WAIT = 1.0  # real seconds a step waits for a usage reply before it goes on without it
STATUS_USAGE_WAIT = 3.0  # ... and `kimi-tray status` (`kimi-tray usage` waits the HTTP timeout)
LOCKED_CONNECT_TIMEOUT = 2.0
LATE_ANSWER_WAIT = 60.0  # no new request with a token while an earlier one may still answer
MIN_ATTEMPT_TIME = 1.0
MIN_LOOP_DELAY = 0.5
RECOVERY_FILE = "unsaved-token.json"
RESUME_WINDOW = 30.0  # after a resume the network may need a while: retry quickly meanwhile
RESUME_RETRY = 1.5

Listener = Callable[[Status], None]
RetryListener = Callable[[int, int, str, float], None]


class _StatusCommon(TypedDict, total=False):
    """The `Status` fields every health shares."""

    now: float
    credentials_file: str | None
    last_renewal: float | None
    renewing: bool
    login_in_progress: bool
    failures: int
    usage: Usage | None
    openclaw: str
    openclaw_detail: str


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


def file_takes(current: Credentials | None, replaced_fp: str, new_refresh: str) -> bool:
    """May a token the server issued for `replaced_fp` replace what the file holds now? Yes
    while the file holds the token it replaced, this token, or no live token (missing, unreadable,
    a tombstone written after a rejection); not over another login or renewal made meanwhile."""
    return (current is None or not current.can_refresh
            or fingerprint(current.refresh_token) == replaced_fp
            or current.refresh_token == new_refresh)


@dataclass(frozen=True)
class Unsaved:
    """A token the server issued that the credential file has not taken yet."""

    access_token: str
    refresh_token: str
    expires_at: float
    expires_in: float
    scope: str
    token_type: str
    replaces: str  # fingerprint of the refresh token it replaced
    reason: str

    def __repr__(self) -> str:
        return f"Unsaved(expires_at={self.expires_at!r}, reason={self.reason!r})"

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, allow_nan=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unsaved:
        kept = {name: data[name] for name in cls.__dataclass_fields__}
        if not all(isinstance(kept[k], str) for k in ("access_token", "refresh_token", "replaces")):
            raise TypeError("bad recovery file")
        return cls(**{**kept, "expires_at": float(kept["expires_at"]),
                      "expires_in": float(kept["expires_in"])})


class RefreshCall:
    """One refresh request on its own thread, so the caller can stop waiting at a deadline for
    the whole request (httpx's timeouts are per read: a server sending a byte now and then would
    hold the Kimi lock for ever) without dropping the answer: a rotated token that arrives after
    `abandon()` goes to `on_late`."""

    def __init__(self, oauth: OAuthClient, refresh_token: str, timeout: httpx.Timeout,
                 on_late: Callable[[TokenResponse], None], give_up_after: float) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: TokenResponse | KimiTrayError | None = None
        self._abandoned = False
        self._on_late = on_late
        self.give_up_at = time.monotonic() + give_up_after  # then a new request may be sent
        threading.Thread(target=self._run, args=(oauth, refresh_token, timeout), name="kimi-refresh",
                         daemon=True).start()

    def _run(self, oauth: OAuthClient, refresh_token: str, timeout: httpx.Timeout) -> None:
        outcome: TokenResponse | KimiTrayError
        try:
            outcome = oauth.refresh(refresh_token, timeout)
        except KimiTrayError as exc:
            outcome = exc
        except Exception as exc:  # a thread must not die silently; the log says what happened
            log.exception("Unexpected error during a refresh request")
            outcome = TransientError(f"Unexpected error during the refresh ({type(exc).__name__}).",
                                     maybe_sent=True)
        with self._lock:
            self._outcome = outcome
            self._done.set()
            late = self._abandoned
        if late and isinstance(outcome, TokenResponse):
            try:
                self._on_late(outcome)
            except Exception:
                log.exception("Could not keep a late refresh answer")

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.give_up_at

    def wait(self, seconds: float) -> bool:
        """Real seconds (the server is real even when the engine's clock is not)."""
        return self._done.wait(max(0.0, seconds))

    def abandon(self) -> bool:
        """Stop waiting; False when the answer came meanwhile (then take it with result())."""
        with self._lock:
            if self._done.is_set():
                return False
            self._abandoned = True
            return True

    def result(self) -> TokenResponse:
        if isinstance(self._outcome, TokenResponse):
            return self._outcome
        raise self._outcome or TransientError("The refresh request ended without an answer.")


@dataclass
class UsageFetch:
    """One usage request on its own thread, so a slow usage server never holds up a renewal."""

    token: str
    after_renewal: bool = False  # the retry with a freshly renewed token after a 401
    may_renew: bool = True  # False for `status`: a 401 is shown, never answered with a renewal
    outcome: Usage | KimiTrayError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    give_up_at: float = 0.0  # time.monotonic(): an answer later than this is not waited for


@dataclass(frozen=True)
class RenewResult:
    credentials: Credentials
    renewed: bool
    openclaw: OpenClawView
    restart_message: str = ""


class Renewer:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        oauth: OAuthClient | None = None,
        target: OpenClawTarget | None = None,
        source: CredentialSource | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._fixed_source = source is not None
        self.source = source or choose_source(settings)
        self._oauth = oauth
        self.store = StateStore(settings.state_dir)
        self.state: PersistentState = self.store.load()
        self.target = target or choose_target(settings, self.state.openclaw_memory)
        self.rng = rng
        self._listeners: list[Listener] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_requested = False
        self._creds: Credentials | None = None
        self._load_error: str = ""
        self._file_key: tuple[int, int, int] | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._next_sync = 0.0
        self._sync_failures = 0
        self._message = ""
        self._renewing = False
        self._last_tick: tuple[float, float] | None = None
        self._events_lock = threading.Lock()
        self._changed_paths: set[Path] = set()
        self._resume_signalled = False
        self._resume_until = 0.0
        self._poll_interval: float | None = None
        self.login_in_progress = False
        self._pending: Unsaved | None = None
        self._last_refresh_mono: float | None = None
        self._earlier_request: RefreshCall | None = None  # one we stopped waiting for
        self._recovery_written = False  # the pending token is in the recovery file, not only in memory
        self._due_mono: tuple[tuple[str, float], float] | None = None  # (token, expiry) -> due
        self._sent_earlier = False
        self.recovery_path: Path = settings.state_dir / RECOVERY_FILE
        self.status: Status = Status(Health.ERROR, self.clock.now(), message="starting")
        self._init_usage()
        self.source.sweep_temp_files()
        with contextlib.suppress(LocalFileError):
            ensure_private_dir(settings.state_dir, tighten=True)
        self._load_unsaved()

    # ----------------------------------------------------------------- collaborators
    @property
    def oauth(self) -> OAuthClient:
        if self._oauth is None:
            headers = device_headers(device_id(self.source.home))
            self._oauth = OAuthClient(self.settings.oauth_host, self.settings.client_id, headers,
                                      timeout=self.settings.http_timeout, now=self.clock.now)
        return self._oauth

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

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
        self._wait_for_earlier_request(deadline)
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
                    f"The Kimi OAuth server at {self.oauth.host} did not answer in time.",
                    slow=True, maybe_sent=True)
            try:
                token = self._outcome(call, creds.refresh_token)
            except LoginNeeded:
                with self._kimi_lock(deadline):
                    again = self._read_credentials()
                if again.refresh_token == creds.refresh_token:
                    raise
                log.info("Another program rotated the refresh token meanwhile; using its token.")
                return again, False
            prepared.base = None  # read before the answer came: read it again under the lock
            return self._save_under_lock(token, creds.refresh_token, prepared, deadline)

    def _save_under_lock(self, token: TokenResponse, replaced: str, prepared: PreparedWrite,
                         deadline: float | None) -> tuple[Credentials, bool]:
        """Take the Kimi lock again for a token that came outside it; a lock we cannot get must
        not cost the token either, and a login made meanwhile is not replaced by it."""
        try:
            lock = self._kimi_lock(deadline)
            lock.__enter__()
        except KimiTrayError as exc:
            self._keep_new(token, replaced, f"{exc}".rstrip(".") + ", so the new token could not "
                           "be written under it.")
            raise self._unsaved_error() from None
        try:
            current = self._load_or_none()
            if not file_takes(current, fingerprint(replaced), token.refresh_token):
                log.warning("Another program wrote a new login to %s while we waited for the "
                            "server; it is kept.", self.source.path)
                return self._read_credentials(), False
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
                                     "server's answer.", slow=True)
        self._earlier_request = None

    def _late_answer(self, token: TokenResponse, replaced: str) -> None:
        """On the request's thread: the server answered after we had stopped waiting. The new
        token exists only here: keep it like a token the disk refused, and save it at once."""
        self._keep_new(token, replaced, "Its answer came after kimi-tray had stopped waiting.")
        self._next_attempt = 0.0
        self._wake.set()

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

    def _timeout(self, deadline: float | None) -> httpx.Timeout:
        """httpx's own limits (per connect and per read) for a request on its thread. The caller
        bounds the whole request itself; these only end a thread nobody waits for any more, so
        they are long: an answer that comes late still carries the rotated token."""
        import httpx

        connect = min(LOCKED_CONNECT_TIMEOUT, self._request_time(deadline))
        return httpx.Timeout(self._late_wait(), connect=connect)

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
            again = self._read_credentials()
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
                    slow=True, maybe_sent=True) from None
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
        self._record_new_token()
        return saved

    def _keep_new(self, token: TokenResponse, replaced: str, reason: str) -> None:
        logs.register_secret(token.access_token, token.refresh_token)
        self._keep_unsaved(Unsaved(token.access_token, token.refresh_token,
                                   self.clock.now() + token.expires_in, token.expires_in, token.scope,
                                   token.token_type, fingerprint(replaced), reason))

    def _record_new_token(self) -> None:
        """A new token (renewed or from a login) replaces any dead one we remembered."""
        self.state.dead_refresh_fp = ""
        self.state.dead_reason = ""
        self.state.inflight_refresh_fp = ""
        self.state.last_renewal = self.clock.now()
        self._last_refresh_mono = self.clock.monotonic()
        self.store.save(self.state)

    def _send(self, refresh_token: str, timeout: httpx.Timeout) -> RefreshCall:
        """Start one request. The token is marked in flight first: if we die or stop waiting
        before the answer is saved, a later rejection can say this attempt may have been accepted."""
        self._sent_earlier = self.state.inflight_refresh_fp == fingerprint(refresh_token)
        self.state.inflight_refresh_fp = fingerprint(refresh_token)
        self.store.save(self.state)
        return RefreshCall(self.oauth, refresh_token, timeout,
                           lambda token: self._late_answer(token, refresh_token),
                           give_up_after=self._late_wait())

    def _outcome(self, call: RefreshCall, refresh_token: str) -> TokenResponse:
        """The answer of a finished request, remembering a rejected token as dead."""
        earlier = self._sent_earlier
        try:
            return call.result()
        except LoginNeeded:
            reason = "The Kimi refresh token was rejected."
            if earlier:
                reason = ("The Kimi refresh token was rejected. An earlier attempt with it timed out or "
                          "was interrupted after reaching the server, which may have accepted it and "
                          "rotated the token; its answer was lost.")
            self.state.inflight_refresh_fp = ""
            self._remember_dead(refresh_token, reason)
            raise LoginNeeded(f"{reason} A new login is needed.") from None
        except TransientError as exc:
            if not exc.maybe_sent:
                self.state.inflight_refresh_fp = "" if not earlier else fingerprint(refresh_token)
                self.store.save(self.state)
            raise

    def _read_credentials(self) -> Credentials:
        if not self.source.path.exists() and not self.source.path.is_symlink():
            raise LoginNeeded(f"No Kimi credentials at {self.source.path}.")
        creds = self.source.load()
        logs.register_secret(creds.access_token, creds.refresh_token)
        if not creds.can_refresh:
            raise LoginNeeded(f"{self.source.path} holds no refresh token; a new login is needed.")
        return creds

    def _remember_dead(self, refresh_token: str, reason: str) -> None:
        self.state.dead_refresh_fp = fingerprint(refresh_token)
        self.state.dead_reason = reason
        self.store.save(self.state)

    # ----------------------------------------------------------------- unsaved tokens
    def _keep_unsaved(self, unsaved: Unsaved) -> None:
        """Keep a token the server issued but the disk refused: in memory and in the recovery
        file (0600, in our state directory, never logged), until the credential file takes it."""
        self._pending = unsaved
        self._recovery_written = False
        try:
            ensure_private_dir(self.recovery_path.parent, tighten=True)
            atomic_write(self.recovery_path, unsaved.to_json())
            self._recovery_written = True
        except LocalFileError as exc:
            log.error("Could not write the recovery file either (%s); the new token is kept in "
                      "memory only until the credential file can be written.", exc)
        log.error("The new Kimi token is not saved yet: %s", unsaved.reason)

    def _unsaved_error(self) -> LocalFileError:
        reason = self._pending.reason if self._pending else ""
        where = f"kept in {self.recovery_path}" if self._recovery_written else "kept in memory only"
        return LocalFileError(
            f"The new token is not saved yet: {reason} It is {where} and is put in place as soon "
            "as the credential file can be written (the next `kimi-tray renew` or the running tray)."
        )

    def _load_unsaved(self) -> None:
        if not self.recovery_path.exists():
            return
        fix_permissions(self.recovery_path)  # it holds live tokens
        try:
            data, _ = read_json_object(self.recovery_path)
            self._pending = Unsaved.from_json(data)
            self._recovery_written = True
            logs.register_secret(self._pending.access_token, self._pending.refresh_token)
        except (LocalFileError, KeyError, TypeError, ValueError):
            log.error("The recovery file %s cannot be read; it is left in place.", self.recovery_path)

    def _save_pending_or_read(self) -> tuple[Credentials, bool]:
        """Under the lock: put a token kept in recovery in place before anything else; True
        when it was."""
        saved = False
        pending = self._pending
        if pending is not None:
            if file_takes(self._load_or_none(), pending.replaces, pending.refresh_token):
                try:
                    with self.source.prepare_save() as prepared:
                        self.source.save(pending.access_token, pending.refresh_token, pending.expires_at,
                                         pending.expires_in, pending.scope, pending.token_type,
                                         prepared=prepared)
                except LocalFileError as exc:
                    self._pending = replace(pending, reason=str(exc))
                    raise self._unsaved_error() from None
                log.info("Saved the new Kimi token that was kept in the recovery file.")
                self._record_new_token()
                saved = True
            else:
                log.warning("The recovery file holds an older token than %s (a newer login or "
                            "renewal is there); it is dropped.", self.source.path)
            self._pending = None
            self._recovery_written = False
            try:
                self.recovery_path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # a directory in its place, say: the token is saved all the same
                log.warning("Could not remove %s: %s.", self.recovery_path, exc.strerror or exc)
        return self._read_credentials(), saved

    # ----------------------------------------------------------------- OpenClaw
    def sync_openclaw(self, creds: Credentials) -> tuple[OpenClawView, str]:
        """Hand the access token to OpenClaw; never raises, the outcome is in the view.

        One hand-off at a time across processes (a `kimi-tray renew` beside the tray), and always
        the newest token on disk: a slower process must never paste an older token over a newer
        one, nor call OpenClaw stale for holding the newer one."""
        now = self.clock.now()
        restart_message = ""
        try:
            with FileLock(self.settings.state_dir / OPENCLAW_SYNC_LOCK, timeout=OPENCLAW_SYNC_WAIT):
                creds = self._newest_on_disk(creds)
                view, restart_message = self._hand_over(creds, now)
        except LockTimeout:
            view = OpenClawView("error", "Another kimi-tray was still handing OpenClaw the token "
                                f"after {OPENCLAW_SYNC_WAIT:g} s.", self.target.mode, checked_at=now)
        self.state.openclaw = view
        self.store.save(self.state)
        return view, restart_message

    def _newest_on_disk(self, creds: Credentials) -> Credentials:
        try:
            on_disk = self.source.load(fix_mode=False)
        except LocalFileError:
            return creds
        if on_disk.access_token and on_disk.expires_at > creds.expires_at:
            logs.register_secret(on_disk.access_token, on_disk.refresh_token)
            return on_disk
        return creds

    def _hand_over(self, creds: Credentials, now: float) -> tuple[OpenClawView, str]:
        token = Token(creds.access_token, creds.expires_at)
        restart_message = ""
        try:
            view = self.target.sync(token, now)
            if self.target.restart_after_sync:
                ok, restart_message = self.target.restart_gateway()
                if not ok:
                    log.warning("%s", restart_message)
                    view.detail = f"{view.detail}; gateway restart failed".strip("; ")
        except (OpenClawError, LocalFileError) as exc:
            log.warning("OpenClaw sync failed: %s", exc)
            view = OpenClawView("error", str(exc), self.target.mode, checked_at=now)
        return view, restart_message

    def openclaw_needs_sync(self, creds: Credentials) -> bool:
        """Until OpenClaw holds this token. A problem we cannot fix by writing it again (a
        missing Kimi plugin, say) is reported, not retried."""
        view = self.state.openclaw
        if self.target.mode == "off":
            return view.state != "off"
        return view.token_fp != fingerprint(creds.access_token)

    # ----------------------------------------------------------------- renew command
    def renew(self, force: bool = True, give_up_after: float | None = None,
              on_retry: RetryListener | None = None) -> RenewResult:
        """Refresh now, retrying transient faults with backoff, then sync.

        Ends within `give_up_after` seconds, the attempt in flight included; `on_retry` hears of
        each failed attempt (attempt number, most attempts possible, reason, delay).
        """
        give_up_after = self.settings.renew_give_up_after if give_up_after is None else give_up_after
        deadline = self.clock.monotonic() + give_up_after
        failures = 0
        while True:
            try:
                creds, renewed = self.refresh_once(force=force, deadline=deadline)
                break
            except TransientError as exc:
                failures += 1
                delay = backoff_delay(failures, exc.retry_after, self.rng)
                left = deadline - self.clock.monotonic()
                if delay + MIN_ATTEMPT_TIME > left:
                    raise TransientError(
                        f"{exc} Gave up after {failures} attempt(s) in {give_up_after - left:.0f} s."
                    ) from None
                if on_retry is not None:
                    on_retry(failures, failures + max_more_attempts(failures, left - delay), str(exc), delay)
                log.info("Renewal attempt %d failed (%s); retrying in %.0f s.", failures, exc, delay)
                if self.clock.wait(self._stop, delay):
                    raise
        if renewed or self.openclaw_needs_sync(creds):
            view, restart_message = self.sync_openclaw(creds)
        else:
            view, restart_message = self.state.openclaw, ""
        return RenewResult(creds, renewed, view, restart_message)

    # ----------------------------------------------------------------- login
    def login_source(self) -> CredentialSource:
        """Where a new login is saved: the managed file, or ~/.kimi when there is none."""
        if not self._fixed_source:
            self.source = choose_source(self.settings)
        return self.source

    def finish_login(self, creds: Credentials) -> OpenClawView:
        """A new login replaces any dead token: forget it, and hand OpenClaw the new one."""
        self._record_new_token()
        self._failures, self._next_attempt, self._message = 0, 0.0, ""
        view, _ = self.sync_openclaw(creds)
        self._file_key = None
        return view

    def remember_forced_login_warning(self, when: float) -> None:
        """So "once a day at most" holds across restarts of the tray or daemon."""
        self.state.last_forced_login_warning = when
        self.store.save(self.state)

    # ----------------------------------------------------------------- status
    def snapshot(self) -> Status:
        """Status from the file on disk and what we remember (used by `status` and the loop)."""
        self._reload_if_changed(force=True)
        return self._build_status(self.clock.now())

    def _reload_if_changed(self, force: bool = False) -> bool:
        if not self._fixed_source and not self.source.exists():
            self.source = choose_source(self.settings)
        try:
            st = self.source.path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = None
        if key == self._file_key and not force:
            return False
        self._file_key = key
        self._creds, self._load_error = None, ""
        if key is None:
            return True
        try:
            self._creds = self.source.load()
            logs.register_secret(self._creds.access_token, self._creds.refresh_token)
        except LocalFileError as exc:
            self._load_error = str(exc)
        return True

    def _login_needed_reason(self) -> str:
        creds = self._creds
        if creds is None:
            return "" if self._load_error else f"No Kimi credentials at {self.source.path}."
        if not creds.can_refresh:
            return "The credential file holds no refresh token (logged out or revoked)."
        if self.state.dead_refresh_fp and self.state.dead_refresh_fp == fingerprint(creds.refresh_token):
            return self.state.dead_reason or "The Kimi refresh token was rejected."
        return ""

    def _build_status(self, now: float) -> Status:
        creds = self._creds
        common = _StatusCommon(
            now=now,
            credentials_file=str(self.source.path),
            last_renewal=self.state.last_renewal,
            renewing=self._renewing,
            login_in_progress=self.login_in_progress,
            failures=self._failures,
            usage=self._usage,
        )
        view = self.state.openclaw
        openclaw_state, openclaw_detail = view.state, view.detail
        if creds is not None and openclaw_state == "in_sync":
            if view.token_fp != fingerprint(creds.access_token):
                openclaw_state, openclaw_detail = "stale", "OpenClaw holds an older Kimi token."
            elif view.expires_at is not None and view.expires_at <= now:
                openclaw_state, openclaw_detail = "stale", "OpenClaw's Kimi token has expired."
        common["openclaw"], common["openclaw_detail"] = openclaw_state, openclaw_detail
        if self._pending is not None:
            return Status(Health.ERROR, message=f"new token not saved yet: {self._pending.reason}",
                          expires_at=self._pending.expires_at, lifetime=self._pending.expires_in,
                          **common)
        if self._load_error:
            return Status(Health.ERROR, message=self._load_error, **common)
        reason = self._login_needed_reason()
        if creds is None or reason:
            return Status(Health.NEEDS_LOGIN, message=reason, **common,
                          expires_at=creds.expires_at if creds else None,
                          lifetime=creds.expires_in if creds else None)
        health = health_for(creds.expires_at - now, creds.expires_in)
        return Status(
            health,
            expires_at=creds.expires_at,
            lifetime=creds.expires_in,
            message=self._message,
            refresh_token_expires_at=jwt_expiry(creds.refresh_token),
            **common,
        )

    # ----------------------------------------------------------------- background loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="kimi-renewer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Re-check now (a menu action, a finished login)."""
        self._wake.set()

    def request_renew(self) -> None:
        self._renew_requested = True
        self._wake.set()

    # Commands from the file watcher and the resume listener, called on their threads: they
    # only record what happened; the engine thread acts on it in step().
    def file_changed(self, path: Path) -> None:
        """A watched file (credentials, OpenClaw's file, our state) changed on disk."""
        with self._events_lock:
            self._changed_paths.add(Path(os.path.abspath(path)))
        self._wake.set()

    def resumed(self) -> None:
        """The system woke from sleep (a logind, AppKit or Win32 signal)."""
        with self._events_lock:
            self._resume_signalled = True
        self._wake.set()

    def use_events(self, poll_interval: float) -> None:
        """File events now wake the engine, so it need not poll: sleep up to `poll_interval`
        between the things that are due."""
        self._poll_interval = poll_interval
        self._wake.set()  # recompute the current sleep with the new interval

    def join(self, timeout: float) -> bool:
        """Wait for the loop thread; True while it is still running."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return self._thread.is_alive()

    def run(self) -> None:
        while not self._stop.is_set():
            # Cleared before the step, not after the wait: a wake-up (Renew now) that arrives
            # while a step runs then cuts the next sleep short instead of being lost.
            self._wake.clear()
            try:
                delay = self.step()
            except Exception:  # the loop must survive anything; the log says what happened
                log.exception("Unexpected error in the renewal loop")
                delay = self.settings.poll_interval
            if self._stop.is_set():
                break
            self.clock.wait(self._wake, delay)

    def step(self) -> float:
        """Do whatever is due now; return how long to sleep before the next check."""
        now = self.clock.now()
        self._detect_resume(now)
        self._take_events()
        self._reload_if_changed()
        requested, self._renew_requested = self._renew_requested, False
        if self._pending is not None and not self.login_in_progress:
            if requested or now >= self._next_attempt:
                self._attempt_refresh(force=False)
        elif self._creds is not None and not self._load_error and not self.login_in_progress:
            if requested or self._refresh_due(now):
                # Due by the monotonic clock only (the wall clock was set back): the re-check
                # under the lock goes by the wall clock, so it must not stop this refresh.
                creds = self._creds
                self._attempt_refresh(force=requested or now < refresh_due_at(creds.expires_at,
                                                                               creds.expires_in))
            self._sync_openclaw_if_needed()
        self._usage_step(self.clock.now())
        return self._next_delay(self._publish())

    def _refresh_due(self, now: float) -> bool:
        creds = self._creds
        return (
            creds is not None
            and not self._login_needed_reason()
            and now >= self._due_at(creds, now)
            and now >= self._next_attempt
            and now >= self._gap_ends(now)
        )

    def _due_at(self, creds: Credentials, now: float) -> float:
        """When to refresh (wall clock): by the expiry, or earlier when the monotonic clock says
        that much time has really passed since the token was first seen, so a wall clock set
        back never delays a refresh (a suspend, which stops the monotonic clock, still shows on
        the wall clock)."""
        wall_due = refresh_due_at(creds.expires_at, creds.expires_in)
        key = (fingerprint(creds.refresh_token), creds.expires_at)
        if self._due_mono is None or self._due_mono[0] != key:
            self._due_mono = (key, self.clock.monotonic() + wall_due - now)
        return min(wall_due, now + self._due_mono[1] - self.clock.monotonic())

    def _gap_ends(self, now: float) -> float:
        """When the minimum gap after our last refresh ends (wall clock; a monotonic copy guards
        against a clock set back)."""
        creds = self._creds
        gap = min_refresh_gap(creds.expires_in if creds else None)
        ends = 0.0
        last = self.state.last_renewal
        if last is not None and 0 <= now - last < gap:
            ends = last + gap
        if self._last_refresh_mono is not None:
            ends = max(ends, now + self._last_refresh_mono + gap - self.clock.monotonic())
        return ends

    def _sync_openclaw_if_needed(self) -> None:
        """Hand OpenClaw a token it does not hold yet (ours, or one another program renewed)."""
        creds, now = self._creds, self.clock.now()
        if (
            creds is None
            or self._login_needed_reason()
            or creds.expires_at <= now
            or now < self._next_sync
            or not self.openclaw_needs_sync(creds)
        ):
            return
        self._publish()
        view, _ = self.sync_openclaw(creds)
        if view.state in ("error", "stale", "missing"):
            self._sync_failures += 1
            # OpenClaw trouble rarely fixes itself in seconds (not installed, broken config):
            # retry every 30 s doubling to 10 minutes, and say so once per attempt in the log.
            delay = min(SYNC_RETRY_CAP, SYNC_RETRY_FIRST * 2 ** (self._sync_failures - 1))
            self._next_sync = self.clock.now() + delay
        else:
            self._sync_failures = 0

    def _attempt_refresh(self, force: bool) -> None:
        self._renewing = True
        self._publish()
        try:
            creds, renewed = self.refresh_once(force=force)
            self._failures, self._next_attempt, self._message = 0, 0.0, ""
            self._next_sync = 0.0
            if renewed:
                log.info("Renewed the Kimi token; it now lasts %.0f s.", creds.expires_at - self.clock.now())
            self._reload_if_changed(force=True)
        except LoginNeeded as exc:
            self._message = str(exc)
            log.warning("%s Run `kimi-tray login` (or use Log in... in the tray).", exc)
            self._reload_if_changed(force=True)
        except TransientError as exc:
            self._failures += 1
            delay = backoff_delay(self._failures, exc.retry_after, self.rng)
            if self.clock.monotonic() < self._resume_until and exc.retry_after is None:
                delay = min(delay, RESUME_RETRY)  # just woke: the network is probably coming back
            self._next_attempt = self.clock.now() + delay
            self._message = f"renewal failing: {exc}"
            log.warning("Renewal failed (%s); next attempt in %.0f s.", exc, delay)
        except KimiTrayError as exc:
            self._failures += 1
            self._next_attempt = self.clock.now() + backoff_delay(self._failures, None, self.rng)
            self._message = str(exc)
            log.error("%s", exc)
            self._reload_if_changed(force=True)
        finally:
            self._renewing = False

    def _next_delay(self, status: Status) -> float:
        now = self.clock.now()
        delay = self._poll_interval or self.settings.poll_interval
        creds = self._creds
        if creds is not None and status.health not in (Health.NEEDS_LOGIN, Health.ERROR):
            due = max(self._due_at(creds, now), self._next_attempt, self._gap_ends(now))
            delay = min(delay, max(0.0, due - now))
        if self._pending is not None:
            delay = min(delay, max(0.0, self._next_attempt - now))
        if self._pending is not None and creds is not None:
            # Wake when the colour changes (expiring, expired) even if nothing else is due.
            for boundary in (creds.expires_at - EXPIRING_BELOW, creds.expires_at):
                if boundary > now:
                    delay = min(delay, boundary - now)
        if self._next_sync > now:
            delay = min(delay, self._next_sync - now)
        delay = min(delay, self._usage_delay(now))
        return max(MIN_LOOP_DELAY, delay)

    def _detect_resume(self, now: float) -> None:
        mono = self.clock.monotonic()
        if self._last_tick is not None:
            wall_delta, mono_delta = now - self._last_tick[0], mono - self._last_tick[1]
            if wall_delta - mono_delta > RESUME_JUMP:
                log.info("The clock jumped %.0f s (resume from sleep?); checking now.",
                         wall_delta - mono_delta)
                self._on_resume()
        self._last_tick = (now, mono)

    def _on_resume(self) -> None:
        """Check at once, and retry quickly for a while: the network may still be coming up."""
        self._next_attempt = 0.0
        self._next_sync = 0.0
        self._file_key = None
        self._resume_until = self.clock.monotonic() + RESUME_WINDOW
        # The monotonic clock stood still while asleep: the gap since our last refresh is now
        # measured on the wall clock alone (which moved on), or an expired token would wait.
        self._last_refresh_mono = None
        self._usage_resumed()

    def _take_events(self) -> None:
        """Act on what the watcher and the resume listener reported since the last step."""
        with self._events_lock:
            paths, self._changed_paths = self._changed_paths, set()
            resumed, self._resume_signalled = self._resume_signalled, False
        if resumed:
            self._on_resume()
        if not paths:
            return
        state_path = Path(os.path.abspath(self.store.path))
        credential_paths = {Path(os.path.abspath(p)) for p in self.credential_paths()}
        if state_path in paths and self.store.path.exists():  # deleted: ours is saved again
            loaded = self.store.load()
            if loaded != self.state:
                log.info("The state file changed outside this process; reloading it.")
                self.state = loaded
        openclaw_paths = paths - {state_path} - credential_paths
        if paths & credential_paths:
            before = self._creds.refresh_token if self._creds else None
            if not self._fixed_source:
                self.source = choose_source(self.settings)
            self._reload_if_changed(force=True)
            if (self._creds.refresh_token if self._creds else None) != before:
                self._failures, self._next_attempt = 0, 0.0
        if openclaw_paths:
            self._recheck_openclaw()

    def credential_paths(self) -> list[Path]:
        """Every Kimi credential file the engine may manage (watched for outside changes)."""
        if self._fixed_source or self.settings.credentials_file is not None:
            return [self.source.path]
        return [self.settings.kimi_share_dir / "credentials" / "kimi-code.json",
                self.settings.kimi_code_home / "credentials" / "kimi-code.json"]

    def _recheck_openclaw(self) -> None:
        """Someone rewrote OpenClaw's file: if it no longer holds our token, sync again."""
        creds = self._creds
        if creds is None or self.state.openclaw.state != "in_sync":
            return
        token = Token(creds.access_token, creds.expires_at)
        try:
            view = self.target.inspect(token, self.clock.now())
        except (OpenClawError, LocalFileError) as exc:
            view = OpenClawView("error", str(exc), self.target.mode, checked_at=self.clock.now())
        if view.state != "in_sync":
            log.info("OpenClaw's copy changed outside kimi-tray (%s); handing the token over again.",
                     view.detail)
            self.state.openclaw = view
            self.store.save(self.state)
            self._next_sync = 0.0

    def _publish(self) -> Status:
        self.status = self._build_status(self.clock.now())
        for listener in list(self._listeners):
            try:
                listener(self.status)
            except Exception:
                log.exception("A status listener failed")
        return self.status

    # ----------------------------------------------------------------- usage (Kimi quota)
    def _init_usage(self) -> None:
        settings = self.settings
        self.usage_policy = FetchPolicy(interval=settings.usage_interval)
        self.usage_store = UsageStore(settings.state_dir)
        self._usage_client: UsageClient | None = None
        self._usage: Usage | None = (
            self.usage_store.load_usage(self._usage_stale_after()) if settings.usage_enabled else None)
        self._usage_seen_renewal = self.state.last_renewal
        self._usage_token_refused = False  # a new token then fetches at once, despite any backoff
        self._usage_renewal_did_not_help = False  # a 401 even with a new token: renew no more for it
        self._usage_fetch: UsageFetch | None = None  # the request in flight, if any

    def _usage_stale_after(self) -> float:
        """Numbers older than their refresh interval (plus the minimum gap) are not fresh."""
        return self.settings.usage_interval + USAGE_MIN_GAP

    @property
    def usage_client(self) -> UsageClient:
        if self._usage_client is None:
            headers = device_headers(device_id(self.source.home))
            self._usage_client = UsageClient(self.settings.usage_base_url, headers,
                                             timeout=self.settings.http_timeout)
        return self._usage_client

    def watch_usage(self) -> None:
        """A desktop session shows the quota: fetch now and then periodically.

        Without this call (the daemon) the engine never fetches on its own, so a server stays quiet.
        """
        if self.settings.usage_enabled:
            self.usage_policy.periodic = True
            self.usage_policy.request()
            self._wake.set()

    def request_usage(self, urgent: bool = False) -> None:
        """Fetch the quota as soon as the policy allows (the menu opened with old numbers)."""
        if self.usage_policy.periodic:
            self.usage_policy.request(urgent)
            self._wake.set()

    def _usage_resumed(self) -> None:
        self.request_usage(urgent=True)

    def _usage_token_ok(self, now: float) -> bool:
        """Never ask with a token that is dead, expired or being replaced."""
        creds = self._creds
        return (
            self.settings.usage_enabled
            and creds is not None
            and not self._load_error
            and not self.login_in_progress
            and bool(creds.access_token)
            and creds.expires_at > now
            and not self._login_needed_reason()
        )

    def _usage_step(self, now: float) -> None:
        if self.state.last_renewal != self._usage_seen_renewal:
            # A new token (renewal or login) after numbers went stale (token expired, login
            # needed, 401): fetch at once. Routine renewals keep the periodic rhythm.
            self._usage_seen_renewal = self.state.last_renewal
            if self._usage is None or self._usage.is_stale(now):
                self.request_usage(urgent=self._usage_token_refused)
                self._usage_token_refused = False
        if self._usage_fetch is None and self.usage_policy.is_due(now, self._usage_token_ok(now)):
            self._start_usage_fetch()
        self._collect_usage_fetch(USAGE_WAIT)

    def _usage_delay(self, now: float) -> float:
        if self._usage_fetch is not None:  # its thread wakes the loop when the answer comes
            return max(0.0, self._usage_fetch.give_up_at - time.monotonic())
        due = self.usage_policy.due_at(self._usage_token_ok(now))
        return float("inf") if due is None else max(0.0, due - now)

    def _start_usage_fetch(self, after_renewal: bool = False, may_renew: bool = True) -> None:
        creds = self._creds
        if creds is None:
            return
        try:
            client = self.usage_client
        except KimiTrayError as exc:
            self._usage_failed(exc)
            return
        fetch = UsageFetch(creds.access_token, after_renewal, may_renew)
        fetch.give_up_at = time.monotonic() + self.settings.http_timeout + 5.0
        stale_after = self._usage_stale_after()

        def run() -> None:
            try:
                fetch.outcome = client.fetch(fetch.token, self.clock.now(), stale_after)
            except KimiTrayError as exc:
                fetch.outcome = exc
            except Exception as exc:  # a thread must not die silently; the log says what happened
                log.exception("Unexpected error while fetching the Kimi usage")
                fetch.outcome = KimiTrayError(f"unexpected error ({type(exc).__name__})")
            finally:
                fetch.done.set()
                self._wake.set()

        self._usage_fetch = fetch
        threading.Thread(target=run, name="kimi-usage", daemon=True).start()

    def _collect_usage_fetch(self, wait: float) -> None:
        """Take the answer of the request in flight if it came within `wait` s (real time)."""
        fetch = self._usage_fetch
        if fetch is None:
            return
        if not fetch.done.wait(max(0.0, min(wait, fetch.give_up_at - time.monotonic()))):
            if time.monotonic() >= fetch.give_up_at:  # left to finish on its own, unheard
                self._usage_fetch = None
                self._usage_failed(TransientError("the usage server did not answer in time"))
            return
        self._usage_fetch = None
        outcome = fetch.outcome
        if isinstance(outcome, Usage):
            self._usage_renewal_did_not_help = False
            self.usage_policy.succeeded(outcome.fetched_at or self.clock.now(),
                                        (w.resets_at for w in outcome.windows))
            self._usage = outcome
            self.usage_store.save_usage(outcome)
            return
        if not isinstance(outcome, KimiTrayError):  # cannot happen: done is set after outcome
            outcome = KimiTrayError("the usage request ended without an answer")
        if isinstance(outcome, UsageUnauthorized) and fetch.may_renew \
                and not self._usage_renewal_did_not_help:
            creds = self._creds
            if creds is not None and creds.access_token != fetch.token and not fetch.after_renewal \
                    and self._usage_token_ok(self.clock.now()):
                # Refused a token renewed while the request was under way: ask with the new one.
                self._start_usage_fetch(after_renewal=True)
                self._collect_usage_fetch(wait)
                return
            if fetch.after_renewal:
                self._usage_renewal_did_not_help = True  # renewing again would not help either
            else:
                log.info("The usage server refused the access token; renewing it first.")
                self._attempt_refresh(force=True)
                if self._creds is not None and not self._failures \
                        and self._usage_token_ok(self.clock.now()):
                    self._start_usage_fetch(after_renewal=True)
                    self._collect_usage_fetch(wait)
                    return
                self._usage_token_refused = True
        self._usage_failed(outcome)

    def _usage_failed(self, exc: KimiTrayError) -> None:
        now = self.clock.now()
        delay = self.usage_policy.failed(now, getattr(exc, "retry_after", None))
        log.warning("Could not update the Kimi usage (%s); next try in %.0f s at the earliest.", exc, delay)
        self._usage = (self._usage or Usage(stale_after=self._usage_stale_after())).failed(str(exc), now)
        self.usage_store.save_usage(self._usage)

    def fetch_usage(self, wait: float | None = None, may_renew: bool = True) -> Usage | None:
        """One fetch of the quota, waiting for its answer (the CLI) at most `wait` s (default: the
        HTTP timeout); on a 401 renew the token first (if `may_renew`) and try once more.
        Never raises."""
        if self._creds is None:
            return self._usage
        if self._usage_fetch is None:
            self._start_usage_fetch(may_renew=may_renew)
        if self._usage_fetch is not None and wait is not None:
            self._usage_fetch.give_up_at = min(self._usage_fetch.give_up_at, time.monotonic() + wait)
        while self._usage_fetch is not None:
            self._collect_usage_fetch(self._usage_fetch.give_up_at - time.monotonic())
        return self._usage

    def usage_for_cli(self, force: bool) -> Usage | None:
        """For `status` (fetch only when the numbers are stale, waiting a few seconds at most: old
        numbers beat a slow answer there; a 401 is shown, not answered with a renewal) and `usage`
        (fetch now)."""
        self._reload_if_changed(force=True)
        now = self.clock.now()
        usage = self._usage
        if not self._usage_token_ok(now):
            return usage
        recently_tried = (usage is not None and usage.checked_at is not None
                          and now - usage.checked_at < USAGE_MIN_GAP)
        if force:
            return self.fetch_usage()
        if usage is None or (usage.is_stale(now) and not recently_tried):
            return self.fetch_usage(wait=STATUS_USAGE_WAIT, may_renew=False)
        return usage
