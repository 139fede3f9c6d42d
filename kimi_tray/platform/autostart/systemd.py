"""Linux servers: a systemd user unit that runs the headless daemon at boot or login."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from kimi_tray.platform.autostart import FileEntry, LaunchCommand, launch_spec

UNIT_NAME = "kimi-tray.service"


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=+,@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def user_session_available() -> bool:
    """True where `systemctl --user` reaches a running user manager."""
    if not shutil.which("systemctl"):
        return False
    try:
        return subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def systemctl(*args: str) -> bool:
    try:
        return subprocess.run(["systemctl", "--user", *args], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SystemdUnit(FileEntry):
    label = "daemon unit"
    starts = "the daemon unit"
    fix = "run `kimi-tray autostart on --daemon` to rewrite it"
    extra_args: tuple[str, ...] = ("daemon",)

    def __init__(self, config_home: Path | None = None, command: list[str] | None = None,
                 workdir: str | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = base / "systemd" / "user" / UNIT_NAME
        spec = launch_spec() if command is None else LaunchCommand(tuple(command), workdir)
        self.command = list(spec.argv)
        self.workdir = spec.cwd

    def unit(self) -> str:
        exec_start = " ".join(_quote(arg.replace("%", "%%")) for arg in [*self.command, "daemon"])
        workdir = f"WorkingDirectory={self.workdir}\n" if self.workdir else ""
        return (
            "# Written by `kimi-tray autostart on --daemon`; removed by `kimi-tray uninstall`.\n"
            "[Unit]\n"
            "Description=kimi-tray: keeps the Kimi Code login alive for OpenClaw\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"ExecStart={exec_start}\n"
            f"{workdir}"
            "Restart=on-failure\n"
            "RestartSec=10\n"
            "NoNewPrivileges=true\n\n"
            "[Install]\n"
            "WantedBy=default.target\n"
        )

    def content(self) -> bytes:
        return self.unit().encode()

    def wants_link(self) -> Path:
        """What `systemctl --user enable` makes for WantedBy=default.target: the link through
        which the user manager starts the unit. The unit file alone starts nothing."""
        return self.path.parent / "default.target.wants" / UNIT_NAME

    def enable(self) -> None:
        super().enable()
        if user_session_available():
            systemctl("daemon-reload")
            systemctl("enable", UNIT_NAME)
        link = self.wants_link()
        if not link.is_symlink():  # no user manager now: link it as systemctl would, for its next start
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.path)

    def after_enable(self) -> str:
        if user_session_available():
            return ""
        return ("No systemd user manager runs now: the unit starts when one does (at your next "
                "login; at boot with `loginctl enable-linger $USER`). Until then: `kimi-tray daemon`.")

    def disable(self) -> bool:
        existed = self.path.exists() or self.wants_link().is_symlink()
        if self.path.exists() and user_session_available():
            systemctl("disable", "--now", UNIT_NAME)
            super().disable()
            systemctl("daemon-reload")
        else:
            super().disable()
        link = self.wants_link()
        link.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            link.parent.rmdir()  # only when empty: other units' links stay
        return existed

    def is_enabled(self) -> bool:
        return self.path.is_file() and self.wants_link().is_symlink()

    def written_command(self) -> LaunchCommand | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        argv: list[str] = []
        workdir = None
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "ExecStart":
                try:
                    argv = [arg.replace("%%", "%") for arg in shlex.split(value)]
                except ValueError:
                    return None
            elif key.strip() == "WorkingDirectory":
                workdir = value.strip() or None
        if argv and argv[-1] == "daemon":
            argv = argv[:-1]
        return LaunchCommand(tuple(argv), workdir) if argv else None
