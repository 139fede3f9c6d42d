"""`kimi-tray login`: the engine's device login in a terminal, with a live countdown; Ctrl-C cancels.

The engine runs the login (code, waiting, saving, OpenClaw hand-off) exactly as for the tray; this
face sends it StartLogin / CancelLogin and prints what its Status shows.
"""

from __future__ import annotations

import sys
import threading
import time

from kimi_tray.core.config import Settings
from kimi_tray.core.health import LoginView, Status, format_duration
from kimi_tray.core.logs import setup_logging
from kimi_tray.engine.commands import CancelLogin, StartLogin
from kimi_tray.engine.scheduler import Engine, EngineHandle
from kimi_tray.platform.browser import open_url

CANCEL_WAIT = 10.0  # seconds to wait for the engine to confirm a cancel before leaving anyway


class _LoginWatch:
    """Engine listener: keeps the newest Status and says when this login has ended."""

    def __init__(self) -> None:
        self.status: Status | None = None
        self.ended = threading.Event()

    def on_status(self, status: Status) -> None:
        self.status = status
        login = status.login
        if login is not None and not login.active:
            self.ended.set()

    @property
    def login(self) -> LoginView | None:
        return self.status.login if self.status else None


def run(settings: Settings, open_browser_too: bool = True, verbose: bool = False) -> int:
    setup_logging(settings.log_dir, to_stderr=verbose, verbose=verbose)
    engine = Engine(settings, routine=False)  # the login and its hand-off only: no renewal here
    handle = engine.handle()
    watch = _LoginWatch()
    handle.add_listener(watch.on_status)
    handle.start()
    try:
        return _follow(handle, watch, open_browser_too)
    finally:
        handle.stop(timeout=5)


def _follow(handle: EngineHandle, watch: _LoginWatch, open_browser_too: bool) -> int:
    interactive = sys.stdout.isatty()
    shown = False
    try:
        handle.send(StartLogin())
        while not watch.ended.wait(1.0 if shown else 0.1):
            login = watch.login
            if login is None or login.phase != "waiting":
                continue
            if not shown:
                shown = True
                print(f"Open this page to log in to Kimi:\n  {login.verification_uri_complete}")
                print(f"and check that it shows the code:  {login.user_code}")
                if open_browser_too:
                    problem = open_url(login.verification_uri_complete)
                    print(f"({problem} Open the page yourself.)" if problem
                          else "(The browser was opened for you.)")
                print("Waiting for you to approve it... (Ctrl-C cancels)", flush=True)
            if interactive and login.expires_at is not None:
                left = max(0.0, login.expires_at - time.time())
                sys.stdout.write(f"\r  code expires in {format_duration(left):>8}   ")
                sys.stdout.flush()
    except KeyboardInterrupt:
        handle.send(CancelLogin())
        watch.ended.wait(CANCEL_WAIT)
        print("\nLogin cancelled; nothing was changed.", file=sys.stderr)
        return 130
    login, status = watch.login, watch.status
    assert login is not None and status is not None  # ended is set only with a login in the Status
    if login.phase == "cancelled":
        print(f"\n{login.message}", file=sys.stderr)
        return 130
    if login.phase == "failed":
        print(f"\nkimi-tray: {login.message}", file=sys.stderr)
        return 1
    if interactive:
        print()
    valid_for = format_duration((status.expires_at or status.now) - status.now)
    print(f"Logged in: saved to {status.credentials_file}; token valid for {valid_for}; "
          f"OpenClaw {status.openclaw.replace('_', ' ')}.")
    return 0
