"""macOS: a LaunchAgent with RunAtLoad in ~/Library/LaunchAgents."""

from __future__ import annotations

import plistlib
from pathlib import Path
from xml.parsers.expat import ExpatError

from kimi_tray.platform.autostart import APP_ID, FileEntry, LaunchCommand, launch_spec


class LaunchAgent(FileEntry):
    def __init__(self, home: Path | None = None, command: list[str] | None = None,
                 workdir: str | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
        spec = launch_spec() if command is None else LaunchCommand(tuple(command), workdir)
        self.command = list(spec.argv)
        self.workdir = spec.cwd

    def content(self) -> bytes:
        agent: dict[str, object] = {
            "Label": APP_ID,
            "ProgramArguments": self.command,
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
        }
        if self.workdir:
            agent["WorkingDirectory"] = self.workdir
        return plistlib.dumps(agent)

    def written_command(self) -> LaunchCommand | None:
        try:
            agent = plistlib.loads(self.path.read_bytes())
        except (OSError, plistlib.InvalidFileException, ValueError, ExpatError):  # cut-off XML too
            return None
        argv = agent.get("ProgramArguments") or []
        if not argv or not all(isinstance(arg, str) for arg in argv):
            return None
        return LaunchCommand(tuple(argv), agent.get("WorkingDirectory") or None)
