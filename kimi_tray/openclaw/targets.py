"""Hand the Kimi access token to OpenClaw: its CLI (SQLite era), its JSON file, or nothing.

One interface, a backend per OpenClaw generation. In `auto` mode OpenClaw itself says which
generation it is (detect.py); a profile we maintain is kept current on every renewal. OpenClaw
never gets the refresh token: we are the only refresher of the rotating token.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kimi_tray.config import Settings
from kimi_tray.errors import LocalFileError, OpenClawError
from kimi_tray.fileio import atomic_write, dump_json_like, read_json_object
from kimi_tray.openclaw.detect import KIMI_PROVIDERS, PLUGIN_FIX, Detector
from kimi_tray.openclaw.lock import openclaw_lock
from kimi_tray.openclaw.runner import Runner, last_line
from kimi_tray.state import OpenClawMemory, OpenClawView, fingerprint

log = logging.getLogger(__name__)

PROVIDER = "kimi"
LEGACY_PROVIDER = "kimi-coding"
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
GATEWAY_NOT_RELOADED_DETAIL = "no running gateway picked it up"


@dataclass(frozen=True)
class Token:
    """What OpenClaw gets: the access token and its expiry. Never the refresh token."""

    access: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class Problem:
    """Something that stops OpenClaw from using Kimi, with the command that fixes it."""

    text: str
    fix: str
    fatal: bool = True  # False: worth a warning, OpenClaw still works
    check: str = "openclaw profiles"  # the `doctor` line it belongs to


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
        self.problems: list[Problem] = []

    def describe(self) -> str:
        return f"OpenClaw sync off: {self.reason}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        return OpenClawView(state="off", detail=self.reason, mode=self.mode, checked_at=now)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        return self.sync(token, now)

    def restart_gateway(self) -> tuple[bool, str]:
        return False, "OpenClaw sync is off; there is no gateway to restart."


def mask_matches(mask: str, token: str) -> bool:
    """Does OpenClaw's masked label (`abcdefgh...stuvwxyz`) show this token? Enough to tell
    which token OpenClaw holds without it ever printing the token."""
    prefix, sep, suffix = mask.partition("...")
    return bool(sep) and min(len(prefix), len(suffix)) >= 4 and token.startswith(prefix) \
        and token.endswith(suffix) and len(token) >= len(prefix) + len(suffix)


def _view(problems: list[Problem], token: Token, mode: str, expires_at: float | None,
          now: float, ok_detail: str) -> OpenClawView:
    """OpenClaw holds our token; it is in sync unless something else stops it using Kimi."""
    fatal = [p for p in problems if p.fatal]
    if fatal:
        return OpenClawView("error", fatal[0].text, mode, fingerprint(token.access), expires_at, now)
    return OpenClawView("in_sync", ok_detail, mode, fingerprint(token.access), expires_at, now)


# ------------------------------------------------------------------------------ CLI (SQLite)
class CliTarget:
    """Current OpenClaw (SQLite store): a `kimi` token profile written through its own CLI."""

    mode = "cli"
    restart_after_sync = False

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

    def describe(self) -> str:
        return f"OpenClaw CLI ({' '.join(self.runner.command)}), profile {self.profile_id}"

    def sync(self, token: Token, now: float) -> OpenClawView:
        self.detector.kimi_plugin(now)
        for agent in self.agents:
            self._paste(token, now, self.profile_id, PROVIDER, agent)
        view = self.inspect(token, now)
        legacy = self._profile(self.legacy_profile_id)
        if legacy is not None and not self._holds(self.legacy_profile_id, token.access):
            # A kimi-coding profile carried over from the JSON era: we keep it current too.
            provider = str(legacy.get("provider") or LEGACY_PROVIDER)
            self._paste(token, now, self.legacy_profile_id, provider, None)
            view = self.inspect(token, now)
        return view

    def _margin(self) -> float:
        seconds = self.memory.call_seconds
        if seconds is None:
            seconds = CLI_FIRST_GUESS if self.memory.kimi_plugin is not False else CLI_SLOW_GUESS
        return CLI_MIN_MARGIN + 1.5 * seconds

    def _paste(self, token: Token, now: float, profile_id: str, provider: str,
               agent: str | None) -> None:
        """paste-token with an expiry that cannot outlive the token; once more if the call ran
        slower than the margin allowed for."""
        started = time.monotonic()
        for _attempt in range(2):
            margin = self._margin()
            call_start = now + (time.monotonic() - started)
            expires_in = math.floor(token.expires_at - call_start - margin)
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
        return _view(self.problems, token, self.mode, expires_at, now, detail)

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
            fix = ("kimi-tray renew" if profile_id in maintained
                   else f"openclaw models auth logout {profile_id} --yes")
            problems.append(Problem(
                f"OpenClaw's Kimi profile {profile_id} (provider {profile.get('provider')}) holds "
                "an older token.", fix))
        return problems + auth_order_problems(self.last_report, PROVIDER, self.profile_id)

    def restart_gateway(self) -> tuple[bool, str]:
        return self.runner.restart_gateway()


def auth_order_problems(report: dict[str, Any], provider: str, ours: str) -> list[Problem]:
    """Our profile should be the one OpenClaw picks first for its provider (`models status`).
    A user's own API key first still works (a warning); another token first is a failure."""
    auth = report.get("auth") if isinstance(report.get("auth"), dict) else {}
    entries = [e for e in (auth.get("oauth") or {}).get("providers") or []
               if isinstance(e, dict) and e.get("provider") == provider]
    effective = [p for e in entries for p in e.get("effectiveProfiles") or [] if isinstance(p, dict)]
    order = [str(p.get("profileId") or "") for p in effective]
    if not order:
        return []
    if order[0] == ours:
        return [Problem(f"{ours} is used first", "", fatal=False, check="openclaw auth order")]
    others = " ".join(p for p in order if p != ours)
    return [Problem(f"OpenClaw uses {order[0]} before {ours}",
                    f"openclaw models auth order set --provider {provider} {ours} {others}".strip(),
                    fatal=effective[0].get("type") in ("token", "oauth"), check="openclaw auth order")]


# ------------------------------------------------------------------------------ JSON file
class LegacyFileTarget:
    """OpenClaw 2026.6.x: `agents/<agent>/agent/auth-profiles.json`, written under OpenClaw's
    own lock. Keeps `kimi-coding:default` (OAuth: access and expiry, no refresh token) and, where
    OpenClaw's paste-token made one, `kimi:oauth` (token) current, plus the `models.json` copy."""

    mode = "file"
    restart_after_sync = True

    def __init__(self, settings: Settings, memory: OpenClawMemory | None = None,
                 lock_wait: float | None = None) -> None:
        self.runner = Runner(settings)
        self.memory = memory if memory is not None else OpenClawMemory()
        self.state_dir = settings.openclaw_state_dir
        self.profile_id = settings.openclaw_legacy_profile_id
        self.maintained = (settings.openclaw_legacy_profile_id, settings.openclaw_profile_id)
        self.agents = settings.openclaw_agents
        self.lock_wait = settings.lock_timeout if lock_wait is None else lock_wait
        self.problems: list[Problem] = []

    def describe(self) -> str:
        files = ", ".join(str(p) for p in self.files())
        return f"OpenClaw auth-profiles.json ({files}), profile {self.profile_id}"

    def files(self) -> list[Path]:
        """The configured agents, plus every other agent whose file has a profile we keep."""
        paths = [legacy_profiles_path(self.state_dir, agent) for agent in self.agents]
        for candidate in sorted(self.state_dir.glob("agents/*/agent/auth-profiles.json")):
            if candidate in paths:
                continue
            try:
                data, _ = read_json_object(candidate)
            except LocalFileError:
                continue
            profiles = data.get("profiles")
            if isinstance(profiles, dict) and any(pid in profiles for pid in self.maintained):
                paths.append(candidate)
        return paths

    def sync(self, token: Token, now: float) -> OpenClawView:
        failures: list[Exception] = []
        for path in self.files():
            try:
                self._update(path, token)
            except (LocalFileError, OpenClawError) as exc:
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise OpenClawError(" ".join(str(exc) for exc in failures))
        return self.inspect(token, now)

    def _update(self, path: Path, token: Token) -> None:
        """Read-modify-write under OpenClaw's lock, so neither side's write is lost."""
        if not path.parent.is_dir():
            raise OpenClawError(f"The OpenClaw agent directory {path.parent} does not exist.")
        with openclaw_lock(path, self.lock_wait):
            if path.exists():
                try:
                    data, original = read_json_object(path)
                except LocalFileError as exc:
                    raise OpenClawError(f"{exc} It was left untouched.") from None
            else:
                data, original = {"version": 1, "profiles": {}}, None
            profiles = data.setdefault("profiles", {})
            if not isinstance(profiles, dict):
                raise OpenClawError(f"{path}: 'profiles' is not an object; it was left untouched.")
            if not any(isinstance(profiles.get(pid), dict) for pid in self.maintained):
                profiles[self.profile_id] = {"type": "oauth", "provider": LEGACY_PROVIDER}
            replaced = set()
            for profile_id in self.maintained:
                old = _set_token(profiles.get(profile_id), token)
                if old:
                    replaced.add(old)
            atomic_write(path, dump_json_like(data, original))
            update_models_json(path.parent / "models.json", replaced, token)

    def inspect(self, token: Token, now: float) -> OpenClawView:
        expiries = []
        paths = self.files()
        for path in paths:
            try:
                data, _ = read_json_object(path)
            except LocalFileError as exc:
                return OpenClawView("error", str(exc), self.mode, checked_at=now)
            profile = (data.get("profiles") or {}).get(self.profile_id)
            if not isinstance(profile, dict):
                return OpenClawView("missing", f"{path} has no {self.profile_id} profile.", self.mode,
                                    checked_at=now)
            if _profile_token(profile) != token.access:
                return OpenClawView("stale", "OpenClaw holds an older Kimi token.", self.mode,
                                    checked_at=now)
            expires = profile.get("expires")
            if isinstance(expires, (int, float)):
                expiries.append(expires / 1000)
        if not paths:
            return OpenClawView("missing", "No OpenClaw agent files found.", self.mode, checked_at=now)
        self.problems = self.find_problems(token)
        return _view(self.problems, token, self.mode, min(expiries, default=None), now,
                     f"{len(paths)} agent file(s) hold the current token")

    def find_problems(self, token: Token) -> list[Problem]:
        """Every Kimi profile of every provider id holds the current token, and ours hold no
        refresh token; otherwise the fix."""
        problems = []
        for path in sorted(self.state_dir.glob("agents/*/agent/auth-profiles.json")):
            try:
                data, _ = read_json_object(path)
            except LocalFileError as exc:
                problems.append(Problem(str(exc), f"repair or delete {path}"))
                continue
            profiles = data.get("profiles")
            for profile_id, profile in (profiles.items() if isinstance(profiles, dict) else ()):
                if not isinstance(profile, dict) or profile.get("provider") not in KIMI_PROVIDERS \
                        or profile.get("type") not in ("oauth", "token"):
                    continue
                ours = profile_id in self.maintained
                if _profile_token(profile) != token.access:
                    fix = "kimi-tray renew" if ours else f'delete the "{profile_id}" entry from {path}'
                    problems.append(Problem(
                        f"{path}: Kimi profile {profile_id} (provider {profile.get('provider')}) "
                        "holds an older token.", fix))
                elif ours and "refresh" in profile:
                    problems.append(Problem(
                        f"{path}: {profile_id} holds a refresh token, so OpenClaw could refresh it "
                        "itself and rotate kimi-tray's token.", "kimi-tray renew"))
        return problems

    def restart_gateway(self) -> tuple[bool, str]:
        return self.runner.restart_gateway()


def _profile_token(profile: dict[str, Any]) -> Any:
    return profile.get("token") if profile.get("type") == "token" else profile.get("access")


def _set_token(profile: Any, token: Token) -> str:
    """Put our token into one profile (OAuth or token type); return the token it held."""
    if not isinstance(profile, dict) or profile.get("type") not in ("oauth", "token"):
        return ""
    old = _profile_token(profile)
    if profile["type"] == "token":
        profile["token"] = token.access
    else:
        profile["access"] = token.access
        # Without a refresh token OpenClaw never tries to refresh this profile (oauth.ts returns
        # before calling any refresher), so it can never rotate the token we keep.
        profile.pop("refresh", None)
    profile["expires"] = int(token.expires_at * 1000)
    return old if isinstance(old, str) else ""


def update_models_json(path: Path, replaced: set[str], token: Token) -> None:
    """OpenClaw 2026.6.x copies a provider's key into `models.json` and falls back on it when no
    profile resolves (and keeps an existing literal key when it regenerates the file): replace a
    copy of a token we held there, and nothing else."""
    if not replaced or not path.exists():
        return
    try:
        data, original = read_json_object(path)
    except LocalFileError as exc:
        log.warning("Left %s as it was: %s", path, exc)
        return
    providers = data.get("providers")
    changed = False
    for name, provider in (providers.items() if isinstance(providers, dict) else ()):
        if name in KIMI_PROVIDERS and isinstance(provider, dict) and provider.get("apiKey") in replaced:
            provider["apiKey"] = token.access
            changed = True
    if changed:
        atomic_write(path, dump_json_like(data, original))


def legacy_profiles_path(state_dir: Path, agent: str) -> Path:
    return state_dir / "agents" / agent / "agent" / "auth-profiles.json"


# ------------------------------------------------------------------------------ auto
class AutoTarget:
    """Asks OpenClaw which generation it is at each sync (`--version` is cheap; the rest is
    cached per version) and hands over to that backend."""

    def __init__(self, settings: Settings, memory: OpenClawMemory) -> None:
        self.settings = settings
        self.memory = memory
        self.cli = CliTarget(settings, memory)
        self.file = LegacyFileTarget(settings, memory)
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


def choose_target(settings: Settings, memory: OpenClawMemory | None = None) -> OpenClawTarget:
    """`auto`: what OpenClaw says (AutoTarget); without the openclaw command, the JSON file if
    one exists, else off, saying why."""
    memory = memory if memory is not None else OpenClawMemory()
    mode = settings.openclaw_mode
    if mode == "off":
        return OffTarget("turned off in the configuration")
    if mode == "cli":
        return CliTarget(settings, memory)
    if mode == "file":
        return LegacyFileTarget(settings, memory)
    state_dir = settings.openclaw_state_dir
    if shutil.which(settings.openclaw_command[0]) is not None:
        return AutoTarget(settings, memory)
    if legacy_profiles_path(state_dir, settings.openclaw_agents[0]).exists():
        return LegacyFileTarget(settings, memory)
    return OffTarget(f"no OpenClaw state in {state_dir} and no openclaw command on PATH")
