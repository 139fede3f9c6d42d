"""Start on login: one small interface, a backend per platform, chosen once.

Every entry runs the program the user installed: the one-file binary, the venv's own `kimi-tray`
console script, or `python -m kimi_tray` from a source checkout. Never the resolved interpreter:
a venv's `python` is a symlink to the system python, which cannot import us.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import kimi_tray

APP_ID = "io.github.kimi-tray"
VERSION_CHECK_TIMEOUT = 30.0


@dataclass(frozen=True)
class LaunchCommand:
    """What an autostart entry runs, and from where (a source checkout needs its root)."""

    argv: tuple[str, ...]
    cwd: str | None = None


class AutostartBackend(Protocol):
    """One way of starting kimi-tray. Each backend says what it would run, what its entry on
    disk runs and how to fix it, so callers never ask which platform they are on."""

    label: str  # its `doctor` line: "start on login", "daemon unit"...
    starts: str  # what it starts, as `status` says it: "the tray at login"...
    fix: str  # what rewrites a broken entry
    extra_args: tuple[str, ...]  # what the entry adds after the program: () or ("daemon",)

    def enable(self) -> None: ...

    def disable(self) -> bool:
        """Remove the entry; True when there was something of ours to remove."""
        ...

    def is_enabled(self) -> bool: ...

    def location(self) -> str: ...

    def intended_command(self) -> LaunchCommand:
        """The command `enable()` writes (without extra_args)."""
        ...

    def written_command(self) -> LaunchCommand | None:
        """The command line the entry in place would run, without extra_args (None when there is
        no entry or it cannot be read)."""
        ...

    def after_enable(self) -> str:
        """What the user should know once the entry is written ('' when nothing)."""
        ...


def is_on(backend: AutostartBackend) -> bool:
    """Whether the entry exists; one that cannot be read (a registry or file error) counts as off."""
    try:
        return backend.is_enabled()
    except OSError:
        return False


class FileEntry:
    """An autostart entry that is one file (XDG .desktop, LaunchAgent plist): present means on."""

    path: Path
    command: list[str]
    workdir: str | None
    label = "start on login"
    starts = "the tray at login"
    fix = "run `kimi-tray autostart on` to rewrite it"
    extra_args: tuple[str, ...] = ()

    def content(self) -> bytes:
        raise NotImplementedError

    def intended_command(self) -> LaunchCommand:
        return LaunchCommand(tuple(self.command), self.workdir)

    def after_enable(self) -> str:
        return ""

    def enable(self) -> None:
        from kimi_tray.stores.fileio import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, self.content(), mode=0o644)

    def disable(self) -> bool:
        existed = self.path.is_file() or self.path.is_symlink()
        self.path.unlink(missing_ok=True)
        return existed

    def is_enabled(self) -> bool:
        return self.path.is_file()

    def location(self) -> str:
        return str(self.path)


def source_checkout() -> Path | None:
    """The checkout root when kimi_tray runs from a source tree (not from site-packages)."""
    package = Path(kimi_tray.__file__).resolve().parent
    root = package.parent
    if (root / "pyproject.toml").is_file() and "site-packages" not in package.parts:
        return root
    return None


def console_script() -> Path | None:
    """The `kimi-tray` script that pip put next to this interpreter, if there is one."""
    folder = Path(os.path.abspath(sys.executable)).parent  # not resolved: stay inside the venv
    for name in ("kimi-tray.exe", "kimi-tray") if os.name == "nt" else ("kimi-tray",):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_spec() -> LaunchCommand:
    """What runs now: the one-file binary, a source checkout, or the installed console script."""
    if getattr(sys, "frozen", False):
        return LaunchCommand((os.path.abspath(sys.executable),))
    python = os.path.abspath(sys.executable)
    checkout = source_checkout()
    if checkout is not None:
        return LaunchCommand((python, "-m", "kimi_tray"), str(checkout))
    script = console_script()
    if script is not None:
        return LaunchCommand((str(script),))
    return LaunchCommand((python, "-m", "kimi_tray"))


def check_command(command: LaunchCommand, timeout: float = VERSION_CHECK_TIMEOUT) -> str:
    """Run the entry's command with `--version`, as the login session would; '' when it works,
    else one sentence saying why not. The environment is cleaned of PYTHONPATH, which a login
    session does not have either, and it starts in the home directory, not here."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        result = subprocess.run([*command.argv, "--version"], cwd=command.cwd or str(Path.home()), env=env,
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return f"{command.argv[0]} does not exist"
    except OSError as exc:
        return f"{command.argv[0]} cannot run ({exc.strerror})"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(command.argv)} --version` did not answer within {timeout:.0f} s"
    if result.returncode == 0 and result.stdout.startswith("kimi-tray "):
        return ""
    said = (result.stderr or result.stdout).strip().splitlines()
    return f"`{' '.join(command.argv)}` fails: {said[-1] if said else f'exit {result.returncode}'}"


def get_backend(platform: str | None = None) -> AutostartBackend:
    platform = platform or sys.platform
    if platform == "darwin":
        from kimi_tray.platform.autostart.launchd import LaunchAgent

        return LaunchAgent()
    if platform.startswith("win"):
        from kimi_tray.platform.autostart.windows import RunKey

        return RunKey()
    from kimi_tray.platform.autostart.xdg import XdgAutostart

    return XdgAutostart()


def get_daemon_backend(platform: str | None = None) -> AutostartBackend | None:
    """Where one exists, the unit that starts the headless daemon (Linux: systemd user unit)."""
    if (platform or sys.platform).startswith("linux"):
        from kimi_tray.platform.autostart.systemd import SystemdUnit

        return SystemdUnit()
    return None


def all_backends(platform: str | None = None) -> list[AutostartBackend]:
    """Everything that may start kimi-tray here: the login entry, the daemon unit, and (where
    cron exists) install.sh's @reboot line. What status, doctor and uninstall look at."""
    platform = platform or sys.platform
    backends = [get_backend(platform)]
    daemon = get_daemon_backend(platform)
    if daemon is not None:
        backends.append(daemon)
    if not platform.startswith("win"):
        from kimi_tray.platform.autostart.cron import CronReboot

        backends.append(CronReboot())
    return backends
