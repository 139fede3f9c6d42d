"""OpenClaw 2026.6.x: `agents/<agent>/agent/auth-profiles.json`, under OpenClaw's own lock."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import KimiTrayError, LocalFileError, OpenClawError
from kimi_tray.stores.fileio import atomic_write, dump_json_like, read_json_object
from kimi_tray.stores.openclaw.base import LEGACY_PROVIDER, PROVIDER, Problem, Token, holding_view
from kimi_tray.stores.openclaw.checks import TokenLoader, command_check, holding_checks
from kimi_tray.stores.openclaw.cli_target import auth_order_problems
from kimi_tray.stores.openclaw.detect import KIMI_PROVIDERS
from kimi_tray.stores.openclaw.lock import openclaw_lock
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.state import OpenClawMemory, OpenClawView

log = logging.getLogger(__name__)


class LegacyFileTarget:
    """OpenClaw 2026.6.x: `agents/<agent>/agent/auth-profiles.json`, written under OpenClaw's
    own lock. Keeps `kimi-coding:default` (OAuth: access and expiry, no refresh token) and, where
    OpenClaw's paste-token made one, `kimi:oauth` (token) current, plus the `models.json` copy."""

    mode = "file"
    active = True
    restart_after_sync = True  # a running 2026.6.x gateway reads the file only when it starts

    def __init__(self, settings: Settings, lock_wait: float | None = None,
                 memory: OpenClawMemory | None = None) -> None:
        self.runner = Runner(settings)
        self.memory = memory if memory is not None else OpenClawMemory()
        self.state_dir = settings.openclaw_state_dir
        self.profile_id = settings.openclaw_legacy_profile_id
        self.token_profile_id = settings.openclaw_profile_id
        self.maintained = (self.profile_id, self.token_profile_id)
        self.agents = settings.openclaw_agents
        self.lock_wait = settings.lock_timeout if lock_wait is None else lock_wait
        self.problems: list[Problem] = []
        self.holding_profile_id = self.profile_id  # where our token is, as the last inspect saw

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
            if isinstance(profiles, dict) and self._ours(profiles):
                paths.append(candidate)
        return paths

    def watched_files(self) -> list[Path]:
        return self.files()

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
            if not self._ours(profiles):
                new_id, new_profile = self._new_profile(profiles)
                profiles[new_id] = new_profile
            replaced = set()
            for profile_id in self.maintained:
                old = _set_token(profiles.get(profile_id), token)
                if old:
                    replaced.add(old)
            atomic_write(save_target(path), dump_json_like(data, original))
            update_models_json(path.parent / "models.json", replaced, token)

    def _ours(self, profiles: dict[str, Any]) -> list[str]:
        """The profiles we keep current: ours by id, and a token or OAuth profile (under our
        legacy id a user may keep an API key of their own, which is never ours)."""
        return [pid for pid in self.maintained if isinstance(profiles.get(pid), dict)
                and profiles[pid].get("type") in ("oauth", "token")]

    def _new_profile(self, profiles: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """kimi-coding:default as the seed wrote it; `kimi:oauth` (a token profile, as
        OpenClaw's paste-token writes it) when the user's own profile has that id."""
        if self.profile_id not in profiles:
            return self.profile_id, {"type": "oauth", "provider": LEGACY_PROVIDER}
        if self.token_profile_id not in profiles:
            return self.token_profile_id, {"type": "token", "provider": PROVIDER}
        raise OpenClawError(f"Profiles {self.profile_id} and {self.token_profile_id} are not "
                            "kimi-tray's; set openclaw_profile_id to a free profile id.")

    def inspect(self, token: Token, now: float) -> OpenClawView:
        expiries = []
        paths = self.files()
        for path in paths:
            try:
                data, _ = read_json_object(path)
            except LocalFileError as exc:
                return OpenClawView("error", str(exc), self.mode, checked_at=now)
            profiles = found if isinstance(found := data.get("profiles"), dict) else {}
            ours = self._ours(profiles)
            profile = profiles[ours[0]] if ours else None
            if ours and path == paths[0]:
                self.holding_profile_id = ours[0]
            if profile is None:
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
        return holding_view(self.problems, token, self.mode, min(expiries, default=None), now,
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

    def doctor_checks(self, load_token: TokenLoader, last_view: OpenClawView,
                      now: float) -> list[Check]:
        """The file works without the openclaw command (a warning); with it, OpenClaw also
        says which profile it uses first."""
        return [command_check(self.runner.command[0], required=False),
                *self.holding_checks(load_token, last_view, now)]

    def holding_checks(self, load_token: TokenLoader, last_view: OpenClawView,
                       now: float) -> list[Check]:
        return holding_checks(self, self.runner, self.memory, load_token, last_view, now,
                              self._auth_order_problems)

    def _auth_order_problems(self, ours: str) -> list[Problem]:
        try:
            report = self.runner.json(["models", "status", "--json"])
        except KimiTrayError as exc:
            return [Problem(str(exc), "openclaw doctor", fatal=False, check="openclaw auth order")]
        provider = LEGACY_PROVIDER if ours == self.profile_id else PROVIDER
        return auth_order_problems(report, provider, ours)


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
    # before calling any refresher), so it can never rotate the token we keep; `doctor` flags one
    # on either type, so neither keeps one.
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


def save_target(path: Path) -> Path:
    """Where OpenClaw 2026.6.x saves this file (json-file.ts): through a symlink to its target,
    so that a user's link stays a link; else the file itself."""
    if not path.is_symlink():
        return path
    return Path(os.path.normpath(path.parent / os.readlink(path)))


def legacy_profiles_path(state_dir: Path, agent: str) -> Path:
    return state_dir / "agents" / agent / "agent" / "auth-profiles.json"
