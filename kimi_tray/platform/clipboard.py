"""Copy a line of text (a login code, a link) to the clipboard, so a menu line is copyable.

GTK's clipboard where the tray runs GTK's main loop (it serves the text while we run); the
platform's copy command elsewhere. Never used for a token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def copy_text(text: str, gtk_loop: bool) -> bool:
    """True when the text is on the clipboard (or handed to the tool that puts it there)."""
    if gtk_loop and _copy_with_gtk(text):
        return True
    for command in _commands():
        if shutil.which(command[0]):
            try:
                subprocess.run(command, input=text.encode("utf-16le" if command[0] == "clip" else "utf-8"),
                               timeout=5, check=True, capture_output=True)
                return True
            except (OSError, subprocess.SubprocessError):
                continue
    return False


def _commands() -> list[list[str]]:
    if sys.platform == "darwin":
        return [["pbcopy"]]
    if sys.platform.startswith("win"):
        return [["clip"]]
    commands = [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
    if os.environ.get("WAYLAND_DISPLAY"):
        commands.insert(0, ["wl-copy"])
    return commands


def _copy_with_gtk(text: str) -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("Gdk", "3.0")
        from gi.repository import Gdk, GLib, Gtk
    except (ImportError, ValueError):
        return False

    def put() -> bool:
        clipboard = Gtk.Clipboard.get(Gdk.SELECTION_CLIPBOARD)
        clipboard.set_text(text, -1)
        clipboard.store()  # a clipboard manager keeps it after we quit
        return False

    GLib.idle_add(put)  # GTK objects belong to the main loop's thread
    return True
