"""Command line: tray (default), daemon, status, renew, login, autostart, doctor.

Exit codes, the same for every command:
  0  success (status: the token is fresh or ageing)
  1  failure (server unreachable after retries, bad local file, expired token, ...)
  2  bad usage
  3  a browser login is needed (refresh token dead, or no credentials)
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
from kimi_tray.config import Settings, load_settings
from kimi_tray.errors import ConfigError, KimiTrayError, LoginNeeded
from kimi_tray.health import Health, Status, format_duration
from kimi_tray.logs import setup_logging

if TYPE_CHECKING:
    from kimi_tray.engine import Renewer

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_LOGIN = 0, 1, 2, 3

EPILOG = """exit codes:
  0  success; for status: the token is fresh or ageing
  1  failure (server unreachable after retries, bad local file, token expired, ...)
  2  bad usage
  3  a browser login is needed (refresh token dead or no credentials): run `kimi-tray login`
"""


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
    autostart = commands.add_parser("autostart", help="start the tray when you log in")
    autostart.add_argument("action", choices=["on", "off", "status"])
    commands.add_parser("doctor", help="check the setup; each line ok/warn/fail with the fix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kimi_tray import frozen

    frozen.prepare()
    args = build_parser().parse_args(argv)
    command = args.command or "tray"
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"kimi-tray: {exc}", file=sys.stderr)
        return EXIT_FAIL
    handlers = {
        "tray": run_tray,
        "daemon": run_daemon,
        "status": run_status,
        "renew": run_renew,
        "login": run_login,
        "autostart": run_autostart,
        "doctor": run_doctor,
    }
    try:
        return handlers[command](settings, args)
    except KeyboardInterrupt:
        print("\nkimi-tray: cancelled.", file=sys.stderr)
        return 130
    except KimiTrayError as exc:
        print(f"kimi-tray: {exc}", file=sys.stderr)
        return exc.exit_code


def _renewer(settings: Settings) -> Renewer:
    from kimi_tray.engine import Renewer

    return Renewer(settings)


# ----------------------------------------------------------------------------- status
def status_exit_code(health: Health) -> int:
    if health.is_ok:
        return EXIT_OK
    return EXIT_LOGIN if health is Health.NEEDS_LOGIN else EXIT_FAIL


def status_dict(status: Status, renewer: Renewer) -> dict[str, object]:
    return {
        "health": status.health.value,
        "expires_at": status.expires_at,
        "seconds_left": None if status.seconds_left is None else round(status.seconds_left, 1),
        "credentials_file": status.credentials_file,
        "credentials_owner": renewer.source.owner,
        "last_renewal": status.last_renewal,
        "message": status.message,
        "openclaw": status.openclaw,
        "openclaw_detail": status.openclaw_detail,
        "openclaw_mode": renewer.target.mode,
        "refresh_token_expires_at": status.refresh_token_expires_at,
        "summary": status.summary(),
    }


def _clock_time(epoch: float | None) -> str:
    if not epoch:
        return "unknown"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(None, to_stderr=True, verbose=args.verbose)
    renewer = _renewer(settings)
    status = renewer.snapshot()
    if args.json:
        print(json.dumps(status_dict(status, renewer), indent=2))
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
    print(f"Credentials:   {status.credentials_file} ({renewer.source.owner})")
    print(f"Health:        {health_line}")
    print(f"Last renewal:  {_clock_time(status.last_renewal)}")
    print(f"OpenClaw:      {status.openclaw.replace('_', ' ')}"
          + (f" ({status.openclaw_detail})" if status.openclaw_detail else "")
          + f" [{renewer.target.describe()}]")
    if forced:
        forced_line = _clock_time(forced)
    elif status.expires_at is not None and status.health is not Health.NEEDS_LOGIN:
        forced_line = "unknown (the refresh token does not say when it ends)"
    else:
        forced_line = "unknown"
    print(f"Forced login:  {forced_line}")
    return status_exit_code(status.health)


# ----------------------------------------------------------------------------- renew
def run_renew(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings.log_dir, to_stderr=args.verbose, verbose=args.verbose)
    renewer = _renewer(settings)
    try:
        result = renewer.renew(force=True)
    except LoginNeeded as exc:
        print(f"kimi-tray: {exc} Run `kimi-tray login`.", file=sys.stderr)
        return EXIT_LOGIN
    left = format_duration(result.credentials.expires_at - renewer.clock.now())
    what = "Renewed" if result.renewed else "Already renewed by another program"
    openclaw = result.openclaw.state.replace("_", " ")
    line = f"{what}: {left} left; OpenClaw {openclaw}"
    if result.openclaw.state not in ("in_sync", "off"):
        line += f" ({result.openclaw.detail})"
    if result.restart_message:
        line += f"; {result.restart_message}"
    print(line + ".")
    return EXIT_OK


# ----------------------------------------------------------------------------- daemon
def run_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.single_instance import AlreadyRunning, InstanceLock

    instance = InstanceLock(settings.state_dir)
    try:
        instance.acquire()
    except AlreadyRunning as exc:
        print(f"kimi-tray: another kimi-tray (pid {exc}) is already running; "
              "only one may renew the token.", file=sys.stderr)
        return EXIT_FAIL
    log_path = setup_logging(settings.log_dir, to_stderr=True, verbose=args.verbose)
    renewer = _renewer(settings)
    from kimi_tray.daemon import DaemonReporter

    renewer.add_listener(DaemonReporter(renewer).on_status)
    log.info("kimi-tray %s daemon started; managing %s; %s; log file %s", __version__,
             renewer.source.path, renewer.target.describe(), log_path)

    def stop(signum: int, _frame: object) -> None:
        log.info("Stopping (signal %d).", signum)
        renewer.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    from kimi_tray.events import EventSources

    sources = EventSources(renewer).start()  # file changes and resume wake the engine at once
    renewer.start()
    while renewer.join(3600):  # a signal interrupts the wait; no periodic wake-ups here
        pass
    sources.stop()
    instance.release()
    log.info("kimi-tray daemon stopped.")
    return EXIT_OK


# ----------------------------------------------------------------------------- others
def run_tray(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.tray_app import run

    return run(settings, verbose=args.verbose)


def run_login(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.login_cli import run

    return run(settings, open_browser_too=not args.no_browser, verbose=args.verbose)


def run_autostart(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.autostart import get_backend

    backend = get_backend()
    if args.action == "on":
        backend.enable()
        print(f"Start on login: on ({backend.location()}).")
    elif args.action == "off":
        backend.disable()
        print("Start on login: off.")
    else:
        state = "on" if backend.is_enabled() else "off"
        print(f"Start on login: {state} ({backend.location()}).")
    return EXIT_OK


def run_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from kimi_tray.doctor import run_checks

    setup_logging(None, to_stderr=args.verbose, verbose=args.verbose)
    return run_checks(settings)
