"""Desktop notifications: one interface, a backend per platform, and a policy that says when.

The policy keeps the user informed without nagging: once per episode, never a token.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kimi_tray.core.health import Health, Status, format_duration
from kimi_tray.core.logs import redact

log = logging.getLogger(__name__)
# plyer warns on every call when dbus-python is absent, then uses notify-send: that is fine.
warnings.filterwarnings("ignore", message="The Python dbus package is not installed")
APP = "kimi-tray"
WARN_FAILING_BELOW = 300.0
FORCED_LOGIN_WARNING = 3 * 86400.0
WARNING_EVERY = 86400.0


@dataclass(frozen=True)
class Action:
    """A button on a notification; the same action is always in the tray menu too."""

    key: str  # login, open_log, open_config
    label: str


ActionHandler = Callable[[str], None]


class Notifier(Protocol):
    """Shows a notification. Every backend says which buttons it can show (`offered`) and drops
    the others itself, never raises (a failed notification is a log line) and never shows a
    token, so callers just send."""

    name: str
    shows_actions: bool  # whether offered() keeps any action at all

    def offered(self, actions: Sequence[Action]) -> tuple[Action, ...]:
        """The actions of these that this backend shows as buttons."""
        ...

    def send(self, title: str, message: str, actions: Sequence[Action] = ()) -> None: ...


class BaseNotifier:
    """What every backend promises, in one place: redaction, no exception, no button it cannot
    show. A backend only says how to show a notification (`show`)."""

    name = "base"
    shows_actions = False

    def offered(self, actions: Sequence[Action]) -> tuple[Action, ...]:
        return tuple(actions) if self.shows_actions else ()

    def send(self, title: str, message: str, actions: Sequence[Action] = ()) -> None:
        title, message = redact(title), redact(message)
        try:
            self.show(title, message, self.offered(actions))
        except Exception as exc:  # a notification must never take down its caller
            with contextlib.suppress(Exception):  # nor a log that cannot be written either
                log.warning("Notification failed (%s); %s: %s", type(exc).__name__, title, message)

    def show(self, title: str, message: str, actions: tuple[Action, ...]) -> None:
        raise NotImplementedError


class LogNotifier(BaseNotifier):
    """No notification service here: the log is where the user will look."""

    name = "log"

    def show(self, title: str, message: str, actions: tuple[Action, ...]) -> None:
        log.warning("%s: %s", title, message)


class PlyerNotifier(BaseNotifier):
    """The fallback: plyer (notify-send or D-Bus on Linux, a balloon on Windows); no buttons."""

    name = "plyer"

    def __init__(self, icon_path: str = "") -> None:
        self.icon_path = icon_path

    def show(self, title: str, message: str, actions: tuple[Action, ...]) -> None:
        from plyer import notification

        notification.notify(title=title, message=message, app_name=APP, app_icon=self.icon_path,
                            timeout=15)


class MacNotifier(BaseNotifier):
    """plyer needs pyobjus on macOS, which rarely installs; osascript always exists there.
    (desktop-notifier's buttons there need a signed app bundle.)"""

    name = "osascript"
    SCRIPT = "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run"

    def show(self, title: str, message: str, actions: tuple[Action, ...]) -> None:
        result = subprocess.run(["osascript", "-e", self.SCRIPT, title, message], check=False,
                                timeout=10, capture_output=True, text=True)
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise OSError(said[-1] if said else f"osascript exit {result.returncode}")


class ActionNotifier(BaseNotifier):
    """Notifications with buttons through desktop-notifier (D-Bus on Linux, WinRT toasts on
    Windows). Its callbacks need a running asyncio loop: it gets its own thread, and a pressed
    button reaches `on_action` there; the handler must hand the work on (the tray's handlers
    only set engine flags or start worker threads)."""

    name = "desktop-notifier"
    shows_actions = True

    def __init__(self, on_action: ActionHandler | None = None, icon_path: str = "") -> None:
        """desktop-notifier, asyncio and the D-Bus client load at the first notification, not at
        start: a healthy tray may never send one, and they cost several MiB of memory."""
        import importlib.util

        if importlib.util.find_spec("desktop_notifier") is None:
            raise ImportError("desktop-notifier is not installed")
        self.on_action = on_action
        self._icon_path = icon_path
        self._started = threading.Lock()
        self._loop: Any = None
        self._notifier: Any = None

    def _start(self) -> None:
        with self._started:
            if self._notifier is not None:
                return
            import asyncio

            from desktop_notifier import DesktopNotifier

            # Its debug lines repeat every message; our own log line per episode is enough.
            logging.getLogger("desktop_notifier").setLevel(logging.INFO)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="notifier", daemon=True).start()
            self._loop = loop
            self._notifier = DesktopNotifier(app_name=APP, app_icon=None)

    def show(self, title: str, message: str, actions: tuple[Action, ...]) -> None:
        import asyncio
        import concurrent.futures

        self._start()
        from desktop_notifier import Button, Icon

        def pressed(key: str) -> Callable[[], None]:
            return lambda: self._dispatch(key)

        buttons = [Button(title=a.label, on_pressed=pressed(a.key), identifier=a.key) for a in actions]
        # A click on the notification itself runs its first action.
        on_clicked = pressed(actions[0].key) if actions else None
        icon = Icon(path=Path(self._icon_path)) if self._icon_path else None
        future = asyncio.run_coroutine_threadsafe(
            self._notifier.send(title, message, buttons=buttons, on_clicked=on_clicked, icon=icon,
                                timeout=-1), self._loop)

        def done(finished: concurrent.futures.Future[str]) -> None:
            exc = finished.exception()
            if exc is not None:
                log.warning("Notification failed (%s); %s: %s", type(exc).__name__, title, message)

        future.add_done_callback(done)

    def _dispatch(self, key: str) -> None:
        log.info("Notification button: %s", key)
        if self.on_action is not None:
            try:
                self.on_action(key)
            except Exception:
                log.exception("The notification action %s failed", key)


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


def choose_notifier(icon_path: str = "", on_action: ActionHandler | None = None) -> Notifier:
    """Buttons where desktop-notifier can show them; plyer (or osascript, or the log) otherwise."""
    if sys.platform == "darwin":
        return MacNotifier()
    if sys.platform.startswith("win") or os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        try:
            return ActionNotifier(on_action, icon_path)
        except Exception as exc:  # not installed, or no backend for this platform
            log.info("Notifications without buttons (%s: %s).", type(exc).__name__, exc)
    if sys.platform.startswith("win"):
        return PlyerNotifier(icon_path)
    return PlyerNotifier(icon_path) if linux_service_available() else LogNotifier()


LOGIN = Action("login", "Log in")
OPEN_LOG = Action("open_log", "Open log")


class NotificationPolicy:
    """Turns a stream of Status snapshots into the few notifications a user wants: one per
    episode (a dead token, an unreadable file, renewal failing), each with one log line and,
    where the notifier can show them, a button for the action that fixes it."""

    def __init__(self, notifier: Notifier, login_hint: str = "Choose Log in... in the tray menu.",
                 last_forced_warning: float | None = None,
                 on_forced_warning: Callable[[float], None] | None = None,
                 actions: Sequence[str] = (), log_episodes: bool = False) -> None:
        """actions: the keys the owner can run (a daemon has none); log_episodes: write the one
        log line per episode here (the daemon's reporter logs every change itself)."""
        self.notifier = notifier
        self.login_hint = login_hint
        self.actions = set(actions)
        self.log_episodes = log_episodes
        self._login_episode = False
        self._error_episode = False
        self._failing_episode = False
        self._login_ran_here = False
        self._last_forced_warning = last_forced_warning
        self._on_forced_warning = on_forced_warning

    def on_status(self, status: Status) -> None:
        from kimi_tray.ui.menu import first_sentence, short_path, what_to_do

        if status.login_in_progress:
            self._login_ran_here = True
            return
        if status.health is Health.NEEDS_LOGIN:
            if not self._login_episode:
                self._login_episode = True
                reason = first_sentence(status.message or "The Kimi login has ended")
                self._send("Kimi login needed", f"{short_path(reason)}. {self.login_hint}", [LOGIN],
                           log_line=f"Login needed: {reason}.")
            return
        if status.health is Health.ERROR:
            if not self._error_episode:
                self._error_episode = True
                reason = short_path(first_sentence(status.message or "The credential file is unusable"))
                self._send("Kimi credentials unreadable",
                           f"{reason}. {what_to_do(status, cli=not self.actions)}", [LOGIN, OPEN_LOG],
                           log_line=f"The credential file cannot be used: {status.message}")
            return
        self._error_episode = False
        if self._login_episode and status.health.is_ok:
            self._login_episode = False
            if self._login_ran_here:  # the login itself said "done": one login, one notification
                self._login_ran_here = False
            else:
                self._send("Kimi login restored", "The Kimi token is valid again.")
            return
        left = status.seconds_left
        failing = status.failures > 0 and left is not None and left < WARN_FAILING_BELOW
        if failing and left is not None and not self._failing_episode:
            self._failing_episode = True
            when = "has expired" if left <= 0 else f"expires in {format_duration(left)}"
            reason = first_sentence(status.message.removeprefix("renewal failing: ")) or "no answer"
            self._send("Kimi token renewal failing",
                       f"Renewal keeps failing ({reason}); the token {when}. kimi-tray keeps retrying.",
                       [OPEN_LOG], log_line=f"Renewal keeps failing ({reason}); the token {when}.")
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
                   f"The Kimi refresh token ends in {left}; log in again before then to avoid a gap.",
                   [LOGIN])

    def _send(self, title: str, message: str, actions: Sequence[Action] = (), log_line: str = "") -> None:
        if log_line and self.log_episodes:
            log.warning("%s", redact(log_line))
        self.notifier.send(title, redact(message), [a for a in actions if a.key in self.actions])
