"""`kimi-tray doctor`: each check one line, ok/warn/fail, with the fix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from kimi_tray.config import Settings, check_oauth_host
from kimi_tray.credentials import choose_source
from kimi_tray.errors import KimiTrayError, LocalFileError
from kimi_tray.openclaw import CliTarget, LegacyFileTarget, OffTarget, Token, choose_target


@dataclass(frozen=True)
class Check:
    level: str  # ok, warn, fail
    name: str
    detail: str
    fix: str = ""


def check_credentials(settings: Settings) -> list[Check]:
    source = choose_source(settings)
    if not source.exists():
        return [Check("fail", "credentials", f"no Kimi credentials at {source.path}",
                      "run `kimi-tray login` (or `kimi login`)")]
    checks = []
    if os.name != "nt":
        mode = stat.S_IMODE(source.path.stat().st_mode)
        if mode & 0o077:
            checks.append(Check("warn", "permissions", f"{source.path} has mode {mode:o}",
                                f"chmod 600 {source.path}"))
        else:
            checks.append(Check("ok", "permissions", f"{source.path} is private (600)"))
    try:
        creds = source.load(fix_mode=False)
    except LocalFileError as exc:
        return checks + [Check("fail", "credentials", str(exc), "run `kimi-tray login`")]
    checks.insert(0, Check("ok", "credentials", f"{source.path} ({source.owner})"))
    if creds.can_refresh:
        checks.append(Check("ok", "refresh token", "present"))
    else:
        checks.append(Check("fail", "refresh token", "missing (logged out)", "run `kimi-tray login`"))
    return checks


def check_oauth(settings: Settings) -> list[Check]:
    try:
        check_oauth_host(settings.oauth_host)
    except KimiTrayError as exc:
        return [Check("fail", "oauth host", str(exc), "use an https:// URL")]
    return [Check("ok", "oauth host", settings.oauth_host)]


def check_openclaw(settings: Settings) -> list[Check]:
    target = choose_target(settings)
    checks = []
    state_dir = settings.openclaw_state_dir
    if state_dir.is_dir():
        checks.append(Check("ok", "openclaw state", str(state_dir)))
    else:
        checks.append(Check("warn", "openclaw state", f"{state_dir} does not exist",
                            "install OpenClaw, or set OPENCLAW_STATE_DIR"))
    command = settings.openclaw_command[0]
    if shutil.which(command):
        checks.append(Check("ok", "openclaw command", shutil.which(command) or command))
    else:
        level = "fail" if isinstance(target, CliTarget) else "warn"
        checks.append(Check(level, "openclaw command", f"{command} is not on PATH",
                            "install OpenClaw (npm install -g openclaw) or set openclaw_command"))
    if isinstance(target, OffTarget):
        checks.append(Check("warn", "openclaw sync", target.reason,
                            "install OpenClaw, or ignore if you only use the Kimi CLI"))
        return checks
    checks.append(Check("ok", "openclaw sync", target.describe()))
    source = choose_source(settings)
    try:
        creds = source.load(fix_mode=False)
        view = target.inspect(Token(creds.access_token, creds.expires_at),
                              _now())
    except KimiTrayError as exc:
        checks.append(Check("warn", "openclaw profile", str(exc), "run `kimi-tray renew`"))
        return checks
    level = "ok" if view.state == "in_sync" else "warn"
    checks.append(Check(level, "openclaw profile", f"{view.state}: {view.detail}",
                        "" if level == "ok" else "run `kimi-tray renew`"))
    if isinstance(target, CliTarget):
        checks += check_auth_order(target)
    if isinstance(target, LegacyFileTarget):
        checks.append(Check("ok", "openclaw generation",
                            "legacy auth-profiles.json; the gateway restarts after each renewal"))
    return checks


def check_auth_order(target: CliTarget) -> list[Check]:
    """A user's own Kimi profile (an API key, say) that OpenClaw prefers would hide ours."""
    order = target.effective_order()
    ours = target.profile_id
    if not order or order[0] == ours:
        return [Check("ok", "openclaw auth order", f"{ours} is used first")] if order else []
    others = " ".join(p for p in order if p != ours)
    return [Check("warn", "openclaw auth order", f"OpenClaw uses {order[0]} before {ours}",
                  f"openclaw models auth order set --provider kimi {ours} {others}".strip())]


def check_log_dir(settings: Settings) -> list[Check]:
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=settings.log_dir):
            pass
    except OSError as exc:
        return [Check("fail", "log dir", f"{settings.log_dir}: {exc.strerror}",
                      f"make {settings.log_dir} writable")]
    return [Check("ok", "log dir", str(settings.log_dir))]


def check_old_cron(_: Settings) -> list[Check]:
    if not shutil.which("crontab"):
        return []
    try:
        result = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [ln for ln in result.stdout.splitlines()
             if "renew-kimi-token" in ln and not ln.lstrip().startswith("#")]
    if lines:
        return [Check("warn", "old cron job",
                      "a cron line runs renew-kimi-token.sh; it restarts the gateway every 5 "
                      "minutes and races kimi-tray over the refresh token",
                      "run `crontab -e` and delete the renew-kimi-token.sh line")]
    return [Check("ok", "old cron job", "none")]


def check_desktop(_: Settings) -> list[Check]:
    if not sys.platform.startswith("linux"):
        return []
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return [Check("ok", "desktop", "no graphical session; use `kimi-tray daemon`")]
    checks = []
    desktop = os.environ.get("XDG_CURRENT_DESKTOP", "")
    if "GNOME" in desktop.upper():
        checks.append(Check("warn", "tray", "GNOME shows tray icons only with an extension",
                            "install gnome-shell-extension-appindicator and enable it"))
    try:
        import gi  # noqa: F401

        checks.append(Check("ok", "tray menus", "PyGObject found: real menus"))
    except ImportError:
        checks.append(Check("warn", "tray menus", "PyGObject (gi) missing: the icon has no menu",
                            "reinstall with ./install.sh, or apt install python3-gi"))
    return checks


CHECKS: list[Callable[[Settings], list[Check]]] = [
    check_credentials, check_oauth, check_openclaw, check_log_dir, check_old_cron, check_desktop,
]


def _now() -> float:
    import time

    return time.time()


def run_checks(settings: Settings) -> int:
    failed = False
    for check_group in CHECKS:
        try:
            results = check_group(settings)
        except KimiTrayError as exc:
            results = [Check("fail", check_group.__name__.removeprefix("check_"), str(exc))]
        for check in results:
            failed |= check.level == "fail"
            line = f"{check.level:<5} {check.name}: {check.detail}"
            if check.fix:
                line += f"  -> fix: {check.fix}"
            print(line)
    return 1 if failed else 0
