"""One line of `kimi-tray doctor`: shared by the checks the CLI runs itself and the ones the
backends (OpenClaw targets, autostart entries) say they need, so neither side imports the other."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    level: str  # ok, warn, fail
    name: str
    detail: str
    fix: str = ""
