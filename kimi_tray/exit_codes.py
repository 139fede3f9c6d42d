"""The one exit-code table for every command; the CLI help and the README show the same table."""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 2
LOGIN_NEEDED = 3
CANCELLED = 130

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "success; for `status`: the token is fresh or ageing"),
    (FAILURE, "failure: server unreachable after retries, a bad local file or directory, an expired "
              "token, a new token not saved yet (kept in the recovery file)"),
    (USAGE, "bad usage (unknown command or option)"),
    (LOGIN_NEEDED, "a browser login is needed (refresh token dead, or no credentials): "
                   "run `kimi-tray login`"),
    (CANCELLED, "cancelled with Ctrl+C"),
)


def help_text() -> str:
    """The table as `--help` prints it."""
    return "exit codes:\n" + "".join(f"  {code:<3} {meaning}\n" for code, meaning in TABLE)
