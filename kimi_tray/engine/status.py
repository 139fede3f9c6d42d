"""The status builder: what the engine knows in, one frozen Status out. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from kimi_tray.core.health import GatewayRestart, Health, LoginView, Status, health_for
from kimi_tray.core.usage import Usage
from kimi_tray.engine.recovery import Unsaved
from kimi_tray.kimi.jwt import jwt_expiry
from kimi_tray.stores.credentials import Credentials
from kimi_tray.stores.state import OpenClawView, fingerprint


@dataclass(frozen=True)
class Facts:
    """Everything a Status is made of, as the engine holds it at one moment."""

    now: float
    credentials_file: str
    credentials: Credentials | None = None
    load_error: str = ""  # the credential file exists but cannot be read
    dead_refresh_fp: str = ""  # a refresh token the server rejected
    dead_reason: str = ""
    last_renewal: float | None = None
    openclaw: OpenClawView = field(default_factory=OpenClawView)
    pending: Unsaved | None = None  # a new token the credential file has not taken yet
    renewing: bool = False
    failures: int = 0
    message: str = ""
    usage: Usage | None = None
    login: LoginView | None = None
    gateway_restart: GatewayRestart | None = None
    credentials_owner: str = ""
    openclaw_handoff: bool = True
    openclaw_mode: str = ""
    openclaw_target: str = ""
    last_forced_login_warning: float | None = None


class _Common(TypedDict, total=False):
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
    credentials_owner: str
    openclaw_handoff: bool
    openclaw_mode: str
    openclaw_target: str
    login: LoginView | None
    gateway_restart: GatewayRestart | None
    last_forced_login_warning: float | None


def login_needed_reason(facts: Facts) -> str:
    """Why a new login is needed, or "" when the token can still be refreshed."""
    creds = facts.credentials
    if creds is None:
        return "" if facts.load_error else f"No Kimi credentials at {facts.credentials_file}."
    if not creds.can_refresh:
        return "The credential file holds no refresh token (logged out or revoked)."
    if facts.dead_refresh_fp and facts.dead_refresh_fp == fingerprint(creds.refresh_token):
        return facts.dead_reason or "The Kimi refresh token was rejected."
    return ""


def openclaw_words(facts: Facts) -> tuple[str, str]:
    """OpenClaw's state as remembered, or stale when it holds an older or expired token."""
    view, creds = facts.openclaw, facts.credentials
    if creds is not None and view.state == "in_sync":
        if view.token_fp != fingerprint(creds.access_token):
            return "stale", "OpenClaw holds an older Kimi token."
        if view.expires_at is not None and view.expires_at <= facts.now:
            return "stale", "OpenClaw's Kimi token has expired."
    return view.state, view.detail


def build_status(facts: Facts) -> Status:
    creds = facts.credentials
    openclaw, openclaw_detail = openclaw_words(facts)
    common = _Common(
        now=facts.now, credentials_file=facts.credentials_file, last_renewal=facts.last_renewal,
        renewing=facts.renewing, login_in_progress=facts.login is not None and facts.login.active,
        failures=facts.failures, usage=facts.usage, openclaw=openclaw, openclaw_detail=openclaw_detail,
        credentials_owner=facts.credentials_owner, openclaw_handoff=facts.openclaw_handoff,
        openclaw_mode=facts.openclaw_mode, openclaw_target=facts.openclaw_target, login=facts.login,
        gateway_restart=facts.gateway_restart, last_forced_login_warning=facts.last_forced_login_warning,
    )
    if facts.pending is not None:
        return Status(Health.ERROR, message=f"new token not saved yet: {facts.pending.reason}",
                      expires_at=facts.pending.expires_at, lifetime=facts.pending.expires_in, **common)
    if facts.load_error:
        return Status(Health.ERROR, message=facts.load_error, **common)
    reason = login_needed_reason(facts)
    if creds is None or reason:
        return Status(Health.NEEDS_LOGIN, message=reason, **common,
                      expires_at=creds.expires_at if creds else None,
                      lifetime=creds.expires_in if creds else None)
    return Status(
        health_for(creds.expires_at - facts.now, creds.expires_in),
        expires_at=creds.expires_at,
        lifetime=creds.expires_in,
        message=facts.message,
        refresh_token_expires_at=jwt_expiry(creds.refresh_token),
        **common,
    )
