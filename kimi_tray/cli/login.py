"""`kimi-tray login`: the device login in a terminal, with a live countdown; Ctrl-C cancels."""

from __future__ import annotations

import sys
import threading

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import DeviceFlowError
from kimi_tray.core.health import format_duration
from kimi_tray.core.logs import setup_logging
from kimi_tray.engine.login import LoginCancelled, LoginProgress, device_login, open_browser
from kimi_tray.engine.renewer import Renewer


def run(settings: Settings, open_browser_too: bool = True, verbose: bool = False) -> int:
    setup_logging(settings.log_dir, to_stderr=verbose, verbose=verbose)
    renewer = Renewer(settings)
    cancel = threading.Event()
    interactive = sys.stdout.isatty()
    clock = renewer.clock

    def on_code(progress: LoginProgress) -> None:
        auth = progress.authorization
        print(f"Open this page to log in to Kimi:\n  {auth.verification_uri_complete}")
        print(f"and check that it shows the code:  {auth.user_code}")
        if open_browser_too and open_browser(auth.verification_uri_complete):
            print("(The browser was opened for you.)")
        print("Waiting for you to approve it... (Ctrl-C cancels)", flush=True)

    def on_tick(progress: LoginProgress) -> None:
        if interactive:
            left = max(0.0, progress.deadline - clock.monotonic())
            sys.stdout.write(f"\r  code expires in {format_duration(left):>8}   ")
            sys.stdout.flush()

    try:
        creds = device_login(renewer.oauth, renewer.login_source(), settings.lock_timeout,
                             settings.kimi_lock_disabled, clock=clock, cancel=cancel,
                             on_code=on_code, on_tick=on_tick)
    except KeyboardInterrupt:
        cancel.set()
        print("\nLogin cancelled; nothing was changed.", file=sys.stderr)
        return 130
    except LoginCancelled as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except DeviceFlowError as exc:
        print(f"\nkimi-tray: {exc}", file=sys.stderr)
        return 1
    if interactive:
        print()
    view = renewer.finish_login(creds)
    left = format_duration(creds.expires_at - clock.now())
    print(f"Logged in: saved to {renewer.source.path}; token valid for {left}; "
          f"OpenClaw {view.state.replace('_', ' ')}.")
    return 0
