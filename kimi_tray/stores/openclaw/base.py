"""The interface every OpenClaw backend implements, and what they share: the token OpenClaw
gets, the problems they find."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kimi_tray.core.checks import Check
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
    """A way of handing our token to OpenClaw. Each target answers for itself, so that its
    callers never ask which kind it is."""

    @property
    def mode(self) -> str:
        """A label for status output and OpenClawView.mode: cli, file, off, auto."""
        ...
    @property
    def active(self) -> bool:
        """Whether it hands anything to OpenClaw (False: sync is off; nothing to show or undo)."""
        ...
    @property
    def restart_after_sync(self) -> bool:
        """Whether the gateway must be restarted after a sync to read the new token."""
        ...

    def describe(self) -> str: ...

    def sync(self, token: Token, now: float) -> OpenClawView: ...

    def inspect(self, token: Token, now: float) -> OpenClawView: ...

    def restart_gateway(self) -> tuple[bool, str]: ...

    def watched_files(self) -> list[Path]:
        """Files of OpenClaw's whose outside change should wake the engine at once (none for the
        SQLite store: checking it means running OpenClaw's CLI, and every sync would wake it again)."""
        ...

    def doctor_checks(self, load_token: Callable[[], Token], last_view: OpenClawView,
                      now: float) -> list[Check]:
        """What `doctor` should report about this target, asked from OpenClaw itself.
        load_token: the current Kimi token (may raise KimiTrayError); last_view: what the last
        renewal's hand-off reported."""
        ...


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
