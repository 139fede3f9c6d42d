"""One small error tree, so each caller catches exactly what it can act on.

Every message is a sentence a user can read; none ever contains a token.
"""

from __future__ import annotations

from kimi_tray.core import exit_codes


class KimiTrayError(Exception):
    """Base error: `str(error)` is the user-facing sentence."""

    exit_code = exit_codes.FAILURE


class LoginNeeded(KimiTrayError):
    """The refresh token is dead or missing: only a new browser login helps."""

    exit_code = exit_codes.LOGIN_NEEDED


class TransientError(KimiTrayError):
    """Network trouble or a server fault: worth retrying after a pause."""

    def __init__(self, message: str, retry_after: float | None = None, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent  # the server may have received it (and rotated the token)


class LocalFileError(KimiTrayError):
    """A local file is missing, unreadable or malformed; the message names it."""


class LockTimeout(TransientError):
    """Another program held the Kimi lock for too long."""


class ConfigError(KimiTrayError):
    """The configuration file or an environment override is invalid."""


class OpenClawError(KimiTrayError):
    """OpenClaw could not be updated; the Kimi credentials are already saved."""


class DeviceFlowError(KimiTrayError):
    """A browser (device) login ended without a token: expired, denied or cancelled."""
