"""The renewal engine: refresh before expiry under the Kimi lock, save, hand the token to OpenClaw.

It knows nothing of any UI. It runs in a background thread, sleeps until the next thing is due,
and publishes immutable Status snapshots to listeners.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kimi_tray import logs
from kimi_tray.clock import Clock, SystemClock
from kimi_tray.config import Settings
from kimi_tray.credentials import Credentials, CredentialSource, choose_source, device_id
from kimi_tray.errors import (
    KimiTrayError,
    LocalFileError,
    LoginNeeded,
    OpenClawError,
    TransientError,
)
from kimi_tray.health import EXPIRING_BELOW, Health, Status, health_for, refresh_due_at
from kimi_tray.oauth import OAuthClient, TokenResponse, device_headers
from kimi_tray.openclaw import OpenClawTarget, Token, choose_target
from kimi_tray.state import OpenClawView, PersistentState, StateStore, fingerprint
from kimi_tray.tokens import jwt_expiry

log = logging.getLogger(__name__)

BACKOFF_FIRST = 5.0
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 600.0
RESUME_JUMP = 60.0
SYNC_RETRY_FIRST = 30.0
SYNC_RETRY_CAP = 600.0
RESUME_WINDOW = 30.0  # after a resume the network may need a while: retry quickly meanwhile
RESUME_RETRY = 1.5

Listener = Callable[[Status], None]


def backoff_delay(failures: int, retry_after: float | None, rng: Callable[[], float]) -> float:
    """Capped exponential backoff with jitter; a server's Retry-After wins when it is longer."""
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, failures - 1))
    delay = base * (0.5 + 0.5 * rng())
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


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
        self.target = target or choose_target(settings)
        self.store = StateStore(settings.state_dir)
        self.state: PersistentState = self.store.load()
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
        self.status: Status = Status(Health.ERROR, self.clock.now(), message="starting")

    # ----------------------------------------------------------------- collaborators
    @property
    def oauth(self) -> OAuthClient:
        if self._oauth is None:
            headers = device_headers(device_id(self.source.home))
            self._oauth = OAuthClient(self.settings.oauth_host, self.settings.client_id, headers,
                                      timeout=self.settings.http_timeout)
        return self._oauth

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ----------------------------------------------------------------- one refresh
    def refresh_once(self, force: bool = False) -> tuple[Credentials, bool]:
        """Under the Kimi lock: re-read the file, refresh only if still needed, save atomically.

        Returns the credentials now on disk and whether we refreshed them ourselves.
        """
        lock = self.source.lock(self.settings.lock_timeout, self.settings.kimi_lock_disabled)
        with lock:
            creds = self._read_credentials()
            now = self.clock.now()
            if not force and now < refresh_due_at(creds.expires_at, creds.expires_in):
                return creds, False
            self.source.check_writable()
            try:
                token = self._refresh_or_remember(creds.refresh_token)
            except LoginNeeded:
                again = self._read_credentials()
                if again.refresh_token == creds.refresh_token:
                    raise
                log.info("Another program rotated the refresh token meanwhile; using its token.")
                if self.clock.now() < refresh_due_at(again.expires_at, again.expires_in):
                    return again, False
                token = self._refresh_or_remember(again.refresh_token)
            logs.register_secret(token.access_token, token.refresh_token)
            saved = self.source.save(
                token.access_token, token.refresh_token, self.clock.now() + token.expires_in,
                token.expires_in, token.scope, token.token_type,
            )
        self._record_new_token()
        return saved, True

    def _record_new_token(self) -> None:
        """A new token (renewed or from a login) replaces any dead one we remembered."""
        self.state.dead_refresh_fp = ""
        self.state.dead_reason = ""
        self.state.last_renewal = self.clock.now()
        self.store.save(self.state)

    def _refresh_or_remember(self, refresh_token: str) -> TokenResponse:
        try:
            return self.oauth.refresh(refresh_token)
        except LoginNeeded:
            self._remember_dead(refresh_token, "The Kimi refresh token was rejected.")
            raise

    def _read_credentials(self) -> Credentials:
        if not self.source.exists():
            raise LoginNeeded(f"No Kimi credentials at {self.source.path}; run `kimi-tray login`.")
        creds = self.source.load()
        logs.register_secret(creds.access_token, creds.refresh_token)
        if not creds.can_refresh:
            raise LoginNeeded(f"{self.source.path} holds no refresh token; a new login is needed.")
        return creds

    def _remember_dead(self, refresh_token: str, reason: str) -> None:
        self.state.dead_refresh_fp = fingerprint(refresh_token)
        self.state.dead_reason = reason
        self.store.save(self.state)

    # ----------------------------------------------------------------- OpenClaw
    def sync_openclaw(self, creds: Credentials) -> tuple[OpenClawView, str]:
        """Hand the access token to OpenClaw; never raises, the outcome is in the view."""
        now = self.clock.now()
        token = Token(creds.access_token, creds.refresh_token, creds.expires_at)
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
        self.state.openclaw = view
        self.store.save(self.state)
        return view, restart_message

    def openclaw_needs_sync(self, creds: Credentials) -> bool:
        view = self.state.openclaw
        if self.target.mode == "off":
            return view.state != "off"
        return view.token_fp != fingerprint(creds.access_token) or view.state != "in_sync"

    # ----------------------------------------------------------------- renew command
    def renew(self, force: bool = True, give_up_after: float | None = None) -> RenewResult:
        """Refresh now, retrying transient faults with backoff for a bounded time, then sync."""
        give_up_after = self.settings.renew_give_up_after if give_up_after is None else give_up_after
        deadline = self.clock.monotonic() + give_up_after
        failures = 0
        while True:
            try:
                creds, renewed = self.refresh_once(force=force)
                break
            except TransientError as exc:
                failures += 1
                delay = backoff_delay(failures, exc.retry_after, self.rng)
                if self.clock.monotonic() + delay > deadline:
                    raise TransientError(f"{exc} Gave up after {failures} attempt(s).") from None
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
        common = dict(
            now=now,
            credentials_file=str(self.source.path),
            last_renewal=self.state.last_renewal,
            renewing=self._renewing,
            login_in_progress=self.login_in_progress,
            failures=self._failures,
        )
        view = self.state.openclaw
        openclaw_state, openclaw_detail = view.state, view.detail
        if creds is not None and openclaw_state == "in_sync":
            if view.token_fp != fingerprint(creds.access_token):
                openclaw_state, openclaw_detail = "stale", "OpenClaw holds an older Kimi token."
            elif view.expires_at is not None and view.expires_at <= now:
                openclaw_state, openclaw_detail = "stale", "OpenClaw's Kimi token has expired."
        common.update(openclaw=openclaw_state, openclaw_detail=openclaw_detail)
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
        if self._creds is not None and not self._load_error and not self.login_in_progress:
            if requested or self._refresh_due(now):
                self._attempt_refresh(force=requested)
            self._sync_openclaw_if_needed()
        return self._next_delay(self._publish())

    def _refresh_due(self, now: float) -> bool:
        creds = self._creds
        return (
            creds is not None
            and not self._login_needed_reason()
            and now >= refresh_due_at(creds.expires_at, creds.expires_in)
            and now >= self._next_attempt
        )

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
            due = max(refresh_due_at(creds.expires_at, creds.expires_in), self._next_attempt)
            delay = min(delay, max(0.0, due - now))
            # Wake when the colour changes (expiring, expired) even if nothing else is due.
            for boundary in (creds.expires_at - EXPIRING_BELOW, creds.expires_at):
                if boundary > now:
                    delay = min(delay, boundary - now)
        if self._next_sync > now:
            delay = min(delay, self._next_sync - now)
        return max(0.05, delay)

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
        token = Token(creds.access_token, creds.refresh_token, creds.expires_at)
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
