"""The hand-off to OpenClaw: give it the newest Kimi access token on disk, one process at a time.

The only engine module that asks the OpenClaw target what kind it is (off, restart after sync).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError, LockTimeout, OpenClawError
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.owned import Owned
from kimi_tray.stores.credentials import Credentials, CredentialSource
from kimi_tray.stores.fileio import FileLock
from kimi_tray.stores.openclaw import OpenClawTarget, Token, choose_target
from kimi_tray.stores.state import OpenClawView, fingerprint

log = logging.getLogger(__name__)

OPENCLAW_SYNC_LOCK = "openclaw-sync.lock"  # in the state dir: one OpenClaw hand-off at a time
OPENCLAW_SYNC_WAIT = 180.0  # an offline OpenClaw without its Kimi plugin takes over a minute
SYNC_RETRY_FIRST = 30.0
SYNC_RETRY_CAP = 600.0


class Handoff(Owned):
    def __init__(self, settings: Settings, clock: Clock, memory: Memory,
                 target: OpenClawTarget | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.memory = memory
        self.target = target or choose_target(settings, memory.state.openclaw_memory)
        self.next_sync = 0.0
        self._sync_failures = 0

    # ----------------------------------------------------------------- what the target is
    @property
    def active(self) -> bool:
        """False when the hand-off is turned off (nothing to sync, no gateway to restart)."""
        return self.target.active

    @property
    def mode(self) -> str:
        return self.target.mode

    def describe(self) -> str:
        return self.target.describe()

    def watched_files(self) -> list[Path]:
        """OpenClaw's legacy file(s) when that is the target (its SQLite store is not watched:
        checking it means running its CLI for seconds, and every sync would trigger that again)."""
        return self.target.watched_files()

    def restart_gateway(self) -> tuple[bool, str]:
        """On a worker thread (a restart takes seconds); the target keeps no engine state."""
        return self.target.restart_gateway()

    # ----------------------------------------------------------------- the hand-off
    def needs_sync(self, creds: Credentials) -> bool:
        """Until OpenClaw holds this token. A problem we cannot fix by writing it again (a
        missing Kimi plugin, say) is reported, not retried."""
        view = self.memory.state.openclaw
        if not self.active:
            return view.state != "off"
        return view.token_fp != fingerprint(creds.access_token)

    def sync(self, creds: Credentials, source: CredentialSource) -> tuple[OpenClawView, str]:
        """Hand the access token to OpenClaw; never raises, the outcome is in the view.

        One hand-off at a time across processes (a `kimi-tray renew` beside the tray), and always
        the newest token on disk: a slower process must never paste an older token over a newer
        one, nor call OpenClaw stale for holding the newer one."""
        now = self.clock.now()
        restart_message = ""
        try:
            with FileLock(self.settings.state_dir / OPENCLAW_SYNC_LOCK, timeout=OPENCLAW_SYNC_WAIT):
                creds = newest_on_disk(creds, source)
                view, restart_message = self._hand_over(creds, now)
        except LockTimeout:
            view = OpenClawView("error", "Another kimi-tray was still handing OpenClaw the token "
                                f"after {OPENCLAW_SYNC_WAIT:g} s.", self.target.mode, checked_at=now)
        self.memory.state.openclaw = view
        self.memory.save()
        return view, restart_message

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

    def sync_if_due(self, creds: Credentials, source: CredentialSource) -> None:
        """The loop's hand-off: when OpenClaw lacks the token and no retry wait is running.
        OpenClaw trouble rarely fixes itself in seconds (not installed, broken config): retry
        every 30 s doubling to 10 minutes."""
        if not self.due(creds):
            return
        view, _ = self.sync(creds, source)
        if view.state in ("error", "stale", "missing"):
            self._sync_failures += 1
            delay = min(SYNC_RETRY_CAP, SYNC_RETRY_FIRST * 2 ** (self._sync_failures - 1))
            self.next_sync = self.clock.now() + delay
        else:
            self._sync_failures = 0

    def due(self, creds: Credentials) -> bool:
        """OpenClaw lacks this token and no retry wait is running."""
        return self.clock.now() >= self.next_sync and self.needs_sync(creds)

    def recheck(self, creds: Credentials | None) -> None:
        """Someone rewrote OpenClaw's file: if it no longer holds our token, sync again."""
        if creds is None or self.memory.state.openclaw.state != "in_sync":
            return
        token = Token(creds.access_token, creds.expires_at)
        try:
            view = self.target.inspect(token, self.clock.now())
        except (OpenClawError, LocalFileError) as exc:
            view = OpenClawView("error", str(exc), self.target.mode, checked_at=self.clock.now())
        if view.state != "in_sync":
            log.info("OpenClaw's copy changed outside kimi-tray (%s); handing the token over again.",
                     view.detail)
            # Not "holds this token" any more, whatever the view says (a view with problems keeps
            # the token's fingerprint): otherwise due() would see nothing to hand over.
            self.memory.state.openclaw = replace(view, token_fp="")
            self.memory.save()
            self.next_sync = 0.0


def newest_on_disk(creds: Credentials, source: CredentialSource) -> Credentials:
    try:
        on_disk = source.load(fix_mode=False)
    except LocalFileError:
        return creds
    if on_disk.access_token and on_disk.expires_at > creds.expires_at:
        logs.register_secret(on_disk.access_token, on_disk.refresh_token)
        return on_disk
    return creds
