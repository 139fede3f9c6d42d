"""Command line: tray (default), daemon, status, renew, login, usage, autostart, doctor, uninstall.

Exit codes, the same for every command, are in kimi_tray/core/exit_codes.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kimi_tray import __version__
from kimi_tray.core import exit_codes
from kimi_tray.core.config import Settings, load_settings
from kimi_tray.core.errors import ConfigError, KimiTrayError, LoginNeeded
from kimi_tray.core.health import Health, Status, format_duration
from kimi_tray.core.logs import setup_logging

if TYPE_CHECKING:
    from kimi_tray.engine.scheduler import Engine

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_LOGIN = (exit_codes.OK, exit_codes.FAILURE, exit_codes.USAGE,
                                              exit_codes.LOGIN_NEEDED)
EXIT_CANCELLED, EXIT_PIPE = exit_codes.CANCELLED, exit_codes.PIPE_CLOSED

EPILOG = exit_codes.help_text()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kimi-tray",
        description="Keeps a Kimi Code OAuth login alive for the Kimi CLI and OpenClaw.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kimi-tray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("tray", help="the tray icon (the default)", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands.add_parser("daemon", help="renew in the foreground without a UI (servers)",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    status = commands.add_parser("status", help="show the token's health; exit code says it",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("renew", help="refresh the token now and sync OpenClaw", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    login = commands.add_parser("login", help="log in with the browser (device flow)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    login.add_argument("--no-browser", action="store_true",
                       help="only print the URL (for SSH sessions)")
    usage = commands.add_parser("usage", help="fetch the Kimi quota now (weekly and 5-hour windows)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    usage.add_argument("--json", action="store_true", help="print one JSON object")
    autostart = commands.add_parser("autostart", help="start the tray when you log in")
    autostart.add_argument("action", choices=["on", "off", "status"])
    autostart.add_argument("--daemon", action="store_true",
                           help="the headless daemon as a systemd user unit (Linux servers)")
    doctor = commands.add_parser("doctor", help="check the setup; each line ok/warn/fail with the fix")
    doctor.add_argument("--probe", action="store_true",
                        help="also send Kimi one minimal request the way OpenClaw sends the token, "
                             "and one the way the Kimi CLI does, and say which Kimi accepts")
    uninstall = commands.add_parser("uninstall", help="remove kimi-tray (asks before removing data)")
    uninstall.add_argument("--yes", action="store_true",
                           help="remove state, log, config and our OpenClaw profile without asking")
    uninstall.add_argument("--keep-data", action="store_true", help="keep state, log and config")
    uninstall.add_argument("--keep-openclaw-profile", action="store_true",
                           help="keep the profile kimi-tray maintains in OpenClaw")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kimi_tray.platform import frozen

    frozen.prepare()
    args = build_parser().parse_args(argv)
    command = args.command or "tray"
    try:
        settings = load_settings()
    except ConfigError as exc:
        if command not in RUN_WITH_BAD_CONFIG:
            print(f"kimi-tray: {exc}", file=sys.stderr)
            return EXIT_FAIL
        fallback, args.config_error = _settings_without_config_file(exc, command)
        if fallback is None:
            return EXIT_FAIL
        settings = fallback
    handlers = {
        "tray": run_tray,
        "daemon": run_daemon,
        "status": run_status,
        "renew": run_renew,
        "login": run_login,
        "usage": run_usage,
        "autostart": run_autostart,
        "doctor": run_doctor,
        "uninstall": run_uninstall,
    }
    try:
        code = handlers[command](settings, args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then ours to handle
        return code
    except BrokenPipeError:
        return _output_closed()
    except KeyboardInterrupt:
        print("\nkimi-tray: cancelled.", file=sys.stderr)
        return EXIT_CANCELLED
    except KimiTrayError as exc:
        print(f"kimi-tray: {exc}", file=sys.stderr)
        return exc.exit_code


def _output_closed() -> int:
    """The reader went away (`kimi-tray status | head -1`): stop quietly, like other tools."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
    return EXIT_PIPE


# With an unusable config file these go on with the defaults: the tray so the user sees the problem
# (a notification, a menu line, the log) instead of an icon that never appears; doctor reports it
# among its other checks; uninstall must work whatever the config says.
RUN_WITH_BAD_CONFIG = {"tray": " Starting with the default settings.", "doctor": None,
                       "uninstall": " Going on with the default settings."}


def _settings_without_config_file(error: ConfigError, command: str) -> tuple[Settings | None, str]:
    said = RUN_WITH_BAD_CONFIG[command]
    if said is not None:
        print(f"kimi-tray: {error}{said}", file=sys.stderr)
    try:
        return load_settings(read_config_file=False), str(error)
    except ConfigError as again:  # the environment itself is wrong: nothing to fall back on
        print(f"kimi-tray: {again}", file=sys.stderr)
        return None, str(again)


def _engine(settings: Settings) -> Engine:
    """For the one-shot commands: they call the engine's functions on their own thread, with no
    engine thread running beside them."""
    from kimi_tray.engine.scheduler import Engine

    return Engine(settings)


# ----------------------------------------------------------------------------- status
def status_exit_code(health: Health) -> int:
    if health.is_ok:
        return EXIT_OK
    return EXIT_LOGIN if health is Health.NEEDS_LOGIN else EXIT_FAIL


def status_dict(status: Status) -> dict[str, object]:
    return {
        "health": status.health.value,
        "expires_at": status.expires_at,
        "seconds_left": None if status.seconds_left is None else round(status.seconds_left, 1),
        "credentials_file": status.credentials_file,
        "credentials_owner": status.credentials_owner,
        "last_renewal": status.last_renewal,
        "message": status.message,
        "openclaw": status.openclaw,
        "openclaw_detail": status.openclaw_detail,
        "openclaw_mode": status.openclaw_mode,
        "refresh_token_expires_at": status.refresh_token_expires_at,
        "summary": status.summary(),
        "usage": status.usage.to_json(status.now) if status.usage is not None else None,
    }


def _clock_time(epoch: float | None) -> str:
    if not epoch:
        return "unknown"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(None, to_stderr=True, verbose=args.verbose)
    engine = _engine(settings)
    engine.usage_for_cli(force=False)  # fetches only when the saved numbers are stale
    status = engine.snapshot()
    if args.json:
        from kimi_tray.platform.single_instance import running_instance

        holder = running_instance(settings.state_dir)
        report = {**status_dict(status), "renewer": renewer_line(settings),
                  "renewer_pid": holder.pid if holder else None,
                  "config_file": str(settings.config_file) if settings.config_file else None}
        print(json.dumps(report, indent=2))
        return status_exit_code(status.health)
    left = status.seconds_left
    if status.health in (Health.NEEDS_LOGIN, Health.ERROR):
        health_line = f"{status.health.value}: {status.message}"
    elif left is not None and left > 0:
        health_line = (f"{status.health.value}, {format_duration(left)} left "
                       f"(expires {_clock_time(status.expires_at)})")
    else:
        health_line = f"{status.health.value} (at {_clock_time(status.expires_at)})"
    forced = status.refresh_token_expires_at
    print(f"Credentials:   {status.credentials_file} ({status.credentials_owner})")
    print(f"Health:        {health_line}")
    print(f"Last renewal:  {_clock_time(status.last_renewal)}")
    print(f"OpenClaw:      {status.openclaw.replace('_', ' ')}"
          + (f" ({status.openclaw_detail})" if status.openclaw_detail else "")
          + f" [{status.openclaw_target}]")
    if forced:
        forced_line = _clock_time(forced)
    elif status.expires_at is not None and status.health is not Health.NEEDS_LOGIN:
        forced_line = "unknown (the refresh token does not say when it ends)"
    else:
        forced_line = "unknown"
    print(f"Forced login:  {forced_line}")
    print_usage_lines(status)
    from kimi_tray.ui.menu import what_to_do

    fix = what_to_do(status, cli=True)
    if fix:
        print(f"Fix:           {fix[0].lower() + fix[1:]}")
    print(f"Renewer:       {renewer_line(settings)}")
    print(f"Config:        {settings.config_file or 'defaults (no config file)'}")
    return status_exit_code(status.health)


def renewer_line(settings: Settings) -> str:
    """Whether a tray or daemon renews now, and whether one starts at login."""
    from kimi_tray.platform.autostart import all_backends, is_on
    from kimi_tray.platform.single_instance import running_instance

    holder = running_instance(settings.state_dir)
    now = holder.describe() if holder else "nothing is running (the token will run out)"
    starts = [backend.starts for backend in all_backends() if is_on(backend)]
    return f"{now}; starts: {', '.join(starts) if starts else 'nothing at login'}"


# ----------------------------------------------------------------------------- usage
def print_usage_lines(status: Status) -> None:
    """'Usage:  plan X, as of 14:03' and then one line per window."""
    from kimi_tray.ui.usage_text import age_line, plan_words, window_line

    usage = status.usage
    if usage is None:
        return
    head = ", ".join(part for part in (plan_words(usage), age_line(usage, status.now)) if part)
    print(f"Usage:         {head}")
    for window in usage.windows:
        print(f"               {window_line(window, status.now)}")


def run_usage(settings: Settings, args: argparse.Namespace) -> int:
    """Fetch the quota now. Exit 0 with fresh numbers, 1 when they could not be updated, 3 when a
    login is needed (no request is made with a dead or expired token)."""
    setup_logging(None, to_stderr=args.verbose, verbose=args.verbose)
    if not settings.usage_enabled:
        print("kimi-tray: usage is turned off (usage_enabled = false in the config file).",
              file=sys.stderr)
        return EXIT_FAIL
    engine = _engine(settings)
    status = engine.snapshot()
    if status.health is Health.NEEDS_LOGIN:
        print(f"kimi-tray: {status.message or 'A login is needed.'} Run `kimi-tray login`.",
              file=sys.stderr)
        return EXIT_LOGIN
    if status.health in (Health.EXPIRED, Health.ERROR):
        print(f"kimi-tray: cannot ask for the usage: {status.summary()}. Run `kimi-tray renew` first.",
              file=sys.stderr)
        return EXIT_FAIL
    engine.usage_for_cli(force=True)
    status = engine.snapshot()
    usage = status.usage
    fresh = usage is not None and not usage.is_stale(status.now)
    if args.json:
        print(json.dumps(usage.to_json(status.now) if usage else None, indent=2))
    else:
        print_usage_lines(status)
    if not fresh:
        if not args.json:
            reason = (usage.error if usage else "") or "unknown error"
            print(f"kimi-tray: could not update the usage: {reason.rstrip('.')}.",
                  file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


# ----------------------------------------------------------------------------- renew
def run_renew(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings.log_dir, to_stderr=args.verbose, verbose=args.verbose)
    engine = _engine(settings)

    def progress(attempt: int, most: int, reason: str, delay: float) -> None:
        print(f"kimi-tray: attempt {attempt} of {most} failed: {reason.rstrip('.')}; next in {delay:.0f} s.",
              file=sys.stderr, flush=True)

    try:
        result = engine.renew(force=True, on_retry=progress)
    except LoginNeeded as exc:
        print(f"kimi-tray: {exc} Run `kimi-tray login`.", file=sys.stderr)
        return EXIT_LOGIN
    left = format_duration(result.credentials.expires_at - engine.clock.now())
    what = "Renewed" if result.renewed else "Already renewed by another program"
    openclaw = result.openclaw.state.replace("_", " ")
    line = f"{what}: {left} left; OpenClaw {openclaw}"
    if result.openclaw.state not in ("in_sync", "off"):
        line += f" ({result.openclaw.detail})"
    if result.restart_message:
        line += f"; {result.restart_message}"
    print(line.rstrip(".") + ".")
    view = result.openclaw
    if view.state in ("in_sync", "off"):
        return EXIT_OK
    from kimi_tray.stores.state import fingerprint

    if view.token_fp == fingerprint(result.credentials.access_token):
        print("kimi-tray: the Kimi token was saved and OpenClaw holds it, but OpenClaw cannot use "
              f"it: {view.detail} Run `kimi-tray doctor` for the fix.", file=sys.stderr)
    else:
        print(f"kimi-tray: the Kimi token was saved, but OpenClaw was not updated: {view.detail}",
              file=sys.stderr)
    return EXIT_FAIL


# ----------------------------------------------------------------------------- daemon
def run_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.platform.single_instance import AlreadyRunning, InstanceLock

    instance = InstanceLock(settings.state_dir, mode="daemon")
    try:
        instance.acquire()
    except AlreadyRunning as exc:
        print(f"kimi-tray: another kimi-tray (pid {exc}) is already running; "
              "only one may renew the token.", file=sys.stderr)
        return EXIT_FAIL
    log_path = setup_logging(settings.log_dir, to_stderr=True, verbose=args.verbose)
    from kimi_tray.engine.http_child import child_exchanges
    from kimi_tray.engine.scheduler import Engine

    engine = Engine(settings, exchange=child_exchanges(settings.state_dir))
    handle = engine.handle()
    from kimi_tray.cli.daemon import DaemonReporter

    handle.add_listener(DaemonReporter(handle).on_status)
    log.info("kimi-tray %s daemon started; managing %s; %s; log file %s", __version__,
             handle.status.credentials_file, handle.status.openclaw_target, log_path)

    def stop(signum: int, _frame: object) -> None:
        log.info("Stopping (signal %d).", signum)
        handle.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    from kimi_tray.engine.events import EventSources

    sources = EventSources(engine).start()  # file changes and resume wake the engine at once
    handle.start()
    while handle.join(3600):  # a signal interrupts the wait; no periodic wake-ups here
        pass
    sources.stop()
    instance.release()
    log.info("kimi-tray daemon stopped.")
    return EXIT_OK


# ----------------------------------------------------------------------------- others
def run_tray(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.ui.tray_app import run

    return run(settings, verbose=args.verbose, config_error=getattr(args, "config_error", ""))


def run_login(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.cli.login import run

    return run(settings, open_browser_too=not args.no_browser, verbose=args.verbose)


def run_autostart(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.platform.autostart import check_command, get_backend, get_daemon_backend

    backend = get_daemon_backend() if args.daemon else get_backend()
    if backend is None:
        print("kimi-tray: --daemon needs systemd (Linux); use `kimi-tray autostart on`.",
              file=sys.stderr)
        return EXIT_USAGE
    what = "Daemon at boot" if args.daemon else "Start on login"
    if args.action == "on":
        backend.enable()
        print(f"{what}: on ({backend.location()}).")
        note = backend.after_enable()
        if note:
            print(note)
    elif args.action == "off":
        backend.disable()
        print(f"{what}: off.")
    else:
        command = backend.written_command() if backend.is_enabled() else None
        if command is None:
            print(f"{what}: off ({backend.location()}).")
            return EXIT_OK
        problem = check_command(command)
        print(f"{what}: on ({backend.location()}); runs {' '.join(command.argv)}"
              + (f" in {command.cwd}" if command.cwd else "") + ".")
        if problem:
            print(f"kimi-tray: the entry is broken: {problem}. "
                  f"Run `kimi-tray autostart on{' --daemon' if args.daemon else ''}` to rewrite it.",
                  file=sys.stderr)
            return EXIT_FAIL
    return EXIT_OK


def run_uninstall(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.cli.uninstall import uninstall

    def choice(keep: bool) -> bool | None:
        return False if keep else (True if args.yes else None)

    return uninstall(settings, remove_data=choice(args.keep_data),
                     remove_profile=choice(args.keep_openclaw_profile))


def run_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.cli.doctor import run_checks

    setup_logging(None, to_stderr=args.verbose, verbose=args.verbose)
    code = run_checks(settings, config_error=getattr(args, "config_error", ""))
    if args.probe:
        from kimi_tray.cli.doctor import run_probe

        code = max(code, run_probe(settings))
    return code
