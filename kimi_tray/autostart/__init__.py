"""Start on login: one small interface, a backend per platform, chosen once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

APP_ID = "io.github.kimi-tray"


class AutostartBackend(Protocol):
    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def is_enabled(self) -> bool: ...

    def location(self) -> str: ...


class FileEntry:
    """An autostart entry that is one file (XDG .desktop, LaunchAgent plist): present means on."""

    path: Path

    def content(self) -> bytes:
        raise NotImplementedError

    def enable(self) -> None:
        from kimi_tray.fileio import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, self.content(), mode=0o644)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)

    def is_enabled(self) -> bool:
        return self.path.is_file()

    def location(self) -> str:
        return str(self.path)


def launch_command() -> list[str]:
    """What runs now: the one-file binary, or this interpreter with `-m kimi_tray`."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "kimi_tray"]


def get_backend(platform: str | None = None) -> AutostartBackend:
    platform = platform or sys.platform
    if platform == "darwin":
        from kimi_tray.autostart.launchd import LaunchAgent

        return LaunchAgent()
    if platform.startswith("win"):
        from kimi_tray.autostart.windows import RunKey

        return RunKey()
    from kimi_tray.autostart.xdg import XdgAutostart

    return XdgAutostart()
