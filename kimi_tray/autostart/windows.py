"""Windows: a value under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

from kimi_tray.autostart import launch_command

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "kimi-tray"


class RunKey:
    def __init__(self, registry: Any = None, command: list[str] | None = None) -> None:
        if registry is None:
            import winreg as registry  # only importable on Windows
        self.reg = registry
        self.command = command or launch_command()

    def _open(self, write: bool):
        access = self.reg.KEY_SET_VALUE if write else self.reg.KEY_READ
        return self.reg.CreateKeyEx(self.reg.HKEY_CURRENT_USER, RUN_KEY, 0, access)

    def enable(self) -> None:
        with self._open(write=True) as key:
            self.reg.SetValueEx(key, VALUE_NAME, 0, self.reg.REG_SZ, subprocess.list2cmdline(self.command))

    def disable(self) -> None:
        with self._open(write=True) as key, contextlib.suppress(FileNotFoundError):
            self.reg.DeleteValue(key, VALUE_NAME)

    def is_enabled(self) -> bool:
        with self._open(write=False) as key:
            try:
                self.reg.QueryValueEx(key, VALUE_NAME)
                return True
            except FileNotFoundError:
                return False

    def location(self) -> str:
        return f"HKCU\\{RUN_KEY}\\{VALUE_NAME}"
