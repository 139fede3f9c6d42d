"""The tray menu as plain data, built from a Status: testable without a display."""

from __future__ import annotations

from dataclasses import dataclass

from kimi_tray.health import Health, Status


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
        MenuEntry("status", status.summary(), enabled=False),
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
