"""Desktop notifications: one interface, a backend per platform, and a policy that says when.

The policy keeps the user informed without nagging: once per episode, never a token.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Protocol

from kimi_tray.health import Health, Status, format_duration
from kimi_tray.logs import redact

log = logging.getLogger(__name__)
# plyer warns on every call when dbus-python is absent, then uses notify-send: that is fine.
warnings.filterwarnings("ignore", message="The Python dbus package is not installed")
APP = "kimi-tray"
WARN_FAILING_BELOW = 300.0
FORCED_LOGIN_WARNING = 3 * 86400.0
WARNING_EVERY = 86400.0


class Notifier(Protocol):
    name: str

    def send(self, title: str, message: str) -> None: ...


class LogNotifier:
    """No notification service here: the log is where the user will look."""

    name = "log"

    def send(self, title: str, message: str) -> None:
        log.warning("%s: %s", title, message)


class PlyerNotifier:
    name = "plyer"

    def __init__(self, icon_path: str = "") -> None:
        self.icon_path = icon_path

    def send(self, title: str, message: str) -> None:
        from plyer import notification

        try:
            notification.notify(title=title, message=message, app_name=APP,
                                app_icon=self.icon_path, timeout=15)
        except Exception as exc:  # plyer raises whatever its backend raises
            log.warning("Notification failed (%s); %s: %s", type(exc).__name__, title, message)


class MacNotifier:
    """plyer needs pyobjus on macOS, which rarely installs; osascript always exists there."""

    name = "osascript"

    def send(self, title: str, message: str) -> None:
        script = "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run"
        try:
            subprocess.run(["osascript", "-e", script, title, message], check=False, timeout=10,
                           capture_output=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("Notification failed (%s); %s: %s", exc, title, message)


def linux_service_available() -> bool:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    if shutil.which("notify-send"):
        return True
    try:
        import dbus  # noqa: F401
    except ImportError:
        return False
    return True


def choose_notifier(icon_path: str = "") -> Notifier:
    if sys.platform == "darwin":
        return MacNotifier()
    if sys.platform.startswith("win"):
        return PlyerNotifier(icon_path)
    return PlyerNotifier(icon_path) if linux_service_available() else LogNotifier()


class NotificationPolicy:
    """Turns a stream of Status snapshots into the few notifications a user wants."""

    def __init__(self, notifier: Notifier, login_hint: str = "Choose Log in... in the tray menu.",
                 last_forced_warning: float | None = None,
                 on_forced_warning: Callable[[float], None] | None = None) -> None:
        self.notifier = notifier
        self.login_hint = login_hint
        self._login_episode = False
        self._failing_episode = False
        self._last_forced_warning = last_forced_warning
        self._on_forced_warning = on_forced_warning

    def on_status(self, status: Status) -> None:
        if status.login_in_progress:
            return
        if status.health is Health.NEEDS_LOGIN:
            if not self._login_episode:
                self._login_episode = True
                self._send("Kimi login needed",
                           f"{status.message or 'The Kimi login has ended.'} {self.login_hint}")
            return
        if self._login_episode and status.health.is_ok:
            self._login_episode = False
            self._send("Kimi login restored", "The Kimi token is valid again.")
            return
        left = status.seconds_left
        failing = status.failures > 0 and left is not None and left < WARN_FAILING_BELOW
        if failing and not self._failing_episode:
            self._failing_episode = True
            when = "has expired" if left <= 0 else f"expires in {format_duration(left)}"
            self._send("Kimi token renewal failing",
                       f"The token {when} and renewal keeps failing: {status.message}")
        elif self._failing_episode and status.failures == 0 and status.health.is_ok:
            self._failing_episode = False
            self._send("Kimi token renewed", "Renewal works again; the token is valid.")
        self._maybe_warn_forced_login(status)

    def _maybe_warn_forced_login(self, status: Status) -> None:
        expiry = status.refresh_token_expires_at
        if expiry is None or expiry - status.now > FORCED_LOGIN_WARNING:
            return
        last = self._last_forced_warning
        if last is not None and status.now - last < WARNING_EVERY:
            return
        self._last_forced_warning = status.now
        if self._on_forced_warning is not None:
            self._on_forced_warning(status.now)
        left = format_duration(expiry - status.now)
        self._send("Kimi login will end soon",
                   f"The Kimi refresh token ends in {left}; log in again before then to avoid a gap.")

    def _send(self, title: str, message: str) -> None:
        self.notifier.send(title, redact(message))
