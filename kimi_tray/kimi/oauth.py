"""Kimi Code OAuth over HTTPS: the refresh grant and the device grant, with a typed error taxonomy."""

from __future__ import annotations

import json
import logging
import math
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kimi_tray import __version__
from kimi_tray.core.config import check_oauth_host
from kimi_tray.core.errors import DeviceFlowError, LoginNeeded, TransientError
from kimi_tray.kimi.exchange import Exchange, ExchangeFailed, HttpxExchange, Reply, Request
from kimi_tray.kimi.jwt import jwt_expiry

log = logging.getLogger(__name__)

TOKEN_PATH = "/api/oauth/token"
DEVICE_PATH = "/api/oauth/device_authorization"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_ACCESS_LIFETIME = 86400.0  # Kimi grants 900 s; more than a day is a mistake (e.g. milliseconds)
SAFE_LIFETIME = 300.0  # what we assume when the server's expires_in cannot be right


@dataclass(frozen=True)
class Timeouts:
    """Per connect and per read (httpx's own limits), for a request whose caller waits less."""

    connect: float
    read: float


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    refresh_token: str
    expires_in: float
    scope: str = ""
    token_type: str = "Bearer"
    warning: str = ""  # set when the server's expires_in was replaced by a safe value

    def __repr__(self) -> str:
        return f"TokenResponse(expires_in={self.expires_in!r})"


@dataclass(frozen=True)
class DeviceAuthorization:
    user_code: str
    device_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return f"DeviceAuthorization(user_code={self.user_code!r}, expires_in={self.expires_in!r})"


class AuthorizationPending(Exception):
    """The user has not finished the browser step yet."""


class SlowDown(Exception):
    """The server asks us to poll less often."""


def device_headers(device_id: str) -> dict[str, str]:
    """The device headers the Kimi CLIs send (the same device id, so the server sees the same
    device), but under our own name: `User-Agent: kimi-tray/<version>`. No `X-Msh-Version`:
    next to `X-Msh-Platform: kimi_cli` it would claim a Kimi CLI release we are not, and any
    number there would be made up."""
    system = platform.system() or "Unknown"
    return {
        "User-Agent": f"kimi-tray/{__version__}",
        "X-Msh-Platform": "kimi_cli",
        "X-Msh-Device-Name": socket.gethostname() or "unknown",
        "X-Msh-Device-Model": f"{system} {platform.release()} {platform.machine()}".strip(),
        "X-Msh-Os-Version": platform.version() or "unknown",
        "X-Msh-Device-Id": device_id,
    }


class OAuthClient:
    def __init__(
        self,
        host: str,
        client_id: str,
        headers: dict[str, str] | None = None,
        timeout: float = 15.0,
        exchange: Exchange | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        check_oauth_host(host)
        self.host = host.rstrip("/")
        self.client_id = client_id
        self.now = now
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._exchange = exchange or HttpxExchange()

    def close(self) -> None:
        self._exchange.close()

    def refresh(self, refresh_token: str, timeout: Timeouts | float | None = None) -> TokenResponse:
        """One refresh attempt. Raises LoginNeeded (token dead) or TransientError (try later).

        `timeout` overrides the client's (short under the Kimi lock, capped by a deadline).
        """
        response = self._post(
            TOKEN_PATH,
            {"client_id": self.client_id, "grant_type": "refresh_token", "refresh_token": refresh_token},
            timeout,
        )
        body = _json_or_none(response)
        error = body.get("error") if isinstance(body, dict) else None
        if response.status in (401, 403) or error == "invalid_grant":
            raise LoginNeeded("The Kimi refresh token was rejected; a new login is needed.")
        _raise_for_transient(response)
        if response.status != 200:
            raise TransientError(
                f"The Kimi OAuth server answered HTTP {response.status}"
                + (f" ({error})" if isinstance(error, str) else "") + "."
            )
        return token_from(body, self.now())

    def start_device_login(self) -> DeviceAuthorization:
        response = self._post(DEVICE_PATH, {"client_id": self.client_id})
        _raise_for_transient(response)
        body = _json_or_none(response)
        if response.status != 200 or not isinstance(body, dict):
            raise DeviceFlowError(
                f"The Kimi OAuth server refused to start a login (HTTP {response.status})."
            )
        try:
            uri = str(body["verification_uri"])
            return DeviceAuthorization(
                user_code=str(body["user_code"]),
                device_code=str(body["device_code"]),
                verification_uri=uri,
                verification_uri_complete=str(body.get("verification_uri_complete") or uri),
                expires_in=float(body.get("expires_in") or 600),
                interval=float(body.get("interval") or 5),
            )
        except (KeyError, TypeError, ValueError):
            raise DeviceFlowError("The Kimi OAuth server's login answer lacks required fields.") from None

    def poll_device_token(self, device_code: str) -> TokenResponse:
        """One poll. Raises AuthorizationPending, SlowDown, DeviceFlowError or TransientError."""
        response = self._post(
            TOKEN_PATH,
            {"client_id": self.client_id, "device_code": device_code, "grant_type": DEVICE_GRANT},
        )
        body = _json_or_none(response)
        error = body.get("error") if isinstance(body, dict) else None
        if error == "authorization_pending":
            raise AuthorizationPending
        if error == "slow_down":
            raise SlowDown
        if error == "expired_token":
            raise DeviceFlowError("The login code expired before it was approved; start again.")
        if error == "access_denied":
            raise DeviceFlowError("The login was denied in the browser.")
        _raise_for_transient(response)
        if response.status != 200:
            raise DeviceFlowError(
                f"The Kimi OAuth server rejected the login (HTTP {response.status}"
                + (f", {error}" if isinstance(error, str) else "") + ")."
            )
        return token_from(body, self.now())

    def _post(self, path: str, form: dict[str, str], timeout: Timeouts | float | None = None) -> Reply:
        if not isinstance(timeout, Timeouts):
            each = self.timeout if timeout is None else timeout
            timeout = Timeouts(connect=each, read=each)
        request = Request("POST", self.host + path, self.headers, form,
                          connect_timeout=timeout.connect, read_timeout=timeout.read)
        try:
            return self._exchange.send(request)
        except ExchangeFailed as exc:
            raise self._transient(exc) from None

    def _transient(self, exc: ExchangeFailed) -> TransientError:
        if exc.failure == "connect_timeout":
            return TransientError(
                f"The Kimi OAuth server at {self.host} did not accept a connection in time.")
        if exc.failure == "read_timeout":
            return TransientError(f"The Kimi OAuth server at {self.host} did not answer in time.",
                                  maybe_sent=True)
        if exc.failure == "unreachable":
            return TransientError(f"Could not reach the Kimi OAuth server at {self.host}.")
        return TransientError(
            f"The connection to the Kimi OAuth server at {self.host} broke ({exc.name}).", maybe_sent=True)


def _json_or_none(response: Reply) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:  # UnicodeDecodeError is one
        return None


def _raise_for_transient(response: Reply) -> None:
    if response.status == 429 or response.status >= 500:
        retry_after = retry_after_seconds(response.retry_after)
        raise TransientError(
            f"The Kimi OAuth server is busy or failing (HTTP {response.status}).", retry_after
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a server asks us to wait (a number or an HTTP date); the usage client reads it too."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            import time

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def token_from(body: Any, now: float) -> TokenResponse:
    """The tokens in a 200 reply to a token request (TransientError when they are not there)."""
    if not isinstance(body, dict):
        raise TransientError("The Kimi OAuth server sent a reply that is not JSON.")
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise TransientError("The Kimi OAuth server's reply lacks the new tokens.")
    # The server has rotated by now: a bad expires_in must not cost the login, so the tokens are
    # kept with a safe lifetime instead.
    expires_in, warning = safe_lifetime(body.get("expires_in"), access, now)
    if warning:
        log.warning("%s", warning)
    scope = body.get("scope")
    token_type = body.get("token_type")
    return TokenResponse(
        access_token=access,
        refresh_token=refresh,
        expires_in=expires_in,
        scope=scope if isinstance(scope, str) else "",
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        warning=warning,
    )


def plausible_lifetime(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and 0 < value <= MAX_ACCESS_LIFETIME)


def safe_lifetime(value: Any, access_token: str, now: float) -> tuple[float, str]:
    """The server's expires_in when it is plausible; else the access token's JWT `exp`, else 300 s."""
    if plausible_lifetime(value):
        return float(value), ""
    shown = repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (
        "missing" if value is None else f"a {type(value).__name__}")
    exp = jwt_expiry(access_token)
    if exp is not None and plausible_lifetime(exp - now):
        lifetime, source = exp - now, "the access token's own expiry"
    else:
        lifetime, source = SAFE_LIFETIME, f"a safe {SAFE_LIFETIME:.0f} s"
    return lifetime, (f"The Kimi OAuth server sent expires_in {shown}, which cannot be right; "
                      f"the new tokens are kept with {source} ({lifetime:.0f} s).")
