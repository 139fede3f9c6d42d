"""`kimi-tray doctor`: each check one line, ok/warn/fail, with the fix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings, check_oauth_host
from kimi_tray.core.errors import KimiTrayError, LocalFileError
from kimi_tray.stores.credentials import choose_source
from kimi_tray.stores.openclaw import Token, choose_target
from kimi_tray.stores.state import StateStore


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
        checks.append(Check("ok", "refresh token", "present in the file"))
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
    """What OpenClaw can do with our token: the target in use says what to check (its generation,
    Kimi plugin and models, every Kimi profile, the auth order, the gateway)."""
    store = StateStore(settings.state_dir)
    state = store.load()
    target = choose_target(settings, state.openclaw_memory)
    state_dir = settings.openclaw_state_dir
    if state_dir.is_dir():
        checks = [Check("ok", "openclaw state", str(state_dir))]
    else:
        checks = [Check("warn", "openclaw state", f"{state_dir} does not exist",
                        "install OpenClaw, or set OPENCLAW_STATE_DIR")]

    def load_token() -> Token:
        creds = choose_source(settings).load(fix_mode=False)
        return Token(creds.access_token, creds.expires_at)

    learnt = replace(state.openclaw_memory)
    try:
        checks += target.doctor_checks(load_token, state.openclaw, _now())
    finally:
        if state.openclaw_memory != learnt:  # keep what we learnt about OpenClaw, nothing else
            latest = store.load()
            latest.openclaw_memory = state.openclaw_memory
            store.save(latest)
    return checks


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


def check_autostart(_: Settings) -> list[Check]:
    """Run each entry's command line with --version, as the login session (or cron) would."""
    from kimi_tray.platform.autostart import all_backends, check_command, is_on

    checks = []
    for backend in all_backends():
        if not is_on(backend):
            continue
        command = backend.written_command()
        problem = "the entry cannot be read" if command is None else check_command(command)
        if problem or command is None:
            checks.append(Check("fail", backend.label, f"{backend.location()}: {problem}", backend.fix))
        else:
            runs = " ".join((*command.argv, *backend.extra_args))
            checks.append(Check("ok", backend.label, f"{backend.location()} runs {runs}"))
    if not checks:
        checks.append(Check("warn", "start on login", "nothing starts kimi-tray when you log in",
                            "run `kimi-tray autostart on` (desktop) or "
                            "`kimi-tray autostart on --daemon` (server)"))
    return checks


def check_renewer(settings: Settings) -> list[Check]:
    """Is anything renewing right now? Without a running tray or daemon the token runs out."""
    from kimi_tray.platform.single_instance import running_instance

    holder = running_instance(settings.state_dir)
    if holder is not None:
        return [Check("ok", "renewer", holder.describe())]
    return [Check("fail", "renewer", "no kimi-tray tray or daemon is running: nothing renews the token",
                  "start `kimi-tray` on a desktop, or `kimi-tray daemon` "
                  "(`systemctl --user start kimi-tray` where the unit is installed)")]


def check_token(settings: Settings) -> list[Check]:
    """The token's health as the engine sees it (a rejected refresh token is remembered)."""
    from kimi_tray.core.health import Health, format_duration
    from kimi_tray.engine.scheduler import Engine
    from kimi_tray.ui.menu import first_sentence, what_to_do

    if not choose_source(settings).exists():
        return []  # the credentials check already says so, with the fix
    status = Engine(settings).snapshot()
    fix = what_to_do(status, cli=True).rstrip(".")
    fix = fix[0].lower() + fix[1:] if fix else ""
    left = status.seconds_left
    if status.health is Health.NEEDS_LOGIN:
        return [Check("fail", "token", first_sentence(status.message or "a login is needed"),
                      fix or "run `kimi-tray login`")]
    if status.health is Health.ERROR:
        return [Check("fail", "token", status.message, fix)]
    if status.health is Health.EXPIRED:
        return [Check("fail", "token", f"the access token expired {format_duration(-(left or 0))} ago",
                      "run `kimi-tray renew`, and keep a tray or daemon running")]
    if status.health is Health.EXPIRING:
        return [Check("warn", "token", f"only {format_duration(left or 0)} left",
                      "run `kimi-tray renew`")]
    return [Check("ok", "token", f"{status.health.value}, {format_duration(left or 0)} left")]


def check_oauth_reachable(settings: Settings) -> list[Check]:
    """A short real connection to the OAuth host. Tests point it at loopback, or turn it off."""
    from urllib.parse import urlsplit

    import httpx

    from kimi_tray.core.config import is_loopback_host

    host = urlsplit(settings.oauth_host).hostname or ""
    if os.environ.get("KIMI_TRAY_NO_NETWORK_CHECK") == "1" and not is_loopback_host(host):
        return []
    try:
        with httpx.Client(timeout=5.0) as client:
            client.head(settings.oauth_host)
    except httpx.TimeoutException:
        return [Check("fail", "oauth reachable", f"{settings.oauth_host} did not answer within 5 s",
                      "check the network connection (and proxy settings)")]
    except httpx.TransportError as exc:
        return [Check("fail", "oauth reachable", f"cannot connect to {settings.oauth_host}: "
                      f"{type(exc).__name__}", "check the network connection (and proxy settings)")]
    return [Check("ok", "oauth reachable", settings.oauth_host)]


def check_config(settings: Settings, config_error: str = "") -> list[Check]:
    from kimi_tray.core.config import config_path

    if config_error:
        return [Check("fail", "config", f"{config_error} The other checks use the defaults.",
                      "correct the file; until then every command but the tray, doctor and uninstall "
                      "stops at it")]
    if settings.config_file is not None:
        return [Check("ok", "config", f"loaded {settings.config_file}")]
    return [Check("ok", "config", f"defaults ({config_path()} does not exist)")]


CHECKS: list[Callable[[Settings], list[Check]]] = [
    check_credentials, check_oauth, check_openclaw, check_log_dir, check_old_cron, check_desktop,
    check_config, check_token, check_oauth_reachable, check_autostart, check_renewer,
]


def _now() -> float:
    import time

    return time.time()


def run_checks(settings: Settings, config_error: str = "") -> int:
    """config_error: why the config file could not be used (settings are then the defaults)."""
    failed = False
    for check_group in CHECKS:
        try:
            if check_group is check_config:
                results = check_config(settings, config_error)
            else:
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


def run_probe(settings: Settings) -> int:
    """`doctor --probe`: one minimal real request each way; 0 when OpenClaw's form is accepted."""
    from kimi_tray.cli.probe import base_url
    from kimi_tray.cli.probe import run_probe as send_probe
    from kimi_tray.kimi.oauth import device_headers
    from kimi_tray.stores.credentials import device_id

    source = choose_source(settings)
    try:
        base = base_url(settings)
        creds = source.load(fix_mode=False)
    except KimiTrayError as exc:
        print(f"fail  probe: {exc}")
        return 1
    if creds.expires_at <= _now():
        print("fail  probe: the Kimi access token has expired  -> fix: kimi-tray renew")
        return 1
    print(f"probe {base}: one minimal request (1 output token) each way")
    answers, meaning = send_probe(settings, creds.access_token,
                                  device_headers(device_id(source.home)))
    for answer in answers:
        level = "ok" if answer.accepted else "fail"
        print(f"{level:<5} probe {answer.line()} [{answer.form.describe}]")
    print(f"      {meaning}")
    return 0 if answers[0].accepted else 1
