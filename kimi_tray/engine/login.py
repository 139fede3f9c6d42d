"""The OAuth device login, done by kimi-tray itself: code, poll, save (the engine hands it over).

No UI here: the engine runs it on a worker thread and publishes the code and link in its Status;
the tray and the terminal show them and open the browser.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kimi_tray.core import logs
from kimi_tray.core.clock import Clock, SystemClock
from kimi_tray.core.errors import DeviceFlowError, KimiTrayError, TransientError
from kimi_tray.engine.commands import LoginCodeShown, LoginEnded, Report
from kimi_tray.stores.credentials import Credentials, CredentialSource

if TYPE_CHECKING:
    from kimi_tray.kimi.oauth import DeviceAuthorization, OAuthClient

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
    from kimi_tray.kimi.oauth import AuthorizationPending, SlowDown

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


class LoginWorker:
    """One login on its own thread (it waits minutes for the user). It changes no engine state:
    it saves the new credentials under the Kimi lock and reports to the engine's queue."""

    def __init__(self, attempt: int, oauth: OAuthClient, source: CredentialSource, lock_timeout: float,
                 lock_disabled: bool, clock: Clock, report: Callable[[Report], None]) -> None:
        self.attempt = attempt
        self.cancel = threading.Event()
        self._run_args = (oauth, source, lock_timeout, lock_disabled, clock, report)
        self._thread = threading.Thread(target=self._run, name="kimi-login", daemon=True)

    def start(self) -> LoginWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        oauth, source, lock_timeout, lock_disabled, clock, report = self._run_args
        attempt = self.attempt

        def on_code(progress: LoginProgress) -> None:
            auth = progress.authorization
            log.info("Login started: code %s at %s", auth.user_code, auth.verification_uri)
            report(LoginCodeShown(attempt, auth.user_code, auth.verification_uri,
                                  auth.verification_uri_complete, auth.expires_in))

        try:
            creds = device_login(oauth, source, lock_timeout, lock_disabled, clock=clock,
                                 cancel=self.cancel, on_code=on_code)
        except LoginCancelled as exc:
            log.info("Login cancelled.")
            report(LoginEnded(attempt, None, cancelled=True, error=str(exc)))
        except KimiTrayError as exc:
            log.warning("Login failed: %s", exc)
            report(LoginEnded(attempt, None, error=str(exc)))
        except Exception as exc:  # a thread must not die silently; the log says what happened
            log.exception("Unexpected error during the login")
            report(LoginEnded(attempt, None,
                              error=f"Unexpected error during the login ({type(exc).__name__})."))
        else:
            report(LoginEnded(attempt, creds))
