"""macOS: a LaunchAgent with RunAtLoad in ~/Library/LaunchAgents."""

from __future__ import annotations

import plistlib
from pathlib import Path

from kimi_tray.autostart import APP_ID, launch_command
from kimi_tray.fileio import atomic_write


class LaunchAgent:
    def __init__(self, home: Path | None = None, command: list[str] | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
        self.command = command or launch_command()

    def plist(self) -> bytes:
        return plistlib.dumps({
            "Label": APP_ID,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
        })

    def enable(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, self.plist(), mode=0o644)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)

    def is_enabled(self) -> bool:
        return self.path.is_file()

    def location(self) -> str:
        return str(self.path)
