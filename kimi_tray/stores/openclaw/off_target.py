"""No OpenClaw found, or sync turned off: a complete backend that does nothing, so absence is
a backend rather than an `if` at every caller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kimi_tray.core.checks import Check
from kimi_tray.stores.openclaw.base import Problem, Token
from kimi_tray.stores.openclaw.checks import command_check
from kimi_tray.stores.state import OpenClawView


class OffTarget:
    """No OpenClaw found (or sync turned off): a complete backend that does nothing."""

    mode = "off"
    active = False
    restart_after_sync = False

    def __init__(self, reason: str, command: str = "openclaw") -> None:
        self.reason = reason
        self.command = command
        self.problems: list[Problem] = []

    def describe(self) -> str:
        return f"OpenClaw sync off: {self.reason}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        return OpenClawView(state="off", detail=self.reason, mode=self.mode, checked_at=now)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        return self.sync(token, now)

    def watched_files(self) -> list[Path]:
        return []

    def restart_gateway(self) -> tuple[bool, str]:
        return False, "OpenClaw sync is off; there is no gateway to restart."

    def doctor_checks(self, load_token: Callable[[], Token], last_view: OpenClawView,
                      now: float) -> list[Check]:
        """Only whether OpenClaw could be found: nothing is handed to it, nothing to inspect."""
        return [command_check(self.command, required=False),
                Check("warn", "openclaw sync", self.reason,
                      "install OpenClaw, or ignore if you only use the Kimi CLI")]
