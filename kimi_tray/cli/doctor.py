"""`kimi-tray doctor`: each check one line, ok/warn/fail, with the fix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace

from kimi_tray.core.config import Settings, check_oauth_host
from kimi_tray.core.errors import KimiTrayError, LocalFileError
from kimi_tray.stores.credentials import choose_source
from kimi_tray.stores.openclaw import (
    PLUGIN_FIX,
    AutoTarget,
    CliTarget,
    Detector,
    LegacyFileTarget,
    OffTarget,
    OpenClawTarget,
    Problem,
    Token,
    choose_target,
)
from kimi_tray.stores.openclaw.cli_target import GATEWAY_NOT_RELOADED_DETAIL, auth_order_problems
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.state import OpenClawMemory, OpenClawView, PersistentState, StateStore


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
    """What OpenClaw can do with our token, asked from OpenClaw itself: its generation, its Kimi
    plugin and models, every Kimi profile, the auth order and the gateway."""
    store = StateStore(settings.state_dir)
    state = store.load()
    target = choose_target(settings, state.openclaw_memory)
    checks = []
    state_dir = settings.openclaw_state_dir
    if state_dir.is_dir():
        checks.append(Check("ok", "openclaw state", str(state_dir)))
    else:
        checks.append(Check("warn", "openclaw state", f"{state_dir} does not exist",
                            "install OpenClaw, or set OPENCLAW_STATE_DIR"))
    command = settings.openclaw_command[0]
    has_cli = shutil.which(command) is not None
    if has_cli:
        checks.append(Check("ok", "openclaw command", shutil.which(command) or command))
    else:
        level = "fail" if isinstance(target, CliTarget) else "warn"
        checks.append(Check(level, "openclaw command", f"{command} is not on PATH",
                            "install OpenClaw (npm install -g openclaw) or set openclaw_command"))
    if isinstance(target, OffTarget):
        checks.append(Check("warn", "openclaw sync", target.reason,
                            "install OpenClaw, or ignore if you only use the Kimi CLI"))
        return checks
    learnt = replace(state.openclaw_memory)
    try:
        checks += _check_openclaw_target(settings, target, state, has_cli)
    finally:
        if state.openclaw_memory != learnt:  # keep what we learnt about OpenClaw, nothing else
            latest = store.load()
            latest.openclaw_memory = state.openclaw_memory
            store.save(latest)
    return checks


def _check_openclaw_target(settings: Settings, target: OpenClawTarget, state: PersistentState,
                           has_cli: bool) -> list[Check]:
    checks: list[Check] = []
    now = _now()
    if isinstance(target, AutoTarget):
        try:
            target.resolve()
        except KimiTrayError as exc:
            return checks + [Check("fail", "openclaw generation", str(exc),
                                   "run `openclaw doctor` and fix what it reports")]
        memory = state.openclaw_memory
        how = ("credentials in SQLite, written with `openclaw models auth paste-token`"
               if memory.generation == "cli" else
               "credentials in auth-profiles.json, written under OpenClaw's lock; the gateway "
               "restarts after each renewal")
        checks.append(Check("ok", "openclaw generation", f"{memory.version}: {how}"))
        target = target.current
    checks.append(Check("ok", "openclaw sync", target.describe()))
    if has_cli:
        checks += _check_kimi_plugin(settings, state.openclaw_memory, now)
    source = choose_source(settings)
    try:
        creds = source.load(fix_mode=False)
        view = target.inspect(Token(creds.access_token, creds.expires_at), now)
    except KimiTrayError as exc:
        return checks + [Check("fail", "openclaw profile", str(exc), "run `kimi-tray renew`")]
    if view.state in ("missing", "stale"):
        checks.append(Check("fail", "openclaw profile", f"{view.state}: {view.detail}",
                            "kimi-tray renew"))
        return checks
    if view.state == "error" and not view.token_fp:
        return checks + [Check("fail", "openclaw profile", view.detail, "kimi-tray renew")]
    ours = str(getattr(target, "holding_profile_id", None) or getattr(target, "profile_id", "our profile"))
    checks.append(Check("ok", "openclaw profile", f"in_sync: {ours} holds the current token"))
    problems = list(getattr(target, "problems", []))
    if isinstance(target, LegacyFileTarget) and has_cli:
        try:
            report = Runner(settings).json(["models", "status", "--json"])
            provider = "kimi-coding" if ours == target.profile_id else "kimi"
            problems += auth_order_problems(report, provider, ours)
        except KimiTrayError as exc:
            problems.append(Problem(str(exc), "openclaw doctor", fatal=False,
                                    check="openclaw auth order"))
    profile_problems = [p for p in problems if p.check == "openclaw profiles" and p.fix != PLUGIN_FIX]
    for problem in problems:
        if problem.fix == PLUGIN_FIX:
            continue  # reported by the plugin check
        level = "ok" if not problem.fix else "fail" if problem.fatal else "warn"
        checks.append(Check(level, problem.check, problem.text, problem.fix))
    if not profile_problems:
        checks.append(Check("ok", "openclaw profiles", "every Kimi profile holds the current token"))
    if has_cli:
        checks += _check_gateway(settings, state.openclaw)
    return checks


def _check_kimi_plugin(settings: Settings, memory: OpenClawMemory, now: float) -> list[Check]:
    """Without the Kimi provider plugin OpenClaw stores the token but lists no Kimi model."""
    runner = Runner(settings)
    try:
        present = Detector(runner, memory).kimi_plugin(now, fresh=True)
    except KimiTrayError as exc:
        return [Check("fail", "openclaw kimi plugin", str(exc), "run `openclaw doctor`")]
    if not present:
        return [Check("fail", "openclaw kimi plugin",
                      "OpenClaw's Kimi provider plugin is not installed, so OpenClaw cannot use Kimi "
                      "(and each openclaw call spends seconds trying to install it)", PLUGIN_FIX)]
    checks = [Check("ok", "openclaw kimi plugin", "installed and enabled")]
    try:
        listed = runner.json(["models", "list", "--all", "--provider", "kimi", "--json"])
    except KimiTrayError as exc:
        return checks + [Check("fail", "openclaw kimi models", str(exc), PLUGIN_FIX)]
    keys = [m.get("key") for m in listed.get("models") or [] if isinstance(m, dict)]
    if not keys:
        return checks + [Check("fail", "openclaw kimi models", "OpenClaw lists no Kimi model",
                               "openclaw plugins enable kimi")]
    return checks + [Check("ok", "openclaw kimi models", ", ".join(str(k) for k in keys[:3]))]


def _check_gateway(settings: Settings, view: OpenClawView) -> list[Check]:
    """A running gateway must hold the current token; one that is down reads it when it starts."""
    try:
        report = Runner(settings).json(["gateway", "status", "--json"])
    except KimiTrayError as exc:
        return [Check("warn", "openclaw gateway", str(exc), "openclaw gateway status")]
    rpc = found if isinstance(found := report.get("rpc"), dict) else {}
    if not rpc.get("ok"):
        return [Check("warn", "openclaw gateway",
                      "not running; it reads the current token when it starts",
                      "openclaw gateway start")]
    if "gateway restart failed" in view.detail or GATEWAY_NOT_RELOADED_DETAIL in view.detail:
        return [Check("fail", "openclaw gateway",
                      "running, but it did not take the current token after the last renewal",
                      "openclaw gateway restart")]
    return [Check("ok", "openclaw gateway", "running with the current token")]


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
    """Run each entry's command line with --version, as the login session would."""
    from kimi_tray.platform.autostart import check_command, get_backend, get_daemon_backend, is_on

    checks = []
    entries = [("start on login", get_backend(), "kimi-tray autostart on")]
    daemon = get_daemon_backend()
    if daemon is not None:
        entries.append(("daemon unit", daemon, "kimi-tray autostart on --daemon"))
    for name, backend, fix in entries:
        if not is_on(backend):
            continue
        command = backend.written_command()
        problem = "the entry cannot be read" if command is None else check_command(command)
        if problem or command is None:
            checks.append(Check("fail", name, f"{backend.location()}: {problem}",
                                f"run `{fix}` to rewrite it"))
        else:
            checks.append(Check("ok", name, f"{backend.location()} runs {' '.join(command.argv)}"))
    checks += check_reboot_line()
    if not checks:
        checks.append(Check("warn", "start on login", "nothing starts kimi-tray when you log in",
                            "run `kimi-tray autostart on` (desktop) or "
                            "`kimi-tray autostart on --daemon` (server)"))
    return checks


def check_reboot_line() -> list[Check]:
    """install.sh's crontab @reboot line, where there is no systemd user session."""
    from kimi_tray.platform.autostart import check_command
    from kimi_tray.platform.autostart.cron import LOCATION, reboot_command

    command = reboot_command()
    if command is None:
        return []
    problem = check_command(command) if command.argv else "the line cannot be read"
    if problem:
        return [Check("fail", "daemon at boot", f"the {LOCATION}: {problem}",
                      "run ./install.sh again, or `crontab -e` and fix or delete the line")]
    return [Check("ok", "daemon at boot", f"the {LOCATION} runs {' '.join(command.argv)} daemon")]


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
    from kimi_tray.kimi.oauth import device_headers
    from kimi_tray.kimi.probe import base_url
    from kimi_tray.kimi.probe import run_probe as send_probe
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
