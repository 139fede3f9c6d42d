"""Which OpenClaw backend to use: its CLI (SQLite era), its JSON file, or nothing.

In `auto` mode OpenClaw itself says which generation it is (detect.py), at each sync; a profile we
maintain is kept current on every renewal. OpenClaw never gets the refresh token: we are the only
refresher of the rotating token.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError
from kimi_tray.stores.openclaw.base import OpenClawTarget, Problem, Token
from kimi_tray.stores.openclaw.checks import TokenLoader, command_check
from kimi_tray.stores.openclaw.cli_target import CliTarget
from kimi_tray.stores.openclaw.file_target import LegacyFileTarget, legacy_profiles_path
from kimi_tray.stores.openclaw.off_target import OffTarget
from kimi_tray.stores.state import OpenClawMemory, OpenClawView


class AutoTarget:
    """Asks OpenClaw which generation it is at each sync (`--version` is cheap; the rest is
    cached per version) and hands over to that backend."""

    active = True

    def __init__(self, settings: Settings, memory: OpenClawMemory) -> None:
        self.settings = settings
        self.memory = memory
        self.cli = CliTarget(settings, memory)
        self.file = LegacyFileTarget(settings, memory=memory)
        self.detector = self.cli.detector

    @property
    def current(self) -> CliTarget | LegacyFileTarget:
        return self.file if self.memory.generation == "file" else self.cli

    @property
    def mode(self) -> str:
        return self.memory.generation or "auto"

    @property
    def restart_after_sync(self) -> bool:
        return self.current.restart_after_sync

    @property
    def problems(self) -> list[Problem]:
        return self.current.problems

    def resolve(self) -> CliTarget | LegacyFileTarget:
        self.detector.generation()
        return self.current

    def describe(self) -> str:
        if not self.memory.generation:
            return f"OpenClaw ({' '.join(self.cli.runner.command)}; generation not asked yet)"
        return f"{self.memory.version}: " + self.current.describe()

    def sync(self, token: Token, now: float) -> OpenClawView:
        return self.resolve().sync(token, now)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        return self.resolve().inspect(token, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return self.current.restart_gateway()

    def watched_files(self) -> list[Path]:
        return self.current.watched_files()

    def doctor_checks(self, load_token: TokenLoader, last_view: OpenClawView,
                      now: float) -> list[Check]:
        """Which generation OpenClaw says it is, then the checks of the target for it."""
        checks = [command_check(self.cli.runner.command[0], required=False)]
        try:
            current = self.resolve()
        except KimiTrayError as exc:
            return checks + [Check("fail", "openclaw generation", str(exc),
                                   "run `openclaw doctor` and fix what it reports")]
        how = ("credentials in SQLite, written with `openclaw models auth paste-token`"
               if current is self.cli else
               "credentials in auth-profiles.json, written under OpenClaw's lock; the gateway "
               "restarts after each renewal")
        checks.append(Check("ok", "openclaw generation", f"{self.memory.version}: {how}"))
        return checks + current.holding_checks(load_token, last_view, now)


def choose_target(settings: Settings, memory: OpenClawMemory | None = None) -> OpenClawTarget:
    """`auto`: what OpenClaw says (AutoTarget); without the openclaw command, the JSON file if
    one exists, else off, saying why."""
    memory = memory if memory is not None else OpenClawMemory()
    mode = settings.openclaw_mode
    if mode == "off":
        return OffTarget("turned off in the configuration", settings.openclaw_command[0])
    if mode == "cli":
        return CliTarget(settings, memory)
    if mode == "file":
        return LegacyFileTarget(settings, memory=memory)
    state_dir = settings.openclaw_state_dir
    if shutil.which(settings.openclaw_command[0]) is not None:
        return AutoTarget(settings, memory)
    if legacy_profiles_path(state_dir, settings.openclaw_agents[0]).exists():
        return LegacyFileTarget(settings, memory=memory)
    return OffTarget(f"no OpenClaw state in {state_dir} and no openclaw command on PATH",
                     settings.openclaw_command[0])
