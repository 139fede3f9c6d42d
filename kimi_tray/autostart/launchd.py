"""macOS: a LaunchAgent with RunAtLoad in ~/Library/LaunchAgents."""

from __future__ import annotations

import plistlib
from pathlib import Path

from kimi_tray.autostart import APP_ID, FileEntry, launch_command


class LaunchAgent(FileEntry):
    def __init__(self, home: Path | None = None, command: list[str] | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
        self.command = command or launch_command()

    def content(self) -> bytes:
        return plistlib.dumps({
            "Label": APP_ID,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
        })
