"""The tray menu as plain data, built from a Status: testable without a display."""

from __future__ import annotations

from dataclasses import dataclass

from kimi_tray.health import Health, Status
from kimi_tray.usage.model import Usage, UsageWindow
from kimi_tray.usage.text import age_line, plan_words, short_line, window_line

USAGE_SLOTS = 4  # menu lines for quota windows (the week, the 5-hour one, and room for more)
USAGE_KEYS = tuple(f"usage_{i}" for i in range(USAGE_SLOTS)) + ("usage_age",)


@dataclass(frozen=True)
class MenuEntry:
    key: str
    label: str
    enabled: bool = True
    checked: bool | None = None  # a checkbox when not None
    default: bool = False  # the action a plain click runs where the tray has no menu


def build_menu(status: Status, autostart_on: bool, openclaw_on: bool) -> list[MenuEntry]:
    login_needed = status.health in (Health.NEEDS_LOGIN, Health.EXPIRED)
    busy = status.renewing or status.login_in_progress
    entries = [
        MenuEntry("status", status.summary() + plan_suffix(status), enabled=False),
        *usage_entries(status),
        MenuEntry("renew", "Renew now", enabled=not busy, default=not login_needed),
    ]
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
    return f"{status.summary()}; {quota}" if quota else status.summary()
