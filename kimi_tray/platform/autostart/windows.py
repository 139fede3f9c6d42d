"""Windows: a value under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run."""

from __future__ import annotations

import subprocess
from contextlib import AbstractContextManager
from typing import Protocol

from kimi_tray.platform.autostart import LaunchCommand, launch_spec

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "kimi-tray"


class Registry(Protocol):
    """The part of `winreg` the Run key uses (the real module on Windows, a fake in tests)."""

    @property
    def HKEY_CURRENT_USER(self) -> object: ...  # noqa: N802
    @property
    def KEY_READ(self) -> int: ...  # noqa: N802
    @property
    def KEY_SET_VALUE(self) -> int: ...  # noqa: N802
    @property
    def REG_SZ(self) -> int: ...  # noqa: N802

    def CreateKeyEx(  # noqa: N802
        self, key: object, sub_key: str, reserved: int, access: int
    ) -> AbstractContextManager[object]: ...
    def SetValueEx(  # noqa: N802
        self, key: object, value_name: str, reserved: int, type: int, value: str
    ) -> None: ...
    def QueryValueEx(self, key: object, name: str) -> tuple[object, int]: ...  # noqa: N802
    def DeleteValue(self, key: object, value: str) -> None: ...  # noqa: N802


def with_checkout_on_path(spec: LaunchCommand) -> list[str]:
    """A Run value has no working directory: a source checkout goes onto sys.path instead."""
    if not spec.cwd:
        return list(spec.argv)
    code = (f"import runpy, sys; sys.path.insert(0, {spec.cwd!r}); "
            "runpy.run_module('kimi_tray', run_name='__main__', alter_sys=True)")
    return [spec.argv[0], "-c", code]


def split_command_line(line: str) -> list[str]:
    """The argv Windows hands a program for a command line (the inverse of list2cmdline)."""
    args: list[str] = []
    current, quoted, in_arg, backslashes = "", False, False, 0
    for char in line:
        if char == "\\":
            backslashes += 1
            in_arg = True
            continue
        if char == '"':
            current += "\\" * (backslashes // 2)
            if backslashes % 2:
                current += '"'
            else:
                quoted = not quoted
            backslashes, in_arg = 0, True
            continue
        current += "\\" * backslashes
        backslashes = 0
        if char in " \t" and not quoted:
            if in_arg:
                args.append(current)
            current, in_arg = "", False
        else:
            current += char
            in_arg = True
    current += "\\" * backslashes
    if in_arg:
        args.append(current)
    return args


def _winreg() -> Registry:
    import winreg  # only importable on Windows

    return winreg  # type: ignore[return-value,unused-ignore]  # its stub is empty off Windows


class RunKey:
    label = "start on login"
    starts = "the tray at login"
    fix = "run `kimi-tray autostart on` to rewrite it"
    extra_args: tuple[str, ...] = ()

    def __init__(self, registry: Registry | None = None, command: list[str] | None = None) -> None:
        self.reg = registry if registry is not None else _winreg()
        self.command = command or with_checkout_on_path(launch_spec())

    def _open(self, write: bool) -> AbstractContextManager[object]:
        access = self.reg.KEY_SET_VALUE if write else self.reg.KEY_READ
        return self.reg.CreateKeyEx(self.reg.HKEY_CURRENT_USER, RUN_KEY, 0, access)

    def enable(self) -> None:
        with self._open(write=True) as key:
            self.reg.SetValueEx(key, VALUE_NAME, 0, self.reg.REG_SZ, subprocess.list2cmdline(self.command))

    def disable(self) -> bool:
        with self._open(write=True) as key:
            try:
                self.reg.DeleteValue(key, VALUE_NAME)
            except FileNotFoundError:
                return False
        return True

    def is_enabled(self) -> bool:
        return self.value() is not None

    def value(self) -> str | None:
        with self._open(write=False) as key:
            try:
                return str(self.reg.QueryValueEx(key, VALUE_NAME)[0])
            except FileNotFoundError:
                return None

    def intended_command(self) -> LaunchCommand:
        return LaunchCommand(tuple(self.command))

    def after_enable(self) -> str:
        return ""

    def written_command(self) -> LaunchCommand | None:
        try:
            value = self.value()
        except OSError:  # the key cannot be read: no command we could name
            return None
        argv = split_command_line(value) if value else []
        return LaunchCommand(tuple(argv)) if argv else None

    def location(self) -> str:
        return f"HKCU\\{RUN_KEY}\\{VALUE_NAME}"
