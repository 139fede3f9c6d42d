"""`kimi-tray uninstall`: remove everything of ours, ask before anything the user may want back.

Removed without asking: the autostart entry, the daemon unit, our crontab @reboot line, a
running tray or daemon, the install.sh venv and its symlink. Asked (or chosen by flags): our
state, log and config, and our OpenClaw profile. Never touched: the Kimi credential files and
device id (the Kimi CLIs own them), and anything else in a folder the user pointed us at
(log_dir = "~/logs" loses only our log files, not the folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import platformdirs

from kimi_tray.core.config import APP_NAME, Settings

Ask = Callable[[str], bool]


def install_prefix() -> Path:
    """Where ./install.sh puts its venv (KIMI_TRAY_PREFIX overrides, as in install.sh)."""
    override = os.environ.get("KIMI_TRAY_PREFIX")
    return Path(override) if override else Path.home() / ".local" / "share" / "kimi-tray"


def ask_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def stop_running(settings: Settings, say: Callable[[str], None]) -> None:
    from kimi_tray.platform.single_instance import running_instance

    holder = running_instance(settings.state_dir)
    if holder is None or not holder.pid or holder.pid == os.getpid():
        return
    say(f"Stopping the running kimi-tray {holder.mode} (pid {holder.pid}).")
    try:
        os.kill(holder.pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running_instance(settings.state_dir) is not None:
        time.sleep(0.1)


def remove_openclaw_profile(settings: Settings, say: Callable[[str], None]) -> None:
    from kimi_tray.core.errors import OpenClawError
    from kimi_tray.stores.openclaw.runner import Runner

    runner = Runner(settings)
    for agent in settings.openclaw_agents:
        try:
            result = runner.run(["models", "auth", "logout", settings.openclaw_profile_id,
                                 "--agent", agent, "--yes"])
        except OpenClawError as exc:
            say(f"Could not remove the OpenClaw profile: {exc}")
            return
        if result.returncode == 0:
            say(f"Removed OpenClaw's {settings.openclaw_profile_id} profile (agent {agent}).")
        else:
            said = (result.stderr or result.stdout).strip().splitlines()
            say(f"OpenClaw kept {settings.openclaw_profile_id} (agent {agent}): "
                f"{said[-1] if said else 'exit ' + str(result.returncode)}")


def _remove_tree(path: Path, say: Callable[[str], None]) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
        say(f"Removed {path}")
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
        say(f"Removed {path}")


# What kimi-tray writes into its state and log folders (see state.py, usage/store.py,
# single_instance.py, logs.py): all that leaves a folder that is not wholly ours.
OWN_FILE_PATTERNS = ("state.json", "usage.json", "instance.lock", "kimi-tray.log", "kimi-tray.log.*")


def _default_dirs() -> set[Path]:
    """The folders named after us by platformdirs: wholly ours, removed with all they hold."""
    return {Path(platformdirs.user_state_dir(APP_NAME)), Path(platformdirs.user_log_dir(APP_NAME)),
            Path(platformdirs.user_config_dir(APP_NAME))}


def _remove_data_dir(path: Path, say: Callable[[str], None]) -> None:
    if path in _default_dirs():
        _remove_tree(path, say)
        return
    for pattern in OWN_FILE_PATTERNS:
        for ours in path.glob(pattern):
            if ours.is_file() or ours.is_symlink():
                ours.unlink()
                say(f"Removed {ours}")


def _decide(choice: bool | None, ask: Ask, question: str) -> bool:
    return ask(question) if choice is None else choice


def uninstall(settings: Settings, remove_data: bool | None = None, remove_profile: bool | None = None,
              ask: Ask = ask_on_terminal, say: Callable[[str], None] = print) -> int:
    """remove_data / remove_profile: True or False decide; None asks (no terminal: keep)."""
    from kimi_tray.platform.autostart import all_backends

    stop_running(settings, say)
    for backend in all_backends():
        try:
            if backend.disable():
                say(f"Removed {backend.location()}")
        except OSError as exc:
            say(f"Could not remove {backend.location()}: {exc}")

    config_dir = Path(platformdirs.user_config_dir(APP_NAME))
    data = [p for p in (settings.state_dir, settings.log_dir, config_dir) if p.exists()]
    listed = ", ".join(map(str, data))
    if data and _decide(remove_data, ask, f"Remove kimi-tray's state, log and config ({listed})?"):
        for path in data:
            _remove_data_dir(path, say)
    elif data:
        say(f"Kept {listed}.")

    # The venv we may be running from goes last: removing a profile still imports from it.
    from kimi_tray.stores.openclaw import choose_target

    question = f"Remove the {settings.openclaw_profile_id} profile kimi-tray keeps in OpenClaw?"
    if choose_target(settings).active and _decide(remove_profile, ask, question):
        remove_openclaw_profile(settings, say)

    prefix = install_prefix()
    link = Path.home() / ".local" / "bin" / "kimi-tray"
    if link.is_symlink() and str(os.readlink(link)).startswith(str(prefix)):
        link.unlink()
        say(f"Removed {link}")
    if (prefix / "venv").is_dir():
        if prefix.name == APP_NAME:  # install.sh's own folder
            _remove_tree(prefix, say)
        else:  # a KIMI_TRAY_PREFIX that may hold other things: only what install.sh put there
            for ours in (prefix / "venv", prefix / "pip.log"):
                _remove_tree(ours, say)
            with contextlib.suppress(OSError):
                prefix.rmdir()
    say("kimi-tray is uninstalled. The Kimi login itself (~/.kimi, ~/.kimi-code) was left as it is.")
    return 0
