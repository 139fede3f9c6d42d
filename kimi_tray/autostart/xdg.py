"""Linux and other XDG desktops: ~/.config/autostart/kimi-tray.desktop."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from kimi_tray.autostart import FileEntry, launch_command


def _quote(arg: str) -> str:
    """Desktop Entry Exec quoting: double quotes around arguments with reserved characters."""
    if arg and all(c.isalnum() or c in "-_./:=+,@" for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'


class XdgAutostart(FileEntry):
    def __init__(self, config_home: Path | None = None, command: list[str] | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = base / "autostart" / "kimi-tray.desktop"
        self.command = command or launch_command()

    def entry(self) -> str:
        exec_line = " ".join(_quote(arg.replace("%", "%%")) for arg in self.command)
        return (
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=kimi-tray\n"
            "Comment=Keeps the Kimi Code login alive for OpenClaw\n"
            f"Exec={exec_line}\n"
            "Icon=kimi-tray\n"
            "Terminal=false\n"
            "Categories=Utility;\n"
            "X-GNOME-Autostart-enabled=true\n"
        )

    def content(self) -> bytes:
        return self.entry().encode()

    def __repr__(self) -> str:
        return f"XdgAutostart({shlex.join(self.command)})"
