"""The engine: one thread that owns all engine state, sleeps until the next thing due or a command.

Faces (the tray, the daemon, `kimi-tray login`) hold an `EngineHandle`: they send commands to its
queue and read the frozen Status it publishes; they never touch the engine's parts. One-shot CLI
commands (`renew`, `status`, `usage`, `doctor`) run engine functions in their own thread instead,
with no engine thread running beside them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock, SystemClock
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError, LocalFileError, LoginNeeded, TransientError
from kimi_tray.core.health import (
    EXPIRING_BELOW,
    GatewayRestart,
    Health,
    LoginView,
    Status,
    min_refresh_gap,
    refresh_due_at,
)
from kimi_tray.core.private_dir import ensure_private_dir
from kimi_tray.core.usage import Usage
from kimi_tray.engine.commands import (
    CancelLogin,
    Command,
    FetchUsage,
    FileChanged,
    GatewayRestarted,
    LoginCodeShown,
    LoginEnded,
    RememberForcedLoginWarning,
    RenewNow,
    Report,
    RestartGateway,
    Resumed,
    StartLogin,
    Stop,
    UseEvents,
    WatchUsage,
)
from kimi_tray.engine.handoff import Handoff
from kimi_tray.engine.login import LoginWorker
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.owned import Owned
from kimi_tray.engine.renewal import Renewal, RetryListener, backoff_delay
from kimi_tray.engine.status import Facts, build_status, login_needed_reason
from kimi_tray.engine.usage import UsageKeeper
from kimi_tray.stores.credentials import Credentials, CredentialSource
from kimi_tray.stores.openclaw import OpenClawTarget
from kimi_tray.stores.state import OpenClawView, fingerprint

if TYPE_CHECKING:
    from kimi_tray.kimi.exchange import Exchange
    from kimi_tray.kimi.oauth import OAuthClient

log = logging.getLogger(__name__)

RESUME_JUMP = 60.0
MIN_LOOP_DELAY = 0.5
RESUME_WINDOW = 30.0  # after a resume the network may need a while: retry quickly meanwhile
RESUME_RETRY = 1.0
THREAD_NAME = "kimi-engine"

Listener = Callable[[Status], None]


@dataclass(frozen=True)
class RenewResult:
    credentials: Credentials
    renewed: bool
    openclaw: OpenClawView
    restart_message: str = ""


class Engine(Owned):
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        oauth: OAuthClient | None = None,
        target: OpenClawTarget | None = None,
        source: CredentialSource | None = None,
        rng: Callable[[], float] = random.random,
        routine: bool = True,
        exchange: Callable[[], Exchange] | None = None,
    ) -> None:
        """routine: renew, hand off and fetch usage when due; False for `kimi-tray login`, whose
        engine only runs the login and its hand-off. exchange: makes what carries the HTTP
        requests out (default: httpx in this process; the daemon and the tray use child processes)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.rng = rng
        self.routine = routine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inbox: deque[Command | Report] = deque()  # appended from any thread, taken by ours
        self._listeners: list[Listener] = []
        self._thread = threading.Thread(target=self.run, name=THREAD_NAME, daemon=True)
        self.memory = Memory(settings.state_dir)
        self.renewal = Renewal(settings, self.clock, self.memory, oauth, source, wake=self._wake.set,
                               exchange=exchange)
        self.handoff = Handoff(settings, self.clock, self.memory, target)
        self.usage = UsageKeeper(settings, self.clock, lambda: self.renewal.source.home, self._wake.set,
                                 self.memory.state.last_renewal, exchange)
        with contextlib.suppress(LocalFileError):
            ensure_private_dir(settings.state_dir, tighten=True)
        self._creds: Credentials | None = None
        self._load_error = ""
        self._file_key: tuple[int, int, int] | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._message = ""
        self._renewing = False
        self._last_tick: tuple[float, float] | None = None
        self._resume_until = 0.0
        self._poll_interval: float | None = None
        self._due_mono: tuple[tuple[str, float], float] | None = None  # (token, expiry) -> due
        self._login: LoginView | None = None
        self._login_worker: LoginWorker | None = None
        self._logins = 0
        self._gateway: GatewayRestart | None = None
        self._gateway_restarts = 0
        # Until the first step reads the file: what faces show while the engine starts.
        self.status: Status = replace(build_status(self._facts(self.clock.now())), health=Health.ERROR,
                                      message="starting")

    def handle(self) -> EngineHandle:
        return EngineHandle(self)

    # ----------------------------------------------------------------- from any thread
    def send(self, command: Command | Report) -> None:
        """Queue a command; the engine thread acts on it at once (its sleep is cut short)."""
        self._inbox.append(command)
        if isinstance(command, Stop):
            self._stop.set()  # also ends a wait inside a `renew` retry
        self._wake.set()

    def add_listener(self, listener: Listener) -> None:
        """Before start(): `listener(status)` runs on the engine thread for every Status."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.send(Stop())
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def join(self, timeout: float) -> bool:
        """Wait for the engine thread; True while it is still running."""
        if self._thread.ident is None:
            return False
        self._thread.join(timeout)
        return self._thread.is_alive()

    # ----------------------------------------------------------------- the engine thread
    def run(self) -> None:
        while not self._stop.is_set():
            # Cleared before the step, not after the wait: a command that arrives while a step
            # runs then cuts the next sleep short instead of being lost.
            self._wake.clear()
            try:
                delay = self.step()
            except Exception:  # the loop must survive anything; the log says what happened
                log.exception("Unexpected error in the engine loop")
                delay = self.settings.poll_interval
            if self._stop.is_set():
                break
            self.clock.wait(self._wake, delay)
        if self._login_worker is not None:
            self._login_worker.cancel.set()

    def step(self) -> float:
        """Act on the commands queued, then do whatever is due; return how long to sleep.

        Run by the engine thread, or by a test or benchmark that drives an engine with no thread."""
        now = self.clock.now()
        self._detect_resume(now)
        requested = self._take_commands()
        if self.renewal.take_late_answers():
            self._next_attempt = 0.0
        if self._reload_if_changed():
            self._forget_failures()  # a login or renewal from elsewhere, seen without an event
        if self.routine:
            self._routine(now, requested)
        return self._next_delay(self._publish())

    def _routine(self, now: float, requested: bool) -> None:
        if self._login_active():
            pass
        elif self.renewal.pending is not None:
            if requested or now >= self._next_attempt:
                self._attempt_refresh(force=False)
        elif self._creds is not None and not self._load_error:
            if requested or self._refresh_due(now):
                # Due by the monotonic clock only (the wall clock was set back): the re-check
                # under the lock goes by the wall clock, so it must not stop this refresh.
                creds = self._creds
                self._attempt_refresh(force=requested or now < refresh_due_at(creds.expires_at,
                                                                               creds.expires_in))
            self._sync_openclaw_if_needed()
        self.usage.step(self, self.clock.now(), self.memory.state.last_renewal)

    def _take_commands(self) -> bool:
        """Act on what faces, watchers and workers sent; True when a renewal was asked for."""
        requested, resumed = False, False
        paths: set[Path] = set()
        while self._inbox:
            command = self._inbox.popleft()
            if isinstance(command, RenewNow):
                requested = True
            elif isinstance(command, FileChanged):
                paths.add(Path(os.path.abspath(command.path)))
            elif isinstance(command, Resumed):
                resumed = True
            elif isinstance(command, WatchUsage):
                self.usage.watch()
            elif isinstance(command, FetchUsage):
                self.usage.request(command.urgent)
            elif isinstance(command, UseEvents):
                self._poll_interval = command.poll_interval
            elif isinstance(command, RememberForcedLoginWarning):
                self.memory.state.last_forced_login_warning = command.when
                self.memory.save()
            elif isinstance(command, StartLogin):
                self._start_login()
            elif isinstance(command, CancelLogin):
                if self._login_worker is not None:
                    self._login_worker.cancel.set()
            elif isinstance(command, LoginCodeShown | LoginEnded):
                self._login_report(command)
            elif isinstance(command, RestartGateway):
                self._start_gateway_restart()
            elif isinstance(command, GatewayRestarted):
                self._gateway_report(command)
        self._take_events(paths, resumed)
        return requested

    # ----------------------------------------------------------------- login
    def _login_active(self) -> bool:
        return self._login is not None and self._login.active

    def _start_login(self) -> None:
        if self._login_active():
            return
        self._logins += 1
        try:
            source = self.renewal.reselect_source()  # where a new login is saved
            oauth = self.renewal.oauth
        except KimiTrayError as exc:
            self._login = LoginView(self._logins, "failed", message=str(exc))
            return
        self._login = LoginView(self._logins, "starting")
        self._login_worker = LoginWorker(self._logins, oauth, source, self.settings.lock_timeout,
                                         self.settings.kimi_lock_disabled, self.clock, self.send).start()

    def _login_report(self, report: LoginCodeShown | LoginEnded) -> None:
        if self._login is None or report.attempt != self._login.attempt:
            return
        if isinstance(report, LoginCodeShown):
            self._login = LoginView(report.attempt, "waiting", report.user_code, report.verification_uri,
                                    report.verification_uri_complete, self.clock.now() + report.expires_in)
            return
        self._login_worker = None
        if report.credentials is None:
            phase = "cancelled" if report.cancelled else "failed"
            self._login = LoginView(report.attempt, phase, message=report.error)
            return
        # A new login replaces any dead token: forget it, and hand OpenClaw the new one.
        self.renewal.record_new_token()
        self._forget_failures()
        self._reload_if_changed(force=True)
        view, _ = self.handoff.sync(report.credentials, self.renewal.source)
        self._login = LoginView(report.attempt, "done",
                                message=f"Logged in; OpenClaw {view.state.replace('_', ' ')}.")

    # ----------------------------------------------------------------- gateway restart
    def _start_gateway_restart(self) -> None:
        if self._gateway is not None and self._gateway.running:
            return
        self._gateway_restarts += 1
        attempt, handoff = self._gateway_restarts, self.handoff
        self._gateway = GatewayRestart(attempt, running=True)

        def work() -> None:  # a restart takes seconds; it changes no engine state
            try:
                ok, message = handoff.restart_gateway()
            except Exception as exc:  # a thread must not die silently; the log says what happened
                log.exception("Unexpected error while restarting the OpenClaw gateway")
                ok, message = False, f"The gateway restart failed ({type(exc).__name__})."
            self.send(GatewayRestarted(attempt, ok, message))

        threading.Thread(target=work, name="restart-gateway", daemon=True).start()

    def _gateway_report(self, report: GatewayRestarted) -> None:
        (log.info if report.ok else log.warning)("%s", report.message)
        self._gateway = GatewayRestart(report.attempt, False, report.ok, report.message)

    # ----------------------------------------------------------------- one-shot commands (CLI)
    def renew(self, force: bool = True, give_up_after: float | None = None,
              on_retry: RetryListener | None = None) -> RenewResult:
        """Refresh now, retrying transient faults with backoff, then hand off to OpenClaw.

        Ends within `give_up_after` seconds, the attempt in flight included; `on_retry` hears of
        each failed attempt (attempt number, most attempts possible, reason, delay).
        """
        give_up_after = self.settings.renew_give_up_after if give_up_after is None else give_up_after
        creds, renewed = self.renewal.renew(force, give_up_after,
                                            lambda delay: self.clock.wait(self._stop, delay),
                                            self.rng, on_retry)
        if renewed or self.handoff.needs_sync(creds):
            view, restart_message = self.handoff.sync(creds, self.renewal.source)
        else:
            view, restart_message = self.memory.state.openclaw, ""
        return RenewResult(creds, renewed, view, restart_message)

    def sync_openclaw(self, creds: Credentials) -> tuple[OpenClawView, str]:
        return self.handoff.sync(creds, self.renewal.source)

    def snapshot(self) -> Status:
        """Status from the file on disk and what we remember (`status`, `usage`, `doctor`)."""
        self._reload_if_changed(force=True)
        return build_status(self._facts(self.clock.now()))

    def usage_for_cli(self, force: bool) -> Usage | None:
        self._reload_if_changed(force=True)
        return self.usage.for_cli(self, force)

    # ----------------------------------------------------------------- what is watched
    def credential_paths(self) -> list[Path]:
        """Every Kimi credential file the engine may manage (watched for outside changes)."""
        if self.renewal.fixed_source or self.settings.credentials_file is not None:
            return [self.renewal.source.path]
        return [self.settings.kimi_share_dir / "credentials" / "kimi-code.json",
                self.settings.kimi_code_home / "credentials" / "kimi-code.json"]

    def watched_paths(self) -> list[Path]:
        """Both Kimi credential files, OpenClaw's legacy file(s) when that is the target, our state."""
        return [*self.credential_paths(), self.memory.path, *self.handoff.watched_files()]

    # ----------------------------------------------------------------- usage host
    def usage_token(self, now: float) -> str | None:
        """Never ask with a token that is dead, expired or being replaced."""
        creds = self._creds
        if (not self.settings.usage_enabled or creds is None or self._load_error or self._login_active()
                or not creds.access_token or creds.expires_at <= now
                or self._login_needed(now)):
            return None
        return creds.access_token

    def renew_for_usage(self) -> bool:
        self._attempt_refresh(force=True)
        return self._creds is not None and not self._failures

    # ----------------------------------------------------------------- the file and the schedule
    def _reload_if_changed(self, force: bool = False) -> bool:
        """Read the credential file again if it changed (or when forced). True when the refresh
        token is not the one held before: renewed, logged into, removed or unreadable."""
        before = self._creds.refresh_token if self._creds else None
        source = self.renewal.source
        if not self.renewal.fixed_source and not source.exists():
            source = self.renewal.reselect_source()
        try:
            st = source.path.stat()
            key: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = None
        if key == self._file_key and not force:
            return False
        self._file_key = key
        self._creds, self._load_error = None, ""
        if key is not None:
            try:
                creds = source.load()
                logs.register_secret(creds.access_token, creds.refresh_token)
                self._creds = creds
            except LocalFileError as exc:
                self._load_error = str(exc)
        return (self._creds.refresh_token if self._creds else None) != before

    def _forget_failures(self) -> None:
        """The failures (and their message) were a token's that is gone now."""
        self._failures, self._next_attempt, self._message = 0, 0.0, ""

    def _login_needed(self, now: float) -> str:
        """Why a new login is needed, or "" (the builder's rule, without building a whole Status)."""
        state = self.memory.state
        return login_needed_reason(Facts(now, str(self.renewal.source.path), self._creds, self._load_error,
                                         state.dead_refresh_fp, state.dead_reason))

    def _facts(self, now: float) -> Facts:
        state = self.memory.state
        return Facts(
            now=now, credentials_file=str(self.renewal.source.path), credentials=self._creds,
            load_error=self._load_error, dead_refresh_fp=state.dead_refresh_fp,
            dead_reason=state.dead_reason, last_renewal=state.last_renewal, openclaw=state.openclaw,
            pending=self.renewal.pending, renewing=self._renewing, failures=self._failures,
            message=self._message, usage=self.usage.usage, login=self._login,
            gateway_restart=self._gateway, credentials_owner=self.renewal.source.owner,
            openclaw_handoff=self.handoff.active, openclaw_mode=self.handoff.mode,
            openclaw_target=self.handoff.describe(),
            last_forced_login_warning=state.last_forced_login_warning,
        )

    def _publish(self) -> Status:
        self.status = build_status(self._facts(self.clock.now()))
        for listener in list(self._listeners):
            try:
                listener(self.status)
            except Exception:
                log.exception("A status listener failed")
        return self.status

    def _refresh_due(self, now: float) -> bool:
        creds = self._creds
        return (
            creds is not None
            and not self._login_needed(now)
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
        last = self.memory.state.last_renewal
        if last is not None and 0 <= now - last < gap:
            ends = last + gap
        last_mono = self.renewal.last_refresh_mono
        if last_mono is not None:
            ends = max(ends, now + last_mono + gap - self.clock.monotonic())
        return ends

    def _sync_openclaw_if_needed(self) -> None:
        """Hand OpenClaw a token it does not hold yet (ours, or one another program renewed)."""
        creds, now = self._creds, self.clock.now()
        if creds is None or self._login_needed(now) or creds.expires_at <= now \
                or not self.handoff.due(creds):
            return
        self._publish()
        self.handoff.sync_if_due(creds, self.renewal.source)

    def _attempt_refresh(self, force: bool) -> None:
        self._renewing = True
        self._publish()
        try:
            creds, renewed = self.renewal.refresh_once(force=force)
            self._forget_failures()
            self.handoff.next_sync = 0.0
            if renewed:
                log.info("Renewed the Kimi token; it now lasts %.0f s.", creds.expires_at - self.clock.now())
            self._reload_if_changed(force=True)
        except LoginNeeded as exc:
            self._message = str(exc)
            log.warning("%s Run `kimi-tray login` (or use Log in... in the tray).", exc)
            if self._reload_if_changed(force=True):
                self._forget_failures()  # a new login landed meanwhile: the rejection was the old token's
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
            if self._reload_if_changed(force=True):
                self._forget_failures()
        finally:
            self._renewing = False

    def _next_delay(self, status: Status) -> float:
        now = self.clock.now()
        delay = self._poll_interval or self.settings.poll_interval
        if not self.routine:
            return delay
        creds, pending = self._creds, self.renewal.pending
        if creds is not None and status.health not in (Health.NEEDS_LOGIN, Health.ERROR):
            due = max(self._due_at(creds, now), self._next_attempt, self._gap_ends(now))
            delay = min(delay, max(0.0, due - now))
        if pending is not None:
            delay = min(delay, max(0.0, self._next_attempt - now))
        if pending is not None and creds is not None:
            # Wake when the colour changes (expiring, expired) even if nothing else is due.
            for boundary in (creds.expires_at - EXPIRING_BELOW, creds.expires_at):
                if boundary > now:
                    delay = min(delay, boundary - now)
        if self.handoff.next_sync > now:
            delay = min(delay, self.handoff.next_sync - now)
        delay = min(delay, self.usage.delay(self, now))
        return max(MIN_LOOP_DELAY, delay)

    # ----------------------------------------------------------------- events and resume
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
        self.handoff.next_sync = 0.0
        self._file_key = None
        self._resume_until = self.clock.monotonic() + RESUME_WINDOW
        # The monotonic clock stood still while asleep: the gap since our last refresh is now
        # measured on the wall clock alone (which moved on), or an expired token would wait.
        self.renewal.last_refresh_mono = None
        self.usage.request(urgent=True)

    def _take_events(self, paths: set[Path], resumed: bool) -> None:
        """Act on what the watcher and the resume listener reported since the last step."""
        if resumed:
            self._on_resume()
        if not paths:
            return
        state_path = Path(os.path.abspath(self.memory.path))
        credential_paths = {Path(os.path.abspath(p)) for p in self.credential_paths()}
        if state_path in paths:
            self.memory.reload_if_changed_outside()
        openclaw_paths = paths - {state_path} - credential_paths
        if paths & credential_paths:
            self.renewal.reselect_source()
            if self._reload_if_changed(force=True):
                self._forget_failures()
        if openclaw_paths:
            self.handoff.recheck(self._creds)


class EngineHandle:
    """All a face may do with the engine: send commands, read the newest Status, listen."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def status(self) -> Status:
        return self._engine.status

    def send(self, command: Command) -> None:
        self._engine.send(command)

    def add_listener(self, listener: Listener) -> None:
        self._engine.add_listener(listener)

    def start(self) -> None:
        self._engine.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._engine.stop(timeout)

    def join(self, timeout: float) -> bool:
        return self._engine.join(timeout)
