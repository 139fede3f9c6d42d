"""The OAuth device login, done by kimi-tray itself: code, browser, poll, save, sync.

No UI here: the tray and the terminal pass callbacks for what the user sees.
"""

from __future__ import annotations

import logging
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock, SystemClock
from kimi_tray.core.errors import DeviceFlowError, TransientError
from kimi_tray.kimi.oauth import AuthorizationPending, DeviceAuthorization, OAuthClient, SlowDown
from kimi_tray.stores.credentials import Credentials, CredentialSource

log = logging.getLogger(__name__)
SLOW_DOWN_STEP = 5.0
MAX_TRANSIENT_FAILURES = 10


class LoginCancelled(DeviceFlowError):
    """The user cancelled the login; nothing was written."""


@dataclass
class LoginProgress:
    authorization: DeviceAuthorization
    deadline: float  # clock.monotonic() when the code expires
    interval: float


def open_browser(url: str) -> bool:
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def device_login(
    oauth: OAuthClient,
    source: CredentialSource,
    lock_timeout: float,
    lock_disabled: bool = False,
    clock: Clock | None = None,
    cancel: threading.Event | None = None,
    on_code: Callable[[LoginProgress], None] = lambda progress: None,
    on_tick: Callable[[LoginProgress], None] = lambda progress: None,
) -> Credentials:
    """Run the whole device flow; returns the saved credentials or raises DeviceFlowError."""
    clock = clock or SystemClock()
    cancel = cancel or threading.Event()
    authorization = oauth.start_device_login()
    progress = LoginProgress(authorization, clock.monotonic() + authorization.expires_in,
                             authorization.interval)
    on_code(progress)
    failures = 0
    while True:
        if clock.wait(cancel, progress.interval):
            raise LoginCancelled("The login was cancelled; nothing was changed.")
        if clock.monotonic() >= progress.deadline:
            raise DeviceFlowError("The login code expired before it was approved; start again.")
        on_tick(progress)
        try:
            token = oauth.poll_device_token(authorization.device_code)
        except AuthorizationPending:
            continue
        except SlowDown:
            progress.interval += SLOW_DOWN_STEP
            log.info("The server asked to poll more slowly; now every %.0f s.", progress.interval)
            continue
        except TransientError as exc:
            failures += 1
            if failures >= MAX_TRANSIENT_FAILURES:
                raise DeviceFlowError(f"The login could not finish: {exc}") from None
            log.warning("Login poll failed (%s); trying again.", exc)
            continue
        break
    if cancel.is_set():
        raise LoginCancelled("The login was cancelled; nothing was changed.")
    logs.register_secret(token.access_token, token.refresh_token)
    with source.lock(lock_timeout, lock_disabled):
        saved = source.save(token.access_token, token.refresh_token, clock.now() + token.expires_in,
                            token.expires_in, token.scope, token.token_type)
    log.info("Logged in; credentials saved to %s.", source.path)
    return saved
