"""The tray menu as plain data, built from a Status: testable without a display.

Also the short words every face shows for a Status: a headline that fits a menu line, and what
the user can do about a problem (the tray names its menu items, the CLI its commands).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kimi_tray.core.health import Health, Status
from kimi_tray.core.usage import Usage, UsageWindow
from kimi_tray.ui.usage_text import age_line, plan_words, short_line, window_line

USAGE_SLOTS = 4  # menu lines for quota windows (the week, the 5-hour one, and room for more)
USAGE_KEYS = tuple(f"usage_{i}" for i in range(USAGE_SLOTS)) + ("usage_age",)

HEADLINE_MAX = 64


@dataclass(frozen=True)
class MenuEntry:
    key: str
    label: str
    enabled: bool = True
    checked: bool | None = None  # a checkbox when not None
    default: bool = False  # the action a plain click runs where the tray has no menu


def short_path(text: str) -> str:
    """Paths under the home directory as ~/...: shorter, and the same on every machine."""
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home not in ("", "/") else text


def first_sentence(text: str) -> str:
    """The first sentence of a message, without the details in parentheses."""
    text = re.sub(r"\s*\([^)]*\)", "", text.strip())
    match = re.match(r"(.+?)([.!?](\s|$)|;\s)", text)
    return (match.group(1) if match else text).rstrip(".")


def clip(text: str, limit: int = HEADLINE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def needs_login(status: Status) -> bool:
    """A login fixes it: the refresh token is dead, missing, or the file holding it is unusable."""
    return status.health in (Health.NEEDS_LOGIN, Health.EXPIRED, Health.ERROR)


def what_to_do(status: Status, cli: bool = False, in_menu: bool = False) -> str:
    """One sentence: what fixes the problem this Status shows ('' when nothing is wrong).
    cli: name commands; in_menu: the line sits right above the menu item it names."""
    if status.login_in_progress:
        return ""
    if in_menu:
        if status.health in (Health.NEEDS_LOGIN, Health.ERROR):
            return "Fix: Log in... below" + (" writes a new file" if status.health is Health.ERROR else "")
        if status.failures and status.health is not Health.FRESH:
            return "Renewal failing: check the network (retrying)"
        if status.health is Health.EXPIRED:
            return "Fix: Renew now below"
        return ""
    login = "run `kimi-tray login`" if cli else "choose Log in... in the menu"
    if status.health is Health.NEEDS_LOGIN:
        return f"Log in again: {login}."
    if status.health is Health.ERROR:
        return f"Log in again to write a new credential file: {login}."
    if status.failures and status.health is not Health.FRESH:
        return "Check the network; kimi-tray keeps retrying" + (
            " (`kimi-tray renew` tries now)." if cli else " (Renew now tries at once).")
    if status.health is Health.EXPIRED:
        return "Renew now: " + ("run `kimi-tray renew`." if cli else "choose Renew now in the menu.")
    return ""


def headline(status: Status) -> str:
    """The menu's status line and the tooltip: short enough for a menu (no paths, no details)."""
    if status.health is Health.ERROR and not status.login_in_progress:
        return clip("Kimi: " + short_path(first_sentence(status.message or "error")))
    return clip(status.summary(), 2 * HEADLINE_MAX)


def build_menu(status: Status, autostart_on: bool, openclaw_on: bool,
               notes: tuple[str, ...] = ()) -> list[MenuEntry]:
    """notes: extra lines the tray shows above the actions (a login's code, a config error)."""
    login_needed = needs_login(status)
    busy = status.renewing or status.login_in_progress
    entries = [MenuEntry("status", headline(status) + plan_suffix(status), enabled=False)]
    advice = what_to_do(status, in_menu=True)
    if advice:
        entries.append(MenuEntry("advice", clip(advice), enabled=False))
    entries += [MenuEntry(f"note{i}", clip(note, 2 * HEADLINE_MAX), enabled=False)
                for i, note in enumerate(notes)]
    entries += usage_entries(status)
    entries.append(MenuEntry("renew", "Renew now", enabled=not busy and status.health is not Health.ERROR,
                             default=not login_needed))
    if status.login_in_progress:
        entries.append(MenuEntry("cancel_login", "Cancel login"))
    else:
        entries.append(MenuEntry("login", "Log in...", enabled=login_needed, default=login_needed))
    entries += [
        MenuEntry("restart", "Restart OpenClaw gateway", enabled=openclaw_on),
        MenuEntry("open_log", "Open log"),
        MenuEntry("autostart", "Start on login", checked=autostart_on),
        MenuEntry("quit", "Quit"),
    ]
    return entries


# ----------------------------------------------------------------------------- usage
def plan_suffix(status: Status) -> str:
    words = plan_words(status.usage)
    return f" ({words})" if words else ""


def usage_entries(status: Status) -> list[MenuEntry]:
    """One line per quota window, then its age. Fresh lines are live (a click updates them now);
    stale ones are greyed, so old numbers never look current."""
    usage = status.usage
    if usage is None:
        return []
    live = not usage.is_stale(status.now)
    lines = [window_line(window, status.now) for window in menu_windows(usage)]
    if len(usage.windows) > USAGE_SLOTS:
        lines.append(f"{len(usage.windows) - len(lines)} more windows: kimi-tray status lists them all")
    entries = [MenuEntry(f"usage_{i}", line, enabled=live) for i, line in enumerate(lines)]
    entries.append(MenuEntry("usage_age", age_line(usage, status.now), enabled=live))
    return entries


def menu_windows(usage: Usage) -> list[UsageWindow]:
    """All windows when they fit; otherwise the first ones, always with the most constrained, and
    one slot left to say how many are not shown."""
    windows = list(usage.windows)
    if len(windows) <= USAGE_SLOTS:
        return windows
    shown = windows[:USAGE_SLOTS - 1]
    tightest = usage.most_constrained()
    if tightest is not None and tightest not in shown:
        shown = windows[:USAGE_SLOTS - 2] + [tightest]
    return shown


def tooltip(status: Status) -> str:
    """The status summary plus the most constrained quota window."""
    quota = short_line(status.usage, status.now)
    return f"{headline(status)}; {quota}" if quota else headline(status)
