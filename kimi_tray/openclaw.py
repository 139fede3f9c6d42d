"""Hand the Kimi access token to OpenClaw: its CLI (SQLite era), the legacy file, or nothing.

One interface, a backend per OpenClaw generation, chosen once from what is on disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kimi_tray.config import Settings
from kimi_tray.errors import LocalFileError, OpenClawError
from kimi_tray.fileio import atomic_write, dump_json_like, read_json_object
from kimi_tray.state import OpenClawView, fingerprint

log = logging.getLogger(__name__)

PROVIDER = "kimi"
LEGACY_PROVIDER = "kimi-coding"
# paste-token turns --expires-in into an absolute expiry with its own clock some time after we
# call it (Node start-up, config checks: 3 s here, 20 s when it tries to repair plugins offline),
# so we promise OpenClaw less than the real lifetime by a margin learnt from the last call.
CLI_MIN_MARGIN = 5.0
CLI_FIRST_GUESS = 10.0
CLI_TIMEOUT = 90.0


@dataclass(frozen=True)
class Token:
    """What OpenClaw gets: the access token, its expiry, and (legacy file only) the refresh token."""

    access: str
    refresh: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at!r})"


class OpenClawTarget(Protocol):
    mode: str
    restart_after_sync: bool

    def describe(self) -> str: ...

    def sync(self, token: Token, now: float) -> OpenClawView: ...

    def inspect(self, token: Token, now: float) -> OpenClawView: ...

    def restart_gateway(self) -> tuple[bool, str]: ...


class OffTarget:
    """No OpenClaw found (or sync turned off): a complete backend that does nothing."""

    mode = "off"
    restart_after_sync = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return f"OpenClaw sync off: {self.reason}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        return OpenClawView(state="off", detail=self.reason, mode=self.mode, checked_at=now)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        return self.sync(token, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return False, "OpenClaw sync is off; there is no gateway to restart."


class _Runner:
    """Runs the openclaw CLI with our state dir; never puts a token in argv."""

    def __init__(self, settings: Settings) -> None:
        self.command = list(settings.openclaw_command)
        self.env = dict(os.environ)
        default_state = Path(self.env.get("HOME", str(Path.home()))) / ".openclaw"
        if settings.openclaw_state_dir != default_state:
            self.env["OPENCLAW_STATE_DIR"] = str(settings.openclaw_state_dir)
        self.env.setdefault("NO_COLOR", "1")

    def run(self, args: list[str], stdin: str | None = None,
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self.command + args, input=stdin, capture_output=True, text=True,
                timeout=timeout, env=self.env, check=False,
            )
        except FileNotFoundError:
            raise OpenClawError(f"The openclaw command ({self.command[0]}) was not found.") from None
        except subprocess.TimeoutExpired:
            raise OpenClawError(f"openclaw {' '.join(args[:3])} did not finish in {timeout:g} s.") from None

    def restart_gateway(self) -> tuple[bool, str]:
        try:
            result = self.run(["gateway", "restart"])
        except OpenClawError as exc:
            return False, str(exc)
        if result.returncode == 0:
            return True, "OpenClaw gateway restarted."
        return False, "openclaw gateway restart failed: " + _last_line(result)


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else f"exit code {result.returncode}"


def mask_matches(mask: str, token: str) -> bool:
    """Does OpenClaw's masked label (`abcdefgh...stuvwxyz`) show this token? Enough to tell
    which token OpenClaw holds without it ever printing the token."""
    prefix, sep, suffix = mask.partition("...")
    return bool(sep) and min(len(prefix), len(suffix)) >= 4 and token.startswith(prefix) \
        and token.endswith(suffix) and len(token) >= len(prefix) + len(suffix)


class CliTarget:
    """Current OpenClaw (SQLite store): a `kimi` token profile written through its own CLI."""

    mode = "cli"
    restart_after_sync = False

    def __init__(self, settings: Settings) -> None:
        self.runner = _Runner(settings)
        self.profile_id = settings.openclaw_profile_id
        self.agents: list[str | None] = [None] + [a for a in settings.openclaw_agents if a != "main"]
        self.call_seconds = CLI_FIRST_GUESS
        self.last_report: dict[str, Any] = {}

    def describe(self) -> str:
        return f"OpenClaw CLI ({' '.join(self.runner.command)}), profile {self.profile_id}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        for agent in self.agents:
            self._paste(token, now, agent)
        return self.inspect(token, now)

    def _paste(self, token: Token, now: float, agent: str | None) -> None:
        """paste-token with an expiry that cannot outlive the token; once more if the call ran
        slower than the margin allowed for."""
        started = time.monotonic()
        for _attempt in range(2):
            margin = CLI_MIN_MARGIN + 1.5 * self.call_seconds
            call_start = now + (time.monotonic() - started)
            expires_in = math.floor(token.expires_at - call_start - margin)
            if expires_in <= 0:
                raise OpenClawError("The Kimi token is about to expire; OpenClaw was not given it.")
            args = ["models", "auth", "paste-token", "--provider", PROVIDER,
                    "--profile-id", self.profile_id, "--expires-in", f"{expires_in}s"]
            if agent:
                args += ["--agent", agent]
            before = time.monotonic()
            result = self.runner.run(args, stdin=token.access)
            took = time.monotonic() - before
            if result.returncode != 0:
                raise OpenClawError("openclaw models auth paste-token failed: " + _last_line(result))
            self.call_seconds = took
            if took <= margin:  # OpenClaw's clock read happened within the margin we allowed
                return
            log.info("openclaw took %.0f s; writing the profile again with a wider margin.", took)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        result = self.runner.run(["models", "status", "--json"])
        if result.returncode != 0:
            raise OpenClawError("openclaw models status failed: " + _last_line(result))
        try:
            report = json.loads(result.stdout[result.stdout.find("{"):])
        except ValueError:
            raise OpenClawError("openclaw models status --json did not print JSON.") from None
        self.last_report = report if isinstance(report, dict) else {}
        return self._view_from(self.last_report, token, now)

    def effective_order(self) -> list[str]:
        """The Kimi profiles OpenClaw will use, first first (from the last `models status`)."""
        providers = ((self.last_report.get("auth") or {}).get("oauth") or {}).get("providers") or []
        for provider in providers:
            if provider.get("provider") == PROVIDER:
                return [p.get("profileId", "") for p in provider.get("effectiveProfiles") or []]
        return []

    def _view_from(self, report: dict[str, Any], token: Token, now: float) -> OpenClawView:
        auth = report.get("auth") or {}
        profiles = (auth.get("oauth") or {}).get("profiles") or []
        ours = next((p for p in profiles if p.get("profileId") == self.profile_id), None)
        if ours is None:
            return OpenClawView("missing", f"OpenClaw has no {self.profile_id} profile.", self.mode,
                                checked_at=now)
        expires_ms = ours.get("expiresAt")
        expires_at = expires_ms / 1000 if isinstance(expires_ms, (int, float)) else None
        labels = [label for p in auth.get("providers") or [] if p.get("provider") == PROVIDER
                  for label in (p.get("profiles") or {}).get("labels") or []]
        prefix = f"{self.profile_id}="
        holds_ours = any(
            label.startswith(prefix) and mask_matches(label.removeprefix(prefix).split(":", 1)[-1],
                                                      token.access)
            for label in labels
        )
        if not holds_ours:
            return OpenClawView("stale", "OpenClaw holds an older Kimi token.", self.mode,
                                expires_at=expires_at, checked_at=now)
        if expires_at is not None and expires_at > token.expires_at + 1:
            return OpenClawView("stale", "OpenClaw believes the token lives longer than it does.",
                                self.mode, fingerprint(token.access), expires_at, now)
        if expires_at is not None and expires_at <= now:
            return OpenClawView("stale", "OpenClaw's Kimi token has expired.", self.mode,
                                fingerprint(token.access), expires_at, now)
        return OpenClawView("in_sync", f"profile {self.profile_id} holds the current token",
                            self.mode, fingerprint(token.access), expires_at, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return self.runner.restart_gateway()


class LegacyFileTarget:
    """Older OpenClaw: the seed's `kimi-coding:default` OAuth profile in auth-profiles.json."""

    mode = "file"
    restart_after_sync = True

    def __init__(self, settings: Settings) -> None:
        self.runner = _Runner(settings)
        self.state_dir = settings.openclaw_state_dir
        self.profile_id = settings.openclaw_legacy_profile_id
        self.agents = settings.openclaw_agents

    def describe(self) -> str:
        files = ", ".join(str(p) for p in self.files())
        return f"OpenClaw auth-profiles.json ({files}), profile {self.profile_id}"

    def files(self) -> list[Path]:
        """The configured agents, plus every other agent whose file already has our profile."""
        paths = [legacy_profiles_path(self.state_dir, agent) for agent in self.agents]
        for candidate in sorted(self.state_dir.glob("agents/*/agent/auth-profiles.json")):
            if candidate in paths:
                continue
            try:
                data, _ = read_json_object(candidate)
            except LocalFileError:
                continue
            if isinstance(data.get("profiles"), dict) and self.profile_id in data["profiles"]:
                paths.append(candidate)
        return paths

    def sync(self, token: Token, now: float) -> OpenClawView:
        problems = []
        for path in self.files():
            try:
                self._write(path, token)
            except (LocalFileError, OpenClawError) as exc:
                problems.append(str(exc))
        if problems:
            raise OpenClawError(" ".join(problems))
        return self.inspect(token, now)

    def _write(self, path: Path, token: Token) -> None:
        if path.exists():
            try:
                data, original = read_json_object(path)
            except LocalFileError as exc:
                raise OpenClawError(f"{exc} It was left untouched.") from None
        else:
            if not path.parent.is_dir():
                raise OpenClawError(f"The OpenClaw agent directory {path.parent} does not exist.")
            data, original = {"version": 1, "profiles": {}}, None
        profiles = data.setdefault("profiles", {})
        if not isinstance(profiles, dict):
            raise OpenClawError(f"{path}: 'profiles' is not an object; it was left untouched.")
        profile = profiles.get(self.profile_id)
        if not isinstance(profile, dict):
            profile = {"type": "oauth", "provider": LEGACY_PROVIDER}
            profiles[self.profile_id] = profile
        profile["access"] = token.access
        profile["refresh"] = token.refresh
        profile["expires"] = int(token.expires_at * 1000)
        atomic_write(path, dump_json_like(data, original))

    def inspect(self, token: Token, now: float) -> OpenClawView:
        states = []
        for path in self.files():
            try:
                data, _ = read_json_object(path)
            except LocalFileError as exc:
                return OpenClawView("error", str(exc), self.mode, checked_at=now)
            profile = (data.get("profiles") or {}).get(self.profile_id)
            if not isinstance(profile, dict):
                return OpenClawView("missing", f"{path} has no {self.profile_id} profile.", self.mode,
                                    checked_at=now)
            expires = profile.get("expires")
            expires_at = expires / 1000 if isinstance(expires, (int, float)) else None
            same = profile.get("access") == token.access
            states.append((same, expires_at))
        if not states:
            return OpenClawView("missing", "No OpenClaw agent files found.", self.mode, checked_at=now)
        if not all(same for same, _ in states):
            return OpenClawView("stale", "OpenClaw holds an older Kimi token.", self.mode,
                                checked_at=now)
        expiry = min((e for _, e in states if e is not None), default=None)
        return OpenClawView("in_sync", f"{len(states)} agent file(s) hold the current token",
                            self.mode, fingerprint(token.access), expiry, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return self.runner.restart_gateway()


def legacy_profiles_path(state_dir: Path, agent: str) -> Path:
    return state_dir / "agents" / agent / "agent" / "auth-profiles.json"


def choose_target(settings: Settings) -> OpenClawTarget:
    """`auto`: the CLI where OpenClaw's SQLite store exists (or no legacy file but openclaw on
    PATH); the legacy file where only it exists; otherwise off, saying why."""
    mode = settings.openclaw_mode
    if mode == "off":
        return OffTarget("turned off in the configuration")
    if mode == "cli":
        return CliTarget(settings)
    if mode == "file":
        return LegacyFileTarget(settings)
    state_dir = settings.openclaw_state_dir
    sqlite = state_dir / "state" / "openclaw.sqlite"
    legacy = legacy_profiles_path(state_dir, settings.openclaw_agents[0])
    on_path = shutil.which(settings.openclaw_command[0]) is not None
    if sqlite.exists():
        return CliTarget(settings)
    if legacy.exists():
        return LegacyFileTarget(settings)
    if on_path:
        return CliTarget(settings)
    return OffTarget(f"no OpenClaw state in {state_dir} and no openclaw command on PATH")
