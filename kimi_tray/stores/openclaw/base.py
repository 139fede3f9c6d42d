"""The interface every OpenClaw backend implements, and what they share: the token OpenClaw
gets, the problems they find, the backend that does nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kimi_tray.stores.state import OpenClawView, fingerprint

PROVIDER = "kimi"
LEGACY_PROVIDER = "kimi-coding"


@dataclass(frozen=True)
class Token:
    """What OpenClaw gets: the access token and its expiry. Never the refresh token."""

    access: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class Problem:
    """Something that stops OpenClaw from using Kimi, with the command that fixes it."""

    text: str
    fix: str
    fatal: bool = True  # False: worth a warning, OpenClaw still works
    check: str = "openclaw profiles"  # the `doctor` line it belongs to


class OpenClawTarget(Protocol):
    @property
    def mode(self) -> str: ...
    @property
    def restart_after_sync(self) -> bool: ...

    def describe(self) -> str: ...

    def sync(self, token: Token, now: float) -> OpenClawView: ...

    def inspect(self, token: Token, now: float) -> OpenClawView: ...

    def restart_gateway(self) -> tuple[bool, str]: ...


class OffTarget:
    """No OpenClaw found (or sync turned off): a complete backend that does nothing."""

    mode = "off"
    restart_after_sync = False

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.problems: list[Problem] = []

    def describe(self) -> str:
        return f"OpenClaw sync off: {self.reason}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        return OpenClawView(state="off", detail=self.reason, mode=self.mode, checked_at=now)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        return self.sync(token, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return False, "OpenClaw sync is off; there is no gateway to restart."


def mask_matches(mask: str, token: str) -> bool:
    """Does OpenClaw's masked label (`abcdefgh...stuvwxyz`) show this token? Enough to tell
    which token OpenClaw holds without it ever printing the token."""
    prefix, sep, suffix = mask.partition("...")
    return bool(sep) and min(len(prefix), len(suffix)) >= 4 and token.startswith(prefix) \
        and token.endswith(suffix) and len(token) >= len(prefix) + len(suffix)


def holding_view(problems: list[Problem], token: Token, mode: str, expires_at: float | None,
                 now: float, ok_detail: str) -> OpenClawView:
    """OpenClaw holds our token; it is in sync unless something else stops it using Kimi."""
    fatal = [p for p in problems if p.fatal]
    if fatal:
        return OpenClawView("error", fatal[0].text, mode, fingerprint(token.access), expires_at, now)
    return OpenClawView("in_sync", ok_detail, mode, fingerprint(token.access), expires_at, now)
