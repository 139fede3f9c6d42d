"""The one exit-code table for every command; the CLI help and the README show the same table."""

from __future__ import annotations

import textwrap

OK = 0
FAILURE = 1
USAGE = 2
LOGIN_NEEDED = 3
CANCELLED = 130  # 128 + SIGINT, as shells report it
PIPE_CLOSED = 141  # 128 + SIGPIPE: the output pipe was closed (`kimi-tray status | head -1`)

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "success; for `status`: the token is fresh or ageing"),
    (FAILURE, "failure: server unreachable after retries, a bad local file or directory, an expired "
              "token, a new token not saved yet (kept in the recovery file), the Kimi token saved "
              "but OpenClaw not updated, a config file error, a failing `doctor` check"),
    (USAGE, "bad usage (unknown command or option)"),
    (LOGIN_NEEDED, "a browser login is needed (refresh token dead, or no credentials): "
                   "run `kimi-tray login`"),
    (CANCELLED, "cancelled with Ctrl+C"),
    (PIPE_CLOSED, "the output pipe was closed (e.g. `kimi-tray status | head -1`)"),
)
NOTES = ("The tray and the daemon exit 0 when stopped by SIGTERM or Ctrl+C. A config error stops "
         "every command with exit code 1 except the tray (it starts on the defaults and shows the "
         "error), doctor (it reports the error and checks the rest) and uninstall.")


def help_text() -> str:
    """The table as `--help` prints it."""
    return ("exit codes:\n" + "".join(f"  {code:<3} {meaning}\n" for code, meaning in TABLE)
            + textwrap.fill(NOTES, 100) + "\n")
