"""What `kimi-tray doctor` asks of OpenClaw, in pieces each target puts together for itself:
the command, the Kimi plugin and models, the profile holding our token, the gateway."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Protocol

from kimi_tray.core.checks import Check
from kimi_tray.core.errors import KimiTrayError
from kimi_tray.stores.openclaw.base import Problem, Token
from kimi_tray.stores.openclaw.detect import PLUGIN_FIX, Detector
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.state import OpenClawMemory, OpenClawView

GATEWAY_NOT_RELOADED_DETAIL = "no running gateway picked it up"

TokenLoader = Callable[[], Token]


class Holder(Protocol):
    """A target that writes our token somewhere OpenClaw reads it (CLI or file)."""

    @property
    def holding_profile_id(self) -> str: ...
    @property
    def problems(self) -> list[Problem]: ...

    def describe(self) -> str: ...

    def inspect(self, token: Token, now: float) -> OpenClawView: ...


def has_cli(runner: Runner) -> bool:
    return shutil.which(runner.command[0]) is not None


def command_check(command: str, required: bool) -> Check:
    """The openclaw command: a failure only for a target that cannot work without it."""
    found = shutil.which(command)
    if found:
        return Check("ok", "openclaw command", found)
    return Check("fail" if required else "warn", "openclaw command", f"{command} is not on PATH",
                 "install OpenClaw (npm install -g openclaw) or set openclaw_command")


def holding_checks(target: Holder, runner: Runner, memory: OpenClawMemory, load_token: TokenLoader,
                   last_view: OpenClawView, now: float,
                   more_problems: Callable[[str], list[Problem]] | None = None) -> list[Check]:
    """The target's own line, the Kimi plugin, whether our profile holds the current token, every
    problem the target found (plus `more_problems(our profile id)`), and the gateway."""
    cli = has_cli(runner)
    checks = [Check("ok", "openclaw sync", target.describe())]
    if cli:
        checks += plugin_checks(runner, memory, now)
    try:
        view = target.inspect(load_token(), now)
    except KimiTrayError as exc:
        return checks + [Check("fail", "openclaw profile", str(exc), "run `kimi-tray renew`")]
    if view.state in ("missing", "stale"):
        return checks + [Check("fail", "openclaw profile", f"{view.state}: {view.detail}",
                               "kimi-tray renew")]
    if view.state == "error" and not view.token_fp:
        return checks + [Check("fail", "openclaw profile", view.detail, "kimi-tray renew")]
    ours = target.holding_profile_id
    checks.append(Check("ok", "openclaw profile", f"in_sync: {ours} holds the current token"))
    problems = list(target.problems)
    if cli and more_problems is not None:
        problems += more_problems(ours)
    checks += problem_checks(problems)
    if cli:
        checks += gateway_checks(runner, last_view)
    return checks


def problem_checks(problems: list[Problem]) -> list[Check]:
    """One line per problem (a missing plugin has its own check), and an ok line for the
    profiles when none of them holds an older token."""
    shown = [p for p in problems if p.fix != PLUGIN_FIX]
    checks = [Check("ok" if not p.fix else "fail" if p.fatal else "warn", p.check, p.text, p.fix)
              for p in shown]
    if not any(p.check == "openclaw profiles" for p in shown):
        checks.append(Check("ok", "openclaw profiles", "every Kimi profile holds the current token"))
    return checks


def plugin_checks(runner: Runner, memory: OpenClawMemory, now: float) -> list[Check]:
    """Without the Kimi provider plugin OpenClaw stores the token but lists no Kimi model."""
    try:
        present = Detector(runner, memory).kimi_plugin(now, fresh=True)
    except KimiTrayError as exc:
        return [Check("fail", "openclaw kimi plugin", str(exc), "run `openclaw doctor`")]
    if not present:
        return [Check("fail", "openclaw kimi plugin",
                      "OpenClaw's Kimi provider plugin is not installed, so OpenClaw cannot use Kimi "
                      "(and each openclaw call spends seconds trying to install it)", PLUGIN_FIX)]
    checks = [Check("ok", "openclaw kimi plugin", "installed and enabled")]
    try:
        listed = runner.json(["models", "list", "--all", "--provider", "kimi", "--json"])
    except KimiTrayError as exc:
        return checks + [Check("fail", "openclaw kimi models", str(exc), PLUGIN_FIX)]
    keys = [m.get("key") for m in listed.get("models") or [] if isinstance(m, dict)]
    if not keys:
        return checks + [Check("fail", "openclaw kimi models", "OpenClaw lists no Kimi model",
                               "openclaw plugins enable kimi")]
    return checks + [Check("ok", "openclaw kimi models", ", ".join(str(k) for k in keys[:3]))]


def gateway_checks(runner: Runner, last_view: OpenClawView) -> list[Check]:
    """A running gateway must hold the current token; one that is down reads it when it starts.
    last_view: what the last renewal's hand-off reported (kept in our state file)."""
    try:
        report = runner.json(["gateway", "status", "--json"])
    except KimiTrayError as exc:
        return [Check("warn", "openclaw gateway", str(exc), "openclaw gateway status")]
    rpc = found if isinstance(found := report.get("rpc"), dict) else {}
    if not rpc.get("ok"):
        return [Check("warn", "openclaw gateway",
                      "not running; it reads the current token when it starts",
                      "openclaw gateway start")]
    if "gateway restart failed" in last_view.detail or GATEWAY_NOT_RELOADED_DETAIL in last_view.detail:
        return [Check("fail", "openclaw gateway",
                      "running, but it did not take the current token after the last renewal",
                      "openclaw gateway restart")]
    return [Check("ok", "openclaw gateway", "running with the current token")]
