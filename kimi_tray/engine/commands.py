"""What faces ask the engine to do, and what the engine's own workers report back to it.

Each is a frozen value put on the engine's queue; only the engine thread acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kimi_tray.stores.credentials import Credentials


@dataclass(frozen=True)
class RenewNow:
    """Refresh now, even a fresh token (the menu's Renew now)."""


@dataclass(frozen=True)
class StartLogin:
    """Start the device login (ignored while one runs)."""


@dataclass(frozen=True)
class CancelLogin:
    """Stop the running login; nothing is written."""


@dataclass(frozen=True)
class RestartGateway:
    """Restart the OpenClaw gateway; the outcome shows in Status.gateway_restart."""


@dataclass(frozen=True)
class FetchUsage:
    """Fetch the quota as soon as the policy allows; urgent also forgets the failure backoff."""

    urgent: bool = False


@dataclass(frozen=True)
class WatchUsage:
    """A desktop shows the quota: fetch it now and then periodically."""


@dataclass(frozen=True)
class FileChanged:
    """A watched file (credentials, OpenClaw's file, our state) changed on disk."""

    path: Path


@dataclass(frozen=True)
class Resumed:
    """The system woke from sleep (a logind, AppKit or Win32 signal)."""


@dataclass(frozen=True)
class UseEvents:
    """File events now wake the engine: sleep up to `poll_interval` between things due."""

    poll_interval: float


@dataclass(frozen=True)
class RememberForcedLoginWarning:
    """So "once a day at most" holds across restarts of the tray or daemon."""

    when: float


@dataclass(frozen=True)
class Stop:
    """End the engine thread (a running login is cancelled)."""


Command = (RenewNow | StartLogin | CancelLogin | RestartGateway | FetchUsage | WatchUsage
           | FileChanged | Resumed | UseEvents | RememberForcedLoginWarning | Stop)


# ----------------------------------------------------------------- from the engine's workers
@dataclass(frozen=True)
class LoginCodeShown:
    attempt: int
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float


@dataclass(frozen=True)
class LoginEnded:
    attempt: int
    credentials: Credentials | None  # saved; None when it failed or was cancelled
    cancelled: bool = False
    error: str = ""


@dataclass(frozen=True)
class GatewayRestarted:
    attempt: int
    ok: bool
    message: str


Report = LoginCodeShown | LoginEnded | GatewayRestarted
