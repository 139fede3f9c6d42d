"""`kimi-tray` with no subcommand: check for a display, take the single-instance lock, run the tray."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Protocol

from kimi_tray import __version__
from kimi_tray.core.config import Settings
from kimi_tray.core.logs import setup_logging

if TYPE_CHECKING:
    from kimi_tray.ui.notify import Notifier
    from kimi_tray.ui.ui_thread import UiThread

log = logging.getLogger(__name__)
TRAY_HOST_GRACE = float(os.environ.get("KIMI_TRAY_HOST_GRACE", "5"))
STOP_WITHIN = 10.0  # a logout waits for us; never hang it


class RunningTray(Protocol):
    """What the signal handlers and the tray-host check need from the running tray."""

    @property
    def notifier(self) -> Notifier: ...
    @property
    def ui(self) -> UiThread: ...
    def quit(self) -> None: ...
    def icon_docked(self) -> bool: ...


def has_display() -> bool:
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run(settings: Settings, verbose: bool = False, config_error: str = "") -> int:
    """config_error: the config file was unusable and `settings` are the defaults; the tray
    still starts, so the user sees the problem (a notification, a menu line, the log)."""
    if not has_display():
        print("kimi-tray: there is no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset).\n"
              "On a server, run `kimi-tray daemon` instead (or `kimi-tray autostart on --daemon` "
              "for a systemd user unit).", file=sys.stderr)
        return 1
    from kimi_tray.platform.single_instance import AlreadyRunning, InstanceLock

    instance = InstanceLock(settings.state_dir, mode="tray")
    try:
        instance.acquire()
    except AlreadyRunning as exc:
        print(f"kimi-tray is already running (pid {exc}); look for its icon in the tray.")
        return 0
    log_path = setup_logging(settings.log_dir, to_stderr=verbose, verbose=verbose)
    from kimi_tray.core.config import config_path
    from kimi_tray.engine.http_child import child_exchanges
    from kimi_tray.engine.scheduler import Engine
    from kimi_tray.platform.autostart import get_backend
    from kimi_tray.ui.notify import choose_notifier
    from kimi_tray.ui.tray import TrayApp, choose_backend

    backend = choose_backend()
    if backend:
        os.environ["PYSTRAY_BACKEND"] = backend
    # One engine wake a minute serves the file check; the tray schedules its own redraws for the
    # moments the picture changes, so the tooltip is never more than a moment stale.
    engine = Engine(settings.with_overrides(poll_interval=settings.tray_poll_interval),
                    exchange=child_exchanges(settings.state_dir))
    handle = engine.handle()
    log.info("kimi-tray %s tray started (backend %s); managing %s; %s", __version__,
             backend or "default", handle.status.credentials_file, handle.status.openclaw_target)
    apps: list[TrayApp] = []
    notifier = choose_notifier(on_action=lambda key: apps[0].handle_action(key) if apps else None)
    try:
        app = TrayApp(handle, settings, get_backend(), notifier, log_path, backend, config_error=config_error,
                      config_file=settings.config_file or (config_path() if config_error else None))
    except Exception as exc:  # pystray raises display errors of every kind at import
        log.error("The tray could not start: %s", exc)
        print(f"kimi-tray: the tray could not start ({exc}). Try `kimi-tray daemon`.", file=sys.stderr)
        return 1
    apps.append(app)
    stop_on_signals(app, backend)
    from kimi_tray.engine.events import EventSources

    # File changes and resume wake the engine at once; it still wakes each minute for the ring.
    sources = EventSources(engine, redraw_step=settings.tray_poll_interval,
                           glib=backend in ("gtk", "appindicator")).start()
    code = 0
    try:
        app.run(after_start=lambda: watch_for_tray_host(app))
    except Exception:  # the icon's loop itself failed: say so where the user looks
        log.exception("The tray icon stopped on an unexpected error")
        code = 1
    finally:
        sources.stop()
        handle.stop(timeout=5)
        instance.release()
        # pystray's setup thread is not a daemon: when the icon's loop ended before it started,
        # that thread waits for ever and Python with it, deaf to SIGTERM (GLib holds it).
        _exit_if_still_here(STOP_WITHIN, code)
    log.info("kimi-tray tray stopped.")
    return code


def stop_on_signals(app: RunningTray, backend: str) -> None:
    """SIGTERM (logout, systemd, kill) and SIGINT stop the tray cleanly: log line, exit 0.
    GTK's main loop runs Python signal handlers late, so there GLib delivers them."""

    def stop(signum: int) -> bool:
        log.info("Stopping (signal %d).", signum)
        _exit_if_still_here(STOP_WITHIN)
        app.quit()
        return False

    if backend in ("gtk", "appindicator"):
        try:
            from gi.repository import GLib

            for signum in (signal.SIGTERM, signal.SIGINT):
                GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, stop, signum)
            return
        except (ImportError, AttributeError):
            pass
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: threading.Thread(
            target=stop, args=(number,), name="stop", daemon=True).start())


def _exit_if_still_here(seconds: float, code: int = 0) -> None:
    watchdog = threading.Timer(seconds, _exit_now, args=(code,))
    watchdog.daemon = True
    watchdog.start()


def _exit_now(code: int = 0) -> None:
    log.warning("The tray did not stop within %.0f s; exiting anyway.", STOP_WITHIN)
    logging.shutdown()
    os._exit(code)


def watch_for_tray_host(app: RunningTray, delay: float = TRAY_HOST_GRACE) -> None:
    """A few seconds after start (a panel may start after us at login): is any tray showing
    icons? If not, say so once with the fix; renewal goes on either way. The icon itself answers
    first (on the UI thread): a docked icon needs no look at the desktop, which would load an X
    client and a D-Bus client into the tray for good."""

    def look_around() -> None:
        from kimi_tray.ui.tray_host import fix_for_this_desktop, tray_host_present

        if tray_host_present():
            return
        fix = fix_for_this_desktop()
        log.warning("Nothing on this desktop shows tray icons, so the kimi-tray icon is invisible. "
                    "%s Renewal goes on in the background.", fix)
        app.notifier.send("kimi-tray icon not visible",
                          f"Nothing on this desktop shows tray icons. {fix} "
                          "kimi-tray keeps renewing the Kimi login in the background.")

    def check() -> None:
        if not app.icon_docked():
            threading.Thread(target=look_around, name="tray-host-check", daemon=True).start()

    app.ui.call_later(delay, check)
