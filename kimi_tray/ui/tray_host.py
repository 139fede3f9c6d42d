"""Is anything on this desktop showing tray icons? Without a host our icon is invisible, and the
user should hear that once, with the fix for their desktop, while renewal goes on regardless."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)
SNI_WATCHER = "org.kde.StatusNotifierWatcher"


def xembed_tray_present() -> bool | None:
    """An X system tray owns the _NET_SYSTEM_TRAY_S<screen> selection (None: cannot tell)."""
    if not os.environ.get("DISPLAY"):
        return False
    try:
        import Xlib.display
        import Xlib.X

        display = Xlib.display.Display()
    except Exception:  # no python-xlib, or the display refused us
        return None
    try:
        screen = display.get_default_screen()
        atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{screen}")
        return display.get_selection_owner(atom) != Xlib.X.NONE
    finally:
        display.close()


def status_notifier_watcher_present() -> bool | None:
    """A StatusNotifierWatcher (KDE, GNOME's AppIndicator extension, waybar...) is on the bus."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    try:
        import asyncio

        from dbus_fast import Message
        from dbus_fast.aio import MessageBus
    except ImportError:
        return None

    async def ask() -> bool:
        bus = await MessageBus().connect()
        try:
            reply = await bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="NameHasOwner", signature="s",
                body=[SNI_WATCHER]))
            return bool(reply.body and reply.body[0])
        finally:
            bus.disconnect()

    try:
        return asyncio.run(asyncio.wait_for(ask(), 5))
    except Exception:
        return None


def tray_host_present() -> bool:
    """False only when we could look and found neither kind of host."""
    if not sys.platform.startswith("linux") and "bsd" not in sys.platform:
        return True
    answers = (xembed_tray_present(), status_notifier_watcher_present())
    return any(answer is not False for answer in answers)


def fix_for_this_desktop() -> str:
    desktop = os.environ.get("XDG_CURRENT_DESKTOP", "").upper()
    if "GNOME" in desktop or "UBUNTU" in desktop:
        return ("Install and enable the AppIndicator extension "
                "(gnome-shell-extension-appindicator), then log out and in.")
    if "KDE" in desktop:
        return "Add the System Tray widget to a panel."
    if "XFCE" in desktop:
        return "Add the Status Tray plugin to a panel."
    return "Add a system tray (notification area) to your panel, or run a tray such as trayer."
