"""The one place that decides when to refresh and what colour a token's health is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kimi_tray.core.usage import Usage

DEFAULT_LIFETIME = 900.0
EXPIRING_BELOW = 120.0
MIN_REFRESH_GAP = 10.0


class Health(str, Enum):
    FRESH = "fresh"
    AGING = "aging"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    NEEDS_LOGIN = "needs_login"
    ERROR = "error"

    @property
    def is_ok(self) -> bool:
        return self in (Health.FRESH, Health.AGING)


def refresh_margin(lifetime: float | None) -> float:
    """Refresh when half the lifetime is left.

    For tokens of 600 s and more this is the Kimi CLI's own rule, max(300 s, lifetime / 2); its
    300 s floor is dropped for shorter tokens, where it would be the whole lifetime or more and
    turn every check into a refresh.
    """
    return 0.5 * (lifetime if lifetime and lifetime > 0 else DEFAULT_LIFETIME)


def min_refresh_gap(lifetime: float | None) -> float:
    """The least time between two refreshes, whatever the server, the file or the clock say.

    With it no token lifetime sees more than 4 refreshes, and no 10 s more than one.
    """
    return max(MIN_REFRESH_GAP, 0.25 * (lifetime if lifetime and lifetime > 0 else DEFAULT_LIFETIME))


def refresh_due_at(expires_at: float, lifetime: float | None) -> float:
    return expires_at - refresh_margin(lifetime)


def health_for(seconds_left: float, lifetime: float | None) -> Health:
    if seconds_left <= 0:
        return Health.EXPIRED
    if seconds_left < EXPIRING_BELOW:
        return Health.EXPIRING
    if seconds_left < refresh_margin(lifetime):
        return Health.AGING
    return Health.FRESH


@dataclass(frozen=True)
class LoginView:
    """The login the engine runs (or ran last): what a face shows and opens."""

    attempt: int  # grows with each login started, so a face can tell one login from the next
    phase: str  # "starting", "waiting" (for the user to approve), "done", "failed", "cancelled"
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str = ""
    expires_at: float | None = None  # wall clock: the code runs out then
    message: str = ""  # how it ended, in words

    @property
    def active(self) -> bool:
        return self.phase in ("starting", "waiting")

    def lines(self) -> tuple[str, ...]:
        """Lines a menu shows while the user approves the code."""
        if self.phase != "waiting":
            return ()
        return (f"Login code {self.user_code} (click to copy)",
                f"at {self.verification_uri} (click to open again)")


@dataclass(frozen=True)
class GatewayRestart:
    """A gateway restart asked for by a face, under way or done."""

    attempt: int
    running: bool
    ok: bool = False
    message: str = ""


@dataclass(frozen=True)
class Status:
    """An immutable snapshot the engine publishes; listeners can read it but never change it."""

    health: Health
    now: float
    credentials_file: str | None = None
    expires_at: float | None = None
    lifetime: float | None = None
    last_renewal: float | None = None
    message: str = ""
    openclaw: str = "unknown"
    openclaw_detail: str = ""
    refresh_token_expires_at: float | None = None
    renewing: bool = False
    login_in_progress: bool = False
    failures: int = 0
    usage: Usage | None = None  # the Kimi quota as last fetched (may be stale: see Usage.is_stale)
    credentials_owner: str = ""  # which CLI's file it is ("kimi-cli", "kimi-code")
    openclaw_handoff: bool = True  # False when the OpenClaw hand-off is turned off
    openclaw_mode: str = ""
    openclaw_target: str = ""  # the target in words, for logs and `status`
    login: LoginView | None = None  # the running login, or how the last one ended
    gateway_restart: GatewayRestart | None = None
    last_forced_login_warning: float | None = None

    @property
    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - self.now

    @property
    def fraction_left(self) -> float:
        """Share of the token's lifetime still left, 0..1 (for the icon's ring)."""
        left = self.seconds_left
        if left is None or left <= 0:
            return 0.0
        return max(0.0, min(1.0, left / (self.lifetime or DEFAULT_LIFETIME)))

    def summary(self) -> str:
        """One line for a tooltip or a log: 'Kimi: 11 min left, renewed 14:03, OpenClaw in sync'."""
        if self.login_in_progress:
            head = "Kimi: waiting for the browser login"
        elif self.health is Health.NEEDS_LOGIN:
            head = "Kimi: login needed"
        elif self.health is Health.ERROR:
            head = f"Kimi: {self.message or 'error'}"
        elif self.health is Health.EXPIRED:
            head = "Kimi: token expired"
        else:
            head = f"Kimi: {format_duration(self.seconds_left or 0)} left"
        parts = [head]
        if self.last_renewal:
            parts.append("renewed " + dt.datetime.fromtimestamp(self.last_renewal).strftime("%H:%M"))
        parts.append(OPENCLAW_WORDS.get(self.openclaw, f"OpenClaw {self.openclaw}"))
        if self.openclaw == "error" and self.openclaw_detail:
            parts[-1] += f" ({self.openclaw_detail.rstrip('.')})"
        return ", ".join(parts)


OPENCLAW_WORDS = {
    "in_sync": "OpenClaw in sync",
    "stale": "OpenClaw stale",
    "missing": "OpenClaw profile missing",
    "off": "OpenClaw sync off",
    "error": "OpenClaw sync failed",
    "unknown": "OpenClaw not checked yet",
}


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"
