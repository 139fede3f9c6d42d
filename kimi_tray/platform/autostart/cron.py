"""The crontab `@reboot` line install.sh writes where there is no systemd user session: the only
thing that starts the daemon there, so status, doctor and uninstall must see it too."""

from __future__ import annotations

import shlex
import shutil
import subprocess

from kimi_tray.platform.autostart import LaunchCommand

LOCATION = "crontab @reboot line"


def is_ours(line: str) -> bool:
    stripped = line.strip()
    return not stripped.startswith("#") and stripped.startswith("@reboot") and "kimi-tray daemon" in line


def crontab_lines() -> list[str]:
    """This user's crontab, or [] where there is none (or no crontab command)."""
    if not shutil.which("crontab"):
        return []
    try:
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=10,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


def reboot_command(lines: list[str] | None = None) -> LaunchCommand | None:
    """What our @reboot line runs, without `daemon` and the redirections (None: no such line)."""
    for line in crontab_lines() if lines is None else lines:
        if not is_ours(line):
            continue
        try:
            words = shlex.split(line.strip().removeprefix("@reboot"))
        except ValueError:
            return LaunchCommand(())
        return LaunchCommand(tuple(words[: words.index("daemon")]) if "daemon" in words else ())
    return None
