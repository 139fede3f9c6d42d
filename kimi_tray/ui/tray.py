"""The tray icon and its menu: the only module that imports pystray.

pystray owns the main thread (macOS requires it) and only that thread touches the icon: the
engine's listener, the redraw timer and the worker threads hand each change to it through
`ui_thread` (GLib idle on Linux, the AppKit main thread on macOS, pystray's loop elsewhere). Every
menu action is a command to the engine (or a short-lived worker), so the UI never blocks; what the
engine does shows in the Status snapshots it publishes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError
from kimi_tray.core.health import EXPIRING_BELOW, Health, LoginView, Status, health_for, refresh_margin
from kimi_tray.engine.commands import (
    CancelLogin,
    FetchUsage,
    RememberForcedLoginWarning,
    RenewNow,
    RestartGateway,
    StartLogin,
    WatchUsage,
)
from kimi_tray.engine.scheduler import EngineHandle
from kimi_tray.platform.autostart import AutostartBackend, is_on
from kimi_tray.platform.browser import open_url
from kimi_tray.stores.usage_store import UsageStore
from kimi_tray.ui import ui_thread
from kimi_tray.ui.icons import draw_icon, icon_state
from kimi_tray.ui.menu import (
    USAGE_KEYS,
    MenuEntry,
    build_menu,
    first_sentence,
    short_path,
    tooltip,
    usage_entries,
)
from kimi_tray.ui.notify import OPEN_LOG, Action, NotificationPolicy, Notifier
from kimi_tray.ui.usage_alerts import alerts_from_settings

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)
ICON_SIZE = 64
MENU_FRESH_FOR = 60.0  # seconds: older numbers are fetched again when the menu opens
XORG_START_SIZE = 24
REDRAW_SLACK = 0.05  # draw just after the moment the picture changes, never just before
TIMED_HEALTH = (Health.FRESH, Health.AGING, Health.EXPIRING, Health.EXPIRED)


def as_of(status: Status, now: float) -> Status:
    """The same Status at a later moment: time left and the health that follows from it."""
    if status.health not in TIMED_HEALTH or status.expires_at is None:
        return replace(status, now=now)
    return replace(status, now=now, health=health_for(status.expires_at - now, status.lifetime))


def next_picture_change(status: Status) -> float | None:
    """When the tooltip or icon next change by time alone: the displayed number of seconds or
    minutes ticks, or the token crosses a health threshold (refresh point, 2 minutes, expiry)."""
    if status.health not in TIMED_HEALTH or status.expires_at is None:
        return None
    left = status.expires_at - status.now
    if left <= 0:
        return None
    step = 1.0 if left < 60 else 60.0 if left < 2 * 86400 else 3600.0
    candidates = [status.now + (left % step or step)]
    candidates += [status.expires_at - threshold
                   for threshold in (refresh_margin(status.lifetime), EXPIRING_BELOW, 0.0)
                   if left > threshold]
    return min(candidates) + REDRAW_SLACK


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


def _draw_on_panel_background(icon: Any) -> None:
    """pystray's xorg backend stretches the picture to the window and pastes it on black (and
    the window starts 1x1). Start at a usual tray size, take the panel's own background
    (ParentRelative), and draw the picture square and centred over it, alpha kept."""
    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        return
    import types

    import Xlib.X
    from PIL import Image

    window.change_attributes(background_pixmap=Xlib.X.ParentRelative)
    window.configure(width=XORG_START_SIZE, height=XORG_START_SIZE)
    display.flush()

    def draw(self: Any) -> None:
        import Xlib.error

        try:
            geometry = self._window.get_geometry()
            width, height = geometry.width, geometry.height
            self._window.clear_area(0, 0, width, height)
            self._display.sync()
            raw = self._window.get_image(0, 0, width, height, Xlib.X.ZPixmap, 0xFFFFFFFF)
            picture = Image.frombytes("RGB", (width, height), raw.data, "raw", "BGRX")
            side = max(1, min(width, height))
            image = self._icon.convert("RGBA").resize((side, side), Image.Resampling.LANCZOS)
            picture.paste(image, ((width - side) // 2, (height - side) // 2), image)
            self._window.put_pil_image(self._gc, 0, 0, picture)
        except (Xlib.error.BadDrawable, Xlib.error.BadMatch, ValueError):
            pass  # the window is gone or not mapped yet; the next Expose draws again

    icon._draw = types.MethodType(draw, icon)


def _enable_clicks_on_xorg(icon: Any) -> None:
    """pystray's xorg backend (0.19.5) creates its window without ButtonPressMask, so clicks never
    reach it and the default action never runs (upstream issue #151). Ask X for button presses."""
    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        return
    import Xlib.X

    window.change_attributes(
        event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
    display.flush()


def _dock_when_a_tray_appears(icon: Any) -> None:
    """pystray's xorg backend (0.19.5) docks only when the icon is shown or redrawn, so a panel
    that starts after us (as at login) never showed it until the picture changed. A new tray
    announces itself with a MANAGER message on the root window (the system tray spec): dock then."""
    window, display = getattr(icon, "_window", None), getattr(icon, "_display", None)
    if window is None or display is None:
        return
    import Xlib.X

    display.screen().root.change_attributes(event_mask=Xlib.X.StructureNotifyMask)
    display.flush()

    def on_manager(event: Any) -> None:
        if event.data[1][1] != icon._net_system_tray_sx:  # another screen's tray
            return
        log.info("A system tray appeared; docking the icon in it.")
        try:
            icon._assert_docked()
        except AssertionError:  # it left again at once; its successor will announce itself
            log.debug("The new system tray was gone before the icon docked")
        except Exception:  # anything escaping here would end pystray's event loop
            log.warning("Could not dock the icon in the new system tray", exc_info=True)

    ui_thread.on_xorg_client_message(icon, display.intern_atom("MANAGER"), on_manager)


def add_error_badge(image: Image.Image) -> None:
    """A grey square with a white '!' in the lower right corner: something is misconfigured."""
    from PIL import ImageDraw

    from kimi_tray.ui.icons import COLOURS

    size = image.size[0]
    side = size * 0.46
    left, top = size - side, size - side
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((left, top, size - 1, size - 1), radius=side * 0.2,
                           fill=COLOURS["error"] + (255,), outline=(255, 255, 255, 255), width=2)
    middle, bar = left + side / 2, max(2.0, side * 0.14)
    draw.rectangle((middle - bar / 2, top + side * 0.2, middle + bar / 2, top + side * 0.6),
                   fill=(255, 255, 255, 255))
    draw.rectangle((middle - bar / 2, top + side * 0.7, middle + bar / 2, top + side * 0.82),
                   fill=(255, 255, 255, 255))


OPEN_CONFIG = Action("open_config", "Open config")
NOTE_KEYS = ("note0", "note1", "note2")


class TrayApp:
    def __init__(self, engine: EngineHandle, settings: Settings, autostart: AutostartBackend,
                 notifier: Notifier, log_path: Path | None, backend: str, config_error: str = "",
                 config_file: Path | None = None) -> None:
        self.engine = engine
        self.autostart = autostart
        self.notifier = notifier
        self.policy = NotificationPolicy(
            notifier, last_forced_warning=engine.status.last_forced_login_warning,
            on_forced_warning=lambda when: engine.send(RememberForcedLoginWarning(when)),
            actions=("login", "open_log"), log_episodes=True)
        self.log_path = log_path
        self.backend = backend
        self.config_error = config_error
        self.config_file = config_file
        self._announced_login: tuple[int, str] = (0, "")  # (attempt, phase) already told the user
        self._announced_restart = 0
        self._drawn: tuple[object, ...] | None = None
        self._watched_menu: object | None = None
        self.usage_alerts = alerts_from_settings(settings, notifier, UsageStore(settings.state_dir))
        self._status: Status = engine.status
        self._lock = threading.Lock()
        self._cancel_redraw: Callable[[], None] | None = None
        self._redraw_pending = False
        self._stopping = False
        import pystray  # imported late: it connects to the display at import time

        self._pystray = pystray
        self.icon = pystray.Icon("kimi-tray", self._picture(self._status), self._title(self._status),
                                 menu=self._menu())
        if backend == "xorg":
            _enable_clicks_on_xorg(self.icon)
            _draw_on_panel_background(self.icon)
            _dock_when_a_tray_appears(self.icon)
        self.ui = ui_thread.for_icon(self.icon)

    # ----------------------------------------------------------------- menu
    def _waiting_login(self) -> LoginView | None:
        """The login waiting for the user's approval, if any (its code and link are shown)."""
        login = self._status.login
        return login if login is not None and login.phase == "waiting" else None

    def _login_lines(self) -> tuple[str, ...]:
        login = self._waiting_login()
        return login.lines() if login else ()

    def _busy_line(self) -> str:
        """Work under way, in the menu and the tooltip."""
        restart = self._status.gateway_restart
        return "Restarting the OpenClaw gateway..." if restart is not None and restart.running else ""

    def notes(self) -> tuple[str, ...]:
        """Lines above the actions: a login's code and link, a config error, work under way."""
        lines = list(self._login_lines())
        if self.config_error:
            lines.append(f"Config error: fix {short_path(str(self.config_file or 'the config'))}, "
                         "then restart (defaults in use)")
        if self._busy_line():
            lines.append(self._busy_line())
        return tuple(lines[: len(NOTE_KEYS)])

    def entries(self) -> list[MenuEntry]:
        return build_menu(self._status, self._autostart_on(), self._status.openclaw_handoff, self.notes())

    def _autostart_on(self) -> bool:
        return is_on(self.autostart)

    def _picture(self, status: Status) -> Image.Image:
        """The health icon; with a config error, a grey badge with '!' in its corner too."""
        image = draw_icon(status, ICON_SIZE)
        if self.config_error:
            add_error_badge(image)
        return image

    def _title(self, status: Status) -> str:
        title = tooltip(status)
        if self._busy_line():
            title = f"{title} | {self._busy_line()}"
        return f"{title} | config error, defaults in use" if self.config_error else title

    def _menu(self) -> Any:
        pystray = self._pystray
        # pystray's items are fixed; each shows when build_menu has its key. So they go in
        # build_menu's order: what to do and the notes right under the status, then the quota.
        actions: dict[str, Callable[[], None]] = {
            "status": lambda: None,
            "advice": lambda: None,
            "note0": lambda: self._note_clicked(0),
            "note1": lambda: self._note_clicked(1),
            "note2": lambda: self._note_clicked(2),
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

        def item(key: str) -> Any:
            def label(_item: object) -> str:
                found = entry(key)
                return found.label if found else ""

            def enabled(_item: object) -> bool:
                found = entry(key)
                if key in NOTE_KEYS:  # a login's lines copy the code or reopen the page; others are text
                    return bool(found and found.label in self._login_lines())
                return bool(found and found.enabled)

            def visible(_item: object) -> bool:
                return entry(key) is not None

            checked = None
            if key == "autostart":
                def checked(_item: object) -> bool:
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
        """Engine listener (engine thread): notify per policy, and hand the redraw to the UI
        thread; a burst of snapshots costs one redraw of the newest."""
        with self._lock:
            self._status = status
            pending, self._redraw_pending = self._redraw_pending, True
        self.policy.on_status(status)
        self._announce(status)
        if not pending:
            self.ui.call_soon(self._redraw)

    def _redraw(self, force: bool = False) -> None:
        """UI thread only. Draw the latest Status as of now when what a person sees has changed,
        then schedule the next redraw for the moment the picture changes by time alone (the
        tooltip's number, a health threshold)."""
        with self._lock:
            self._redraw_pending = False
            status = as_of(self._status, time.time())
        if self._stopping:
            return
        title = self._title(status)
        key = (icon_state(status), status.login_in_progress, title, self.notes(),
               round(status.fraction_left * (status.lifetime or 900) / 60),
               tuple(usage_entries(status)))
        if force or key != self._drawn:
            self._drawn = key
            self.icon.icon = self._picture(status)
            self.icon.title = title
            try:
                self.icon.update_menu()
            except Exception:  # some backends cannot update a menu that is not shown yet
                log.debug("update_menu failed", exc_info=True)
            self._watch_menu_open_soon()
        self._schedule_redraw(status)

    def _schedule_redraw(self, status: Status) -> None:
        """UI thread only: one timed redraw pending at a time, run on the UI thread."""
        if self._cancel_redraw is not None:
            self._cancel_redraw()
            self._cancel_redraw = None
        when = next_picture_change(status)
        if when is None or self._stopping:
            return
        self._cancel_redraw = self.ui.call_later(when - time.time(), self._redraw)

    def _refresh_menu(self) -> None:
        """From any thread: redraw on the UI thread even if the key is unchanged."""
        self.ui.call_soon(lambda: self._redraw(force=True))

    # ----------------------------------------------------------------- usage
    def update_usage(self) -> None:
        """A click on a usage line: fetch now (the engine's policy still spaces the requests)."""
        self.engine.send(FetchUsage())

    def on_menu_open(self) -> None:
        """Numbers over a minute old are fetched at once when the user looks at them."""
        usage = self._status.usage
        if usage is None or usage.error or usage.fetched_at is None or \
                time.time() - usage.fetched_at > MENU_FRESH_FOR:
            log.info("The menu opened with usage numbers over a minute old; fetching them now.")
            self.engine.send(FetchUsage())

    def _watch_menu_open_soon(self) -> None:
        """pystray has no menu-open hook. Its GTK backends build a Gtk.Menu (on the GLib loop, after
        update_menu) that emits "show" when it pops up: connect to each new one there. Other
        backends (xorg, macOS, Windows) get no such signal; the periodic fetch covers them."""
        if self.backend in ("gtk", "appindicator"):
            self.ui.call_soon(self._watch_menu_open)  # after pystray's own idle call that builds it

    def _watch_menu_open(self) -> None:
        handle = getattr(self.icon, "_menu_handle", None)
        if handle is not None and handle is not self._watched_menu and hasattr(handle, "connect"):
            self._watched_menu = handle
            handle.connect("show", lambda *_: self.on_menu_open())

    # ----------------------------------------------------------------- actions
    def handle_action(self, key: str) -> None:
        """A notification button (runs on the notifier's thread: only hands work on)."""
        handlers = {"login": self.start_login, "open_log": self.open_log,
                    "open_config": self.open_config}
        if key in handlers:
            handlers[key]()

    def announce_config_error(self) -> None:
        if not self.config_error:
            return
        log.error("%s kimi-tray runs with the default settings until it is fixed.", self.config_error)
        self.notifier.send("kimi-tray config error",
                           f"{short_path(first_sentence(self.config_error))}. Defaults are in use; "
                           "fix the file and restart kimi-tray.",
                           [OPEN_CONFIG, OPEN_LOG])

    def renew_now(self) -> None:
        log.info("Renew now, from the tray.")
        self.engine.send(RenewNow())

    def restart_gateway(self) -> None:
        self.engine.send(RestartGateway())

    def _announce(self, status: Status) -> None:
        """Engine listener: tell the user once about each step of a login and each finished
        gateway restart the engine reports; open the login page when its code arrives."""
        login = status.login
        if login is not None and (login.attempt, login.phase) != self._announced_login:
            self._announced_login = (login.attempt, login.phase)
            self._announce_login(login)
        restart = status.gateway_restart
        if restart is not None and not restart.running and restart.attempt != self._announced_restart:
            self._announced_restart = restart.attempt
            self.notifier.send("OpenClaw gateway", short_path(first_sentence(restart.message)) + ".",
                               [OPEN_LOG] if not restart.ok else [])

    def _announce_login(self, login: LoginView) -> None:
        if login.phase == "waiting":
            threading.Thread(target=self._open_login_page, args=(login,), name="browser",
                             daemon=True).start()
        elif login.phase == "done":
            self.notifier.send("Kimi login done", login.message)
        elif login.phase == "failed":
            self.notifier.send("Kimi login failed", short_path(login.message),
                               [OPEN_LOG])

    def _open_login_page(self, login: LoginView) -> None:
        problem = open_url(login.verification_uri_complete)
        if problem:
            log.warning("%s Open %s and confirm the code %s.", problem, login.verification_uri,
                        login.user_code)
            self.notifier.send("Kimi login: open the link",
                               f"{problem} Open {login.verification_uri_complete} and confirm "
                               f"the code {login.user_code}.")
        else:
            self.notifier.send("Kimi login",
                               f"Confirm the code {login.user_code} in the browser "
                               f"({login.verification_uri}).")

    def _open_file(self, path: Path) -> None:
        if sys.platform.startswith("win"):
            os.startfile(str(path))  # type: ignore[attr-defined]  # noqa: S606
            return
        command = ["open", str(path)] if sys.platform == "darwin" else ["xdg-open", str(path)]
        try:
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        except OSError as exc:
            self.notifier.send("kimi-tray", f"Could not open {short_path(str(path))} ({exc.strerror}).")
            return
        threading.Thread(target=child.wait, name="opener-reaper", daemon=True).start()

    def open_log(self) -> None:
        path = self.log_path
        if path is None:
            self.notifier.send("kimi-tray", "The log file could not be created.")
            return
        path.touch(exist_ok=True)
        self._open_file(path)

    def open_config(self) -> None:
        if self.config_file is not None:
            self._open_file(self.config_file)

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
        self.engine.send(StartLogin())

    def cancel_login(self) -> None:
        self.engine.send(CancelLogin())

    def _note_clicked(self, index: int) -> None:
        """The login's lines: the code is copied, the link opens the page again."""
        notes, lines = self.notes(), self._login_lines()
        if index >= len(notes) or notes[index] not in lines:
            return
        if notes[index] == lines[0]:
            self.copy_login_code()
        else:
            self.reopen_login_page()

    def copy_login_code(self) -> None:
        from kimi_tray.platform.clipboard import copy_text

        login = self._waiting_login()
        code = login.user_code if login else ""
        if code and not copy_text(code, gtk_loop=self.backend in ("gtk", "appindicator")):
            self.notifier.send("kimi-tray", f"No clipboard here; the code is {code}.")
        elif code:
            log.info("Copied the login code to the clipboard.")

    def reopen_login_page(self) -> None:
        login = self._waiting_login()
        if login is not None:
            threading.Thread(target=open_url, args=(login.verification_uri_complete,), name="browser",
                             daemon=True).start()

    def quit(self) -> None:
        """From the menu or a signal: stop the engine, then the icon on the UI thread."""
        self._stopping = True
        self.engine.stop(timeout=5)  # a running login is cancelled as the engine stops
        self.ui.call_soon(self._stop_icon)

    def _stop_icon(self) -> None:
        if self._cancel_redraw is not None:
            self._cancel_redraw()
            self._cancel_redraw = None
        self.icon.stop()

    # ----------------------------------------------------------------- run
    def icon_docked(self) -> bool:
        """UI thread only: does a tray show the icon, as far as the backend can tell?"""
        status_icon = getattr(self.icon, "_status_icon", None)  # gtk: a Gtk.StatusIcon
        if status_icon is not None:
            return bool(status_icon.is_embedded())
        if self.backend == "xorg":
            return getattr(self.icon, "_systray_manager", None) is not None
        return False  # appindicator, macOS, Windows: the desktop is asked instead

    def _show(self) -> None:
        """UI thread: the icon appears with the newest Status."""
        self.icon.visible = True
        self._redraw(force=True)

    def run(self, after_start: Callable[[], None] = lambda: None) -> None:
        def setup(_icon: object) -> None:  # pystray's setup thread: hands the icon to the UI thread
            self.ui.call_soon(self._show)
            self.engine.send(WatchUsage())
            self.engine.start()
            self._watch_menu_open_soon()
            self.announce_config_error()
            after_start()

        self.engine.add_listener(self.on_status)
        self.engine.add_listener(self.usage_alerts.on_status)
        self.icon.run(setup=setup)
