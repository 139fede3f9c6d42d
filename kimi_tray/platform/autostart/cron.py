"""The crontab `@reboot` line install.sh writes where there is no systemd user session: the only
thing that starts the daemon there, so status, doctor and uninstall must see it too."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

from kimi_tray.platform.autostart import LaunchCommand, launch_spec

LOCATION = "crontab @reboot line"
REDIRECT = ">/dev/null 2>&1"
_OURS = re.compile(r"kimi[-_]tray daemon")  # the console script, or `python -m kimi_tray daemon`


def is_ours(line: str) -> bool:
    stripped = line.strip()
    return not stripped.startswith("#") and stripped.startswith("@reboot") and bool(_OURS.search(line))


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


def write_crontab(lines: list[str]) -> None:
    try:
        result = subprocess.run(["crontab", "-"], input="".join(f"{line}\n" for line in lines),
                                capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        raise OSError("crontab did not answer within 10 s") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise OSError(f"crontab refused the new table: {said[-1] if said else result.returncode}")


def reboot_line(command: LaunchCommand) -> str:
    """The line install.sh writes; a source checkout is started from its root."""
    run = f"{shlex.join(command.argv)} daemon {REDIRECT}"
    return f"@reboot cd {shlex.quote(command.cwd)} && {run}" if command.cwd else f"@reboot {run}"


def reboot_command(lines: list[str] | None = None) -> LaunchCommand | None:
    """What our @reboot line runs, without `daemon` and the redirections (None: no such line;
    no argv: a line that cannot be read)."""
    for line in crontab_lines() if lines is None else lines:
        if not is_ours(line):
            continue
        try:
            words = shlex.split(line.strip().removeprefix("@reboot"))
        except ValueError:
            return LaunchCommand(())
        cwd = None
        if len(words) > 3 and words[0] == "cd" and words[2] == "&&":
            cwd, words = words[1], words[3:]
        return LaunchCommand(tuple(words[: words.index("daemon")]) if "daemon" in words else (), cwd)
    return None


class CronReboot:
    """install.sh's @reboot line as an autostart backend: on when the line is there."""

    label = "daemon at boot"
    starts = f"the daemon from the {LOCATION}"
    fix = "run ./install.sh again, or `crontab -e` and fix or delete the line"
    extra_args: tuple[str, ...] = ("daemon",)

    def __init__(self, command: LaunchCommand | None = None) -> None:
        self.command = command if command is not None else launch_spec()

    def location(self) -> str:
        return f"the {LOCATION}"

    def intended_command(self) -> LaunchCommand:
        return self.command

    def is_enabled(self) -> bool:
        return reboot_command() is not None

    def written_command(self) -> LaunchCommand | None:
        command = reboot_command()
        return command if command is not None and command.argv else None

    def enable(self) -> None:
        if not shutil.which("crontab"):
            raise OSError("there is no crontab command here")
        write_crontab([line for line in crontab_lines() if not is_ours(line)]
                      + [reboot_line(self.command)])

    def disable(self) -> bool:
        lines = crontab_lines()
        kept = [line for line in lines if not is_ours(line)]
        if kept == lines:
            return False
        write_crontab(kept)
        return True

    def after_enable(self) -> str:
        return ""
