"""OpenClaw 2026.9.x (credentials in SQLite): a `kimi` token profile written through its CLI."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw.base import (
    LEGACY_PROVIDER,
    PROVIDER,
    Problem,
    Token,
    holding_view,
    mask_matches,
)
from kimi_tray.stores.openclaw.checks import (
    GATEWAY_NOT_RELOADED_DETAIL,
    TokenLoader,
    command_check,
    holding_checks,
)
from kimi_tray.stores.openclaw.detect import KIMI_PROVIDERS, PLUGIN_FIX, Detector
from kimi_tray.stores.openclaw.runner import Runner, last_line
from kimi_tray.stores.state import OpenClawMemory, OpenClawView

log = logging.getLogger(__name__)

# paste-token turns --expires-in into an absolute expiry with its own clock some time after we
# call it (Node start-up and config checks: 3-5 s; 25-80 s when it tries to install a missing
# Kimi plugin without network), so we promise OpenClaw less than the real lifetime by a margin
# learnt from the last call and kept in the state file, so that even a cold `kimi-tray renew`
# pastes once. A wide margin costs nothing: the next token arrives ~450 s before expiry.
CLI_MIN_MARGIN = 5.0
CLI_FIRST_GUESS = 10.0
CLI_SLOW_GUESS = 120.0  # no call measured yet and the Kimi plugin is missing
PASTE_TIMEOUT = 240.0
GATEWAY_NOT_RELOADED = "could not refresh"  # in paste-token's warning when no gateway took it


class CliTarget:
    """Current OpenClaw (SQLite store): a `kimi` token profile written through its own CLI."""

    mode = "cli"
    active = True
    restart_after_sync = False  # paste-token reloads a running gateway itself

    def __init__(self, settings: Settings, memory: OpenClawMemory | None = None) -> None:
        self.runner = Runner(settings)
        self.detector = Detector(self.runner, memory if memory is not None else OpenClawMemory())
        self.profile_id = settings.openclaw_profile_id
        self.legacy_profile_id = settings.openclaw_legacy_profile_id
        self.agents: list[str | None] = [None] + [a for a in settings.openclaw_agents if a != "main"]
        self.last_report: dict[str, Any] = {}
        self.problems: list[Problem] = []
        self.gateway_reloaded: bool | None = None

    @property
    def memory(self) -> OpenClawMemory:
        return self.detector.memory

    @property
    def holding_profile_id(self) -> str:
        return self.profile_id

    def describe(self) -> str:
        return f"OpenClaw CLI ({' '.join(self.runner.command)}), profile {self.profile_id}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        started = time.monotonic()

        def clock() -> float:
            """`now` moved on by the seconds the openclaw calls of this sync have taken."""
            return now + (time.monotonic() - started)

        self.detector.kimi_plugin(now)
        for agent in self.agents:
            self._paste(token, clock, self.profile_id, PROVIDER, agent)
        view = self.inspect(token, now)
        legacy = self._profile(self.legacy_profile_id)
        if legacy is not None and legacy.get("type") in ("token", "oauth") \
                and not self._holds(self.legacy_profile_id, token.access):
            # A kimi-coding profile carried over from the JSON era: we keep it current too.
            # Under that id a user's own API key (type api_key) is theirs: never pasted over.
            provider = str(legacy.get("provider") or LEGACY_PROVIDER)
            self._paste(token, clock, self.legacy_profile_id, provider, None)
            view = self.inspect(token, now)
        return view

    def _margin(self) -> float:
        seconds = self.memory.call_seconds
        if seconds is None:
            seconds = CLI_FIRST_GUESS if self.memory.kimi_plugin is not False else CLI_SLOW_GUESS
        return CLI_MIN_MARGIN + 1.5 * seconds

    def _paste(self, token: Token, clock: Callable[[], float], profile_id: str, provider: str,
               agent: str | None) -> None:
        """paste-token with an expiry that cannot outlive the token; once more if the call ran
        slower than the margin allowed for."""
        for _attempt in range(2):
            margin = self._margin()
            expires_in = math.floor(token.expires_at - clock() - margin)
            if expires_in <= 0:
                raise OpenClawError("The Kimi token is about to expire; OpenClaw was not given it.")
            args = ["models", "auth", "paste-token", "--provider", provider,
                    "--profile-id", profile_id, "--expires-in", f"{expires_in}s"]
            if agent:
                args += ["--agent", agent]
            before = time.monotonic()
            result = self.runner.run(args, stdin=token.access, timeout=PASTE_TIMEOUT)
            took = time.monotonic() - before
            if result.returncode != 0:
                raise OpenClawError("openclaw models auth paste-token failed: " + last_line(result))
            self.memory.call_seconds = round(took, 2)
            self.gateway_reloaded = GATEWAY_NOT_RELOADED not in result.stdout + result.stderr
            if took <= margin:  # OpenClaw's clock read happened within the margin we allowed
                return
            log.info("openclaw took %.0f s; writing the profile again with a wider margin.", took)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        self.last_report = self.runner.json(["models", "status", "--json"])
        return self._view_from(self.last_report, token, now)

    # -- reading `models status --json`
    def _auth(self) -> dict[str, Any]:
        auth = self.last_report.get("auth")
        return auth if isinstance(auth, dict) else {}

    def kimi_profiles(self) -> list[dict[str, Any]]:
        profiles = (self._auth().get("oauth") or {}).get("profiles") or []
        return [p for p in profiles if isinstance(p, dict) and p.get("provider") in KIMI_PROVIDERS]

    def _profile(self, profile_id: str) -> dict[str, Any] | None:
        return next((p for p in self.kimi_profiles() if p.get("profileId") == profile_id), None)

    def _mask(self, profile_id: str) -> str:
        prefix = f"{profile_id}="
        for provider in self._auth().get("providers") or []:
            for label in (provider.get("profiles") or {}).get("labels") or []:
                if isinstance(label, str) and label.startswith(prefix):
                    return label.removeprefix(prefix).split(":", 1)[-1]
        return ""

    def _holds(self, profile_id: str, access: str) -> bool:
        return mask_matches(self._mask(profile_id), access)

    def _view_from(self, report: dict[str, Any], token: Token, now: float) -> OpenClawView:
        self.last_report = report
        ours = self._profile(self.profile_id)
        if ours is None:
            return OpenClawView("missing", f"OpenClaw has no {self.profile_id} profile.", self.mode,
                                checked_at=now)
        expires_ms = ours.get("expiresAt")
        expires_at = expires_ms / 1000 if isinstance(expires_ms, (int, float)) else None
        if not self._holds(self.profile_id, token.access):
            return OpenClawView("stale", "OpenClaw holds an older Kimi token.", self.mode,
                                expires_at=expires_at, checked_at=now)
        if expires_at is not None and expires_at > token.expires_at + 1:
            return OpenClawView("stale", "OpenClaw believes the token lives longer than it does.",
                                self.mode, expires_at=expires_at, checked_at=now)
        if expires_at is not None and expires_at <= now:
            return OpenClawView("stale", "OpenClaw's Kimi token has expired.", self.mode,
                                expires_at=expires_at, checked_at=now)
        self.problems = self.find_problems(token, now)
        detail = f"profile {self.profile_id} holds the current token"
        if self.gateway_reloaded is False:
            detail += "; " + GATEWAY_NOT_RELOADED_DETAIL
        return holding_view(self.problems, token, self.mode, expires_at, now, detail)

    def find_problems(self, token: Token, now: float) -> list[Problem]:
        """What stops OpenClaw from using Kimi with our token, each with its fix."""
        problems = []
        if self.memory.kimi_plugin is False:
            problems.append(Problem(
                "OpenClaw's Kimi provider plugin is not installed, so OpenClaw cannot use Kimi.",
                PLUGIN_FIX))
        maintained = (self.profile_id, self.legacy_profile_id)
        for profile in self.kimi_profiles():
            profile_id = str(profile.get("profileId") or "")
            if profile.get("type") not in ("token", "oauth") or self._holds(profile_id, token.access):
                continue
            if profile_id in maintained:
                fix = "kimi-tray renew"
            elif profile_id:
                fix = f"openclaw models auth logout {profile_id} --yes"
            else:  # nothing to name it by: the user has to look
                fix = "openclaw models status"
            problems.append(Problem(
                f"OpenClaw's Kimi profile {profile_id or '(no id)'} (provider {profile.get('provider')}) "
                "holds an older token.", fix))
        return problems + auth_order_problems(self.last_report, PROVIDER, self.profile_id)

    def watched_files(self) -> list[Path]:
        return []

    def restart_gateway(self) -> tuple[bool, str]:
        return self.runner.restart_gateway()

    def doctor_checks(self, load_token: TokenLoader, last_view: OpenClawView,
                      now: float) -> list[Check]:
        """Nothing works without the openclaw command here; then the shared profile checks
        (our problems already include the auth order)."""
        return [command_check(self.runner.command[0], required=True),
                *self.holding_checks(load_token, last_view, now)]

    def holding_checks(self, load_token: TokenLoader, last_view: OpenClawView,
                       now: float) -> list[Check]:
        return holding_checks(self, self.runner, self.memory, load_token, last_view, now)


def auth_order_problems(report: dict[str, Any], provider: str, ours: str) -> list[Problem]:
    """Our profile should be the one OpenClaw picks first for its provider (`models status`).
    A user's own API key first still works (a warning); another token first is a failure."""
    auth = found if isinstance(found := report.get("auth"), dict) else {}
    entries = [e for e in (auth.get("oauth") or {}).get("providers") or []
               if isinstance(e, dict) and e.get("provider") == provider]
    effective = [p for e in entries for p in e.get("effectiveProfiles") or [] if isinstance(p, dict)]
    order = [str(p.get("profileId") or "") for p in effective]
    if not order:
        return []
    if order[0] == ours:
        return [Problem(f"{ours} is used first", "", fatal=False, check="openclaw auth order")]
    others = " ".join(p for p in order if p and p != ours)
    return [Problem(f"OpenClaw uses {order[0] or 'a profile with no id'} before {ours}",
                    f"openclaw models auth order set --provider {provider} {ours} {others}".strip(),
                    fatal=effective[0].get("type") in ("token", "oauth"), check="openclaw auth order")]
