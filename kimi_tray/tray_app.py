"""`kimi-tray` with no subcommand: check for a display, take the single-instance lock, run the tray."""

from __future__ import annotations

import logging
import os
import sys

from kimi_tray import __version__
from kimi_tray.config import Settings
from kimi_tray.logs import setup_logging

log = logging.getLogger(__name__)


def has_display() -> bool:
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run(settings: Settings, verbose: bool = False) -> int:
    if not has_display():
        print("kimi-tray: there is no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset).\n"
              "On a server, run `kimi-tray daemon` instead (or install packaging/linux/"
              "kimi-tray.service as a systemd user unit).", file=sys.stderr)
        return 1
    from kimi_tray.single_instance import AlreadyRunning, InstanceLock

    instance = InstanceLock(settings.state_dir)
    try:
        instance.acquire()
    except AlreadyRunning as exc:
        print(f"kimi-tray is already running (pid {exc}); look for its icon in the tray.")
        return 0
    log_path = setup_logging(settings.log_dir, to_stderr=verbose, verbose=verbose)
    from kimi_tray.autostart import get_backend
    from kimi_tray.engine import Renewer
    from kimi_tray.notify import choose_notifier
    from kimi_tray.tray import TrayApp, choose_backend

    backend = choose_backend()
    if backend:
        os.environ["PYSTRAY_BACKEND"] = backend
    # One engine wake a minute serves both the file check and the redraw (the daemon checks
    # every 30 s); an idle tray then stays within 120 wake-ups an hour, UI included.
    renewer = Renewer(settings.with_overrides(poll_interval=settings.tray_poll_interval))
    log.info("kimi-tray %s tray started (backend %s); managing %s; %s", __version__,
             backend or "default", renewer.source.path, renewer.target.describe())
    try:
        app = TrayApp(renewer, get_backend(), choose_notifier(), log_path, backend)
    except Exception as exc:  # pystray raises display errors of every kind at import
        log.error("The tray could not start: %s", exc)
        print(f"kimi-tray: the tray could not start ({exc}). Try `kimi-tray daemon`.", file=sys.stderr)
        return 1
    from kimi_tray.events import EventSources

    # File changes and resume wake the engine at once; it still wakes each minute for the ring.
    sources = EventSources(renewer, redraw_step=settings.tray_poll_interval).start()
    try:
        app.run()
    finally:
        sources.stop()
        renewer.stop(timeout=5)
        instance.release()
    log.info("kimi-tray tray stopped.")
    return 0
