"""The tray icon and its menu: the only module that imports pystray.

pystray owns the main thread (macOS requires it); the engine runs in its own thread and every
menu action hands work to the engine or to a short-lived worker, so the UI never blocks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from kimi_tray.autostart import AutostartBackend
from kimi_tray.engine import Renewer
from kimi_tray.errors import DeviceFlowError, KimiTrayError
from kimi_tray.health import Status
from kimi_tray.icons import draw_icon
from kimi_tray.login import LoginCancelled, LoginProgress, device_login, open_browser
from kimi_tray.menu import USAGE_KEYS, MenuEntry, build_menu, tooltip, usage_entries
from kimi_tray.notify import NotificationPolicy, Notifier
from kimi_tray.usage.alerts import alerts_from_settings

log = logging.getLogger(__name__)
ICON_SIZE = 64
MENU_FRESH_FOR = 60.0  # seconds: older numbers are fetched again when the menu opens


def choose_backend() -> str:
    """Real menus need gtk/appindicator (PyGObject); xorg docks everywhere but has no menu."""
    if os.environ.get("PYSTRAY_BACKEND"):
        return os.environ["PYSTRAY_BACKEND"]
    if not sys.platform.startswith("linux"):
        return ""
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        note = ("PyGObject (python3-gi) is missing, so the tray icon has no menu: a click renews "
                "(or starts the login when one is needed). ./install.sh sets up real menus.")
        log.warning("%s", note)
        print(f"kimi-tray: {note}", file=sys.stderr)
        return "xorg"
    desktop = os.environ.get("XDG_CURRENT_DESKTOP", "").upper()
    if any(name in desktop for name in ("GNOME", "KDE", "UNITY", "UBUNTU")):
        try:
            gi.require_version("AyatanaAppIndicator3", "0.1")
            return "appindicator"
        except ValueError:
            pass
    return "gtk"


def _enable_clicks_on_xorg(icon) -> None:
    """pystray's xorg backend (0.19.5) creates its window without ButtonPressMask, so clicks never
    reach it and the default action never runs (upstream issue #151). Ask X for button presses."""
    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        return
    import Xlib.X

    window.change_attributes(
        event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
    display.flush()


class TrayApp:
    def __init__(self, renewer: Renewer, autostart: AutostartBackend, notifier: Notifier,
                 log_path: Path | None, backend: str) -> None:
        self.renewer = renewer
        self.autostart = autostart
        self.notifier = notifier
        self.policy = NotificationPolicy(notifier,
                                         last_forced_warning=renewer.state.last_forced_login_warning,
                                         on_forced_warning=renewer.remember_forced_login_warning)
        self.log_path = log_path
        self.backend = backend
        self._cancel_login: threading.Event | None = None
        self._drawn: tuple | None = None
        self._watched_menu: object | None = None
        self.usage_alerts = alerts_from_settings(renewer.settings, notifier, renewer.usage_store)
        self._status: Status = renewer.status
        self._lock = threading.Lock()
        import pystray  # imported late: it connects to the display at import time

        self._pystray = pystray
        self.icon = pystray.Icon("kimi-tray", draw_icon(self._status, ICON_SIZE), "kimi-tray",
                                 menu=self._menu())
        if backend == "xorg":
            _enable_clicks_on_xorg(self.icon)

    # ----------------------------------------------------------------- menu
    def entries(self) -> list[MenuEntry]:
        return build_menu(self._status, self._autostart_on(), self.renewer.target.mode != "off")

    def _autostart_on(self) -> bool:
        try:
            return self.autostart.is_enabled()
        except OSError:
            return False

    def _menu(self):
        pystray = self._pystray
        actions: dict[str, Callable[[], None]] = {
            "status": lambda: None,
            **dict.fromkeys(USAGE_KEYS, self.update_usage),
            "renew": self.renew_now,
            "login": self.start_login,
            "cancel_login": self.cancel_login,
            "restart": self.restart_gateway,
            "open_log": self.open_log,
            "autostart": self.toggle_autostart,
            "quit": self.quit,
        }

        def entry(key: str) -> MenuEntry | None:
            return next((e for e in self.entries() if e.key == key), None)

        def item(key: str):
            def label(_item) -> str:
                found = entry(key)
                return found.label if found else ""

            def enabled(_item) -> bool:
                found = entry(key)
                return bool(found and found.enabled)

            def visible(_item) -> bool:
                return entry(key) is not None

            checked = None
            if key == "autostart":
                def checked(_item) -> bool:
                    found = entry(key)
                    return bool(found and found.checked)

            return pystray.MenuItem(label, lambda: actions[key](), enabled=enabled, visible=visible,
                                    checked=checked)

        items = [item(key) for key in actions]
        if self.backend == "xorg":  # no menu there: a click runs the default action
            items.insert(0, pystray.MenuItem("default", lambda: actions[self._default_key()](),
                                             default=True, visible=False))
        return pystray.Menu(*items)

    def _default_key(self) -> str:
        return next((e.key for e in self.entries() if e.default), "renew")

    # ----------------------------------------------------------------- status
    def on_status(self, status: Status) -> None:
        """Engine listener: redraw when what the user sees changes (at least each poll)."""
        self._status = status
        self.policy.on_status(status)
        # Redraw when what a person sees changes: the state, the words, or the minute left
        # (the ring moves in the same steps), so an idle tray wakes the UI once a minute.
        key = (status.health, status.login_in_progress, status.summary(),
               round(status.fraction_left * (status.lifetime or 900) / 60), tooltip(status),
               tuple(usage_entries(status)))
        with self._lock:
            if key == self._drawn:
                return
            self._drawn = key
        self.icon.icon = draw_icon(status, ICON_SIZE)
        self.icon.title = tooltip(status)
        try:
            self.icon.update_menu()
        except Exception:  # some backends cannot update a menu that is not shown yet
            log.debug("update_menu failed", exc_info=True)
        self._watch_menu_open_soon()

    def _refresh_menu(self) -> None:
        self._drawn = None
        self.on_status(self._status)

    # ----------------------------------------------------------------- usage
    def update_usage(self) -> None:
        """A click on a usage line: fetch now (the engine's policy still spaces the requests)."""
        self.renewer.request_usage()

    def on_menu_open(self) -> None:
        """Numbers over a minute old are fetched at once when the user looks at them."""
        usage = self._status.usage
        if usage is None or usage.error or usage.fetched_at is None or \
                self.renewer.clock.now() - usage.fetched_at > MENU_FRESH_FOR:
            log.info("The menu opened with usage numbers over a minute old; fetching them now.")
            self.renewer.request_usage()

    def _watch_menu_open_soon(self) -> None:
        """pystray has no menu-open hook. Its GTK backends build a Gtk.Menu (on the GLib loop, after
        update_menu) that emits "show" when it pops up: connect to each new one there. Other
        backends (xorg, macOS, Windows) get no such signal; the periodic fetch covers them."""
        if self.backend not in ("gtk", "appindicator"):
            return
        try:
            from gi.repository import GLib
        except ImportError:
            return
        GLib.idle_add(self._watch_menu_open)

    def _watch_menu_open(self) -> bool:
        handle = getattr(self.icon, "_menu_handle", None)
        if handle is not None and handle is not self._watched_menu and hasattr(handle, "connect"):
            self._watched_menu = handle
            handle.connect("show", lambda *_: self.on_menu_open())
        return False

    # ----------------------------------------------------------------- actions
    def renew_now(self) -> None:
        log.info("Renew now, from the tray.")
        self.renewer.request_renew()

    def restart_gateway(self) -> None:
        def work() -> None:
            ok, message = self.renewer.target.restart_gateway()
            self.notifier.send("OpenClaw gateway", message)
            (log.info if ok else log.warning)("%s", message)

        threading.Thread(target=work, name="restart-gateway", daemon=True).start()

    def open_log(self) -> None:
        path = self.log_path
        if path is None:
            self.notifier.send("kimi-tray", "The log file could not be created.")
            return
        path.touch(exist_ok=True)
        if sys.platform == "darwin":
            command = ["open", str(path)]
        elif sys.platform.startswith("win"):
            os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606
            return
        else:
            command = ["xdg-open", str(path)]
        try:
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        except OSError as exc:
            self.notifier.send("kimi-tray", f"Could not open the log ({exc.strerror}); it is at {path}.")

    def toggle_autostart(self) -> None:
        try:
            if self.autostart.is_enabled():
                self.autostart.disable()
            else:
                self.autostart.enable()
        except (OSError, KimiTrayError) as exc:
            self.notifier.send("kimi-tray", f"Could not change Start on login: {exc}")
        self._refresh_menu()

    def start_login(self) -> None:
        if self._cancel_login is not None:
            return
        cancel = threading.Event()
        self._cancel_login = cancel
        self.renewer.login_in_progress = True
        self.renewer.wake()
        threading.Thread(target=self._login, args=(cancel,), name="login", daemon=True).start()

    def cancel_login(self) -> None:
        if self._cancel_login is not None:
            self._cancel_login.set()

    def _login(self, cancel: threading.Event) -> None:
        renewer = self.renewer

        def on_code(progress: LoginProgress) -> None:
            auth = progress.authorization
            opened = open_browser(auth.verification_uri_complete)
            where = "The browser opened" if opened else f"Open {auth.verification_uri_complete}"
            self.notifier.send("Kimi login", f"{where}; confirm the code {auth.user_code} there.")
            log.info("Login started: code %s at %s", auth.user_code, auth.verification_uri)

        try:
            creds = device_login(renewer.oauth, renewer.login_source(), renewer.settings.lock_timeout,
                                 renewer.settings.kimi_lock_disabled, cancel=cancel, on_code=on_code)
            view = renewer.finish_login(creds)
            self.notifier.send("Kimi login done",
                               f"Logged in; OpenClaw {view.state.replace('_', ' ')}.")
        except LoginCancelled:
            log.info("Login cancelled.")
        except (DeviceFlowError, KimiTrayError) as exc:
            self.notifier.send("Kimi login failed", str(exc))
            log.warning("Login failed: %s", exc)
        finally:
            self._cancel_login = None
            renewer.login_in_progress = False
            renewer.wake()

    def quit(self) -> None:
        self.cancel_login()
        self.renewer.stop(timeout=5)
        self.icon.stop()

    # ----------------------------------------------------------------- run
    def run(self) -> None:
        def setup(icon) -> None:
            icon.visible = True
            self.renewer.watch_usage()
            self.renewer.start()
            self._watch_menu_open_soon()

        self.renewer.add_listener(self.on_status)
        self.renewer.add_listener(self.usage_alerts.on_status)
        self.icon.run(setup=setup)
