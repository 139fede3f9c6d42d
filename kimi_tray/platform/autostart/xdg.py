"""Linux and other XDG desktops: ~/.config/autostart/kimi-tray.desktop."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from kimi_tray.platform.autostart import FileEntry, LaunchCommand, launch_spec

RESERVED = "\\\"`$"


def _quote(arg: str) -> str:
    """Desktop Entry Exec quoting: double quotes around arguments with reserved characters."""
    if arg and all(c.isalnum() or c in "-_./:=+,@" for c in arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'


def exec_line(argv: tuple[str, ...] | list[str]) -> str:
    return " ".join(_quote(arg.replace("%", "%%")) for arg in argv)


def parse_exec(line: str) -> list[str]:
    """The argv a desktop session runs for an Exec value (the spec's quoting; %% is a percent)."""
    args: list[str] = []
    current, quoted, in_arg, i = "", False, False, 0
    while i < len(line):
        char = line[i]
        if quoted:
            if char == "\\" and i + 1 < len(line) and line[i + 1] in RESERVED:
                current += line[i + 1]
                i += 1
            elif char == '"':
                quoted = False
            else:
                current += char
        elif char == '"':
            quoted, in_arg = True, True
        elif char == " ":
            if in_arg:
                args.append(current)
            current, in_arg = "", False
        else:
            current += char
            in_arg = True
        i += 1
    if in_arg:
        args.append(current)
    return [arg.replace("%%", "%") for arg in args]


def desktop_entry_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        key, sep, value = raw.partition("=")
        if sep and not raw.startswith(("#", "[")):
            values.setdefault(key.strip(), value.strip())
    return values


class XdgAutostart(FileEntry):
    def __init__(self, config_home: Path | None = None, command: list[str] | None = None,
                 workdir: str | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = base / "autostart" / "kimi-tray.desktop"
        spec = launch_spec() if command is None else LaunchCommand(tuple(command), workdir)
        self.command = list(spec.argv)
        self.workdir = spec.cwd

    def entry(self) -> str:
        path_line = f"Path={self.workdir}\n" if self.workdir else ""
        return (
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=kimi-tray\n"
            "Comment=Keeps the Kimi Code login alive for OpenClaw\n"
            f"Exec={exec_line(self.command)}\n"
            f"{path_line}"
            "Icon=kimi-tray\n"
            "Terminal=false\n"
            "Categories=Utility;\n"
            "X-GNOME-Autostart-enabled=true\n"
        )

    def content(self) -> bytes:
        return self.entry().encode()

    def written_command(self) -> LaunchCommand | None:
        try:
            values = desktop_entry_values(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None
        argv = parse_exec(values.get("Exec", ""))
        return LaunchCommand(tuple(argv), values.get("Path") or None) if argv else None

    def __repr__(self) -> str:
        return f"XdgAutostart({shlex.join(self.command)})"
