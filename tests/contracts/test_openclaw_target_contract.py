"""What every OpenClaw target promises, run against each of them: the JSON file target on a real
`auth-profiles.json` under OpenClaw's lock, the CLI target against the real `openclaw` 2026.9.6,
the auto target against the real 2026.6.1 (it must pick the file), and the off target.

Each target hands one token over once per class (a real `openclaw` call takes seconds); the
tests then ask it and OpenClaw about that hand-off."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kimi_tray.core.checks import LEVELS, Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError
from kimi_tray.stores.openclaw import (
    AutoTarget,
    CliTarget,
    LegacyFileTarget,
    OffTarget,
    OpenClawTarget,
    Token,
    choose_target,
    legacy_profiles_path,
    mask_matches,
)
from kimi_tray.stores.state import OpenClawMemory, OpenClawView, fingerprint
from tests.conftest import ROOT, openclaw_dir, openclaw_env, openclaw_legacy_dir, require

SEED = {"version": 1, "profiles": {
    "anthropic:default": {"type": "oauth", "provider": "anthropic", "access": "a", "refresh": "r",
                          "expires": 1795000000000},
    "kimi-coding:default": {"type": "oauth", "provider": "kimi-coding", "access": "old-access",
                            "refresh": "old-refresh", "expires": 1},
}}


def new_token(now: float, lifetime: float = 900.0) -> Token:
    """Shaped like a Kimi access token; a fresh one for every test class."""
    return Token(f"eyJ{secrets.token_hex(24)}.contract.{secrets.token_hex(8)}", now + lifetime)


def seed_agent_file(state_dir: Path) -> Path:
    path = legacy_profiles_path(state_dir, "main")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SEED, indent=2) + "\n")
    return path


@dataclass
class HandOff:
    target: OpenClawTarget
    token: Token  # what the target was given
    view: OpenClawView  # what its sync said
    now: float
    root: Path
    env: dict[str, str]  # how to run this OpenClaw (empty: none)

    def other_token(self) -> Token:
        return new_token(self.now, lifetime=600.0)

    def doctor(self, token: Token | None = None, error: Exception | None = None) -> list[Check]:
        def load_token() -> Token:
            if error is not None:
                raise error
            return token or self.token

        return self.target.doctor_checks(load_token, OpenClawView(), self.now)


class OpenClawTargetContract:
    """Subclasses build the target (`make`), say whether OpenClaw, read as OpenClaw reads it,
    now holds a token (`openclaw_holds`), and whether the gateway needs a restart after a sync
    (`needs_restart`, with the reason)."""

    needs_restart: bool
    watches_store: bool  # whether OpenClaw's store is a file worth a directory watch

    @pytest.fixture(scope="class")
    @classmethod
    def handed(cls, tmp_path_factory: pytest.TempPathFactory) -> HandOff:
        root = tmp_path_factory.mktemp(cls.__name__)
        target, env = cls().make(root)
        now = time.time()
        token = new_token(now)
        return HandOff(target, token, target.sync(token, now), now, root, env)

    @pytest.fixture(scope="class")
    @classmethod
    def doctor(cls, handed: HandOff) -> list[Check]:
        return handed.doctor()

    def make(self, root: Path) -> tuple[OpenClawTarget, dict[str, str]]:
        raise NotImplementedError

    def openclaw_holds(self, handed: HandOff, token: Token) -> bool:
        raise NotImplementedError

    # -- the contract
    def test_a_hand_off_is_read_back_as_openclaw_reads_it(self, handed: HandOff) -> None:
        if handed.target.active:
            assert self.openclaw_holds(handed, handed.token)
            assert handed.view.token_fp == fingerprint(handed.token.access)
            assert handed.view.state in ("in_sync", "error"), handed.view
        else:
            assert handed.view.state == "off" and not handed.view.token_fp
        assert not self.openclaw_holds(handed, handed.other_token())

    def test_inspect_tells_the_current_token_from_another(self, handed: HandOff) -> None:
        current = handed.target.inspect(handed.token, handed.now)
        other = handed.target.inspect(handed.other_token(), handed.now)
        if handed.target.active:
            assert current.token_fp == fingerprint(handed.token.access)
            assert current.state in ("in_sync", "error") and other.state == "stale", (current, other)
        else:
            assert current.state == other.state == "off"

    def test_it_answers_what_its_callers_ask(self, handed: HandOff) -> None:
        target = handed.target
        assert isinstance(target.active, bool) and isinstance(target.restart_after_sync, bool)
        assert target.restart_after_sync is self.needs_restart
        assert target.active or not target.restart_after_sync, "nothing to restart when off"
        assert isinstance(target.mode, str) and target.mode

    def test_it_names_the_files_a_watch_should_cover(self, handed: HandOff) -> None:
        watched = handed.target.watched_files()
        if self.watches_store:
            assert watched and all(p.name == "auth-profiles.json" and p.is_file() for p in watched), watched
        else:
            assert watched == []

    def test_nothing_it_says_holds_the_token(self, handed: HandOff, doctor: list[Check]) -> None:
        said = [handed.target.describe(), handed.view.detail, repr(handed.view),
                *(f"{c.name} {c.detail} {c.fix}" for c in doctor)]
        for text in said:
            assert handed.token.access not in text

    def test_doctor_checks_are_well_formed(self, handed: HandOff, doctor: list[Check]) -> None:
        assert doctor
        for check in doctor:
            assert isinstance(check, Check) and check.level in LEVELS
            assert check.name.strip() and check.detail.strip()
            assert check.level == "ok" or check.fix.strip(), f"{check} names no fix"
        profile = [c for c in doctor if c.name == "openclaw profile"]
        if handed.target.active:
            assert [(c.level, c.detail.split(":")[0]) for c in profile] == [("ok", "in_sync")], doctor
        else:
            assert not profile and ("warn", "openclaw sync") in [(c.level, c.name) for c in doctor]

    def test_doctor_fails_on_a_token_openclaw_does_not_hold(self, handed: HandOff) -> None:
        checks = handed.doctor(token=handed.other_token())
        failed = [c for c in checks if c.level == "fail" and c.name == "openclaw profile"]
        if handed.target.active:
            assert failed and failed[0].detail.startswith("stale"), checks
        else:
            assert not failed

    def test_doctor_reports_an_unreadable_login_instead_of_raising(self, handed: HandOff) -> None:
        error = LocalFileError("/home/x/.kimi/credentials/kimi-code.json is not valid JSON.")
        checks = handed.doctor(error=error)
        profile = [(c.level, c.detail) for c in checks if c.name == "openclaw profile"]
        assert profile == ([("fail", str(error))] if handed.target.active else [])


class TestOffTarget(OpenClawTargetContract):
    needs_restart = False
    watches_store = False

    def make(self, root: Path) -> tuple[OpenClawTarget, dict[str, str]]:
        settings = Settings(openclaw_mode="off", openclaw_state_dir=root / ".openclaw",
                            openclaw_command=(str(root / "no-openclaw"),), state_dir=root / "state")
        target = choose_target(settings)
        assert isinstance(target, OffTarget)
        return target, {}

    def openclaw_holds(self, handed: HandOff, token: Token) -> bool:
        """Off writes nowhere: OpenClaw's directory is never created."""
        return (handed.root / ".openclaw").exists()


class TestLegacyFileTarget(OpenClawTargetContract):
    """A real auth-profiles.json under OpenClaw's lock; no openclaw command at all."""

    needs_restart = True  # a running 2026.6.x gateway reads the file only when it starts
    watches_store = True

    def make(self, root: Path) -> tuple[OpenClawTarget, dict[str, str]]:
        seed_agent_file(root / ".openclaw")
        settings = Settings(openclaw_mode="file", openclaw_state_dir=root / ".openclaw",
                            openclaw_command=(str(root / "no-openclaw"),), state_dir=root / "state")
        target = choose_target(settings)
        assert isinstance(target, LegacyFileTarget)
        return target, {}

    def openclaw_holds(self, handed: HandOff, token: Token) -> bool:
        """As OpenClaw 2026.6.x reads its store: the profile's `access` (OAuth type), its expiry
        in milliseconds, and no refresh token it could rotate ours with."""
        path = legacy_profiles_path(handed.root / ".openclaw", "main")
        profile = json.loads(path.read_text())["profiles"]["kimi-coding:default"]
        return (profile["type"] == "oauth" and profile["access"] == token.access
                and profile["expires"] == int(token.expires_at * 1000) and "refresh" not in profile)

    def test_a_hand_off_waits_for_a_live_holder_of_openclaws_lock(self, tmp_path: Path) -> None:
        """Another process holds OpenClaw's lock for a second: the sync waits for it, then
        writes, and leaves no lock behind."""
        target, _ = self.make(tmp_path)
        path = legacy_profiles_path(tmp_path / ".openclaw", "main")
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, time; from pathlib import Path\n"
             "from kimi_tray.stores.openclaw import openclaw_lock\n"
             "with openclaw_lock(Path(sys.argv[1])):\n"
             "    print('held', flush=True); time.sleep(1.0)\n", str(path)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = path.parent / "auth-profiles.json.lock"
        assert lock.exists()
        started = time.monotonic()
        token = new_token(time.time())
        view = target.sync(token, time.time())
        assert time.monotonic() - started > 0.3, "it waited for the holder"
        assert holder.wait(10) == 0
        assert view.token_fp == fingerprint(token.access) and not lock.exists()
        handed = HandOff(target, token, view, time.time(), tmp_path, {})
        assert self.openclaw_holds(handed, token)


def openclaw_report(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(["openclaw", "models", "status", "--json"], env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout[result.stdout.find("{"):])
    return report


class RealOpenClaw:
    """Build the target with a real `openclaw` first on PATH and a temp HOME (its Runner
    takes its environment when it is made)."""

    def real_target(self, directory: Path | None, what: str, root: Path,
                    mode: str) -> tuple[OpenClawTarget, dict[str, str]]:
        require(directory is not None, f"{what} from npm (scripts/install-openclaw)")
        assert directory is not None
        home = root / "home"
        state_dir = home / ".openclaw"
        home.mkdir()
        if mode == "auto":
            seed_agent_file(state_dir)
        base = {"HOME": str(home), "PATH": f"unused{os.pathsep}{os.environ['PATH']}"}
        env = {**os.environ, **openclaw_env(base, directory, state_dir)}
        settings = Settings(openclaw_mode=mode, openclaw_state_dir=state_dir,
                            openclaw_command=(str(directory / "node_modules" / ".bin" / "openclaw"),),
                            state_dir=root / "state")
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            target = choose_target(settings, OpenClawMemory())
        return target, env


@pytest.mark.openclaw
class TestCliTarget(RealOpenClaw, OpenClawTargetContract):
    """OpenClaw 2026.9.6 (credentials in SQLite), as npm ships it."""

    needs_restart = False  # paste-token makes a running gateway reload the profile
    watches_store = False

    def make(self, root: Path) -> tuple[OpenClawTarget, dict[str, str]]:
        target, env = self.real_target(openclaw_dir(), "the openclaw CLI", root, "cli")
        assert isinstance(target, CliTarget)
        return target, env

    def openclaw_holds(self, handed: HandOff, token: Token) -> bool:
        """OpenClaw's own report: the masked label of our profile shows this token."""
        report = openclaw_report(handed.env)
        labels = [label for provider in report["auth"]["providers"]
                  for label in provider["profiles"]["labels"]]
        return any(mask_matches(label.split(":", 2)[-1], token.access)
                   for label in labels if label.startswith("kimi:oauth="))


@pytest.mark.openclaw
class TestAutoTargetOnJsonOpenClaw(RealOpenClaw, OpenClawTargetContract):
    """OpenClaw 2026.6.1 says its store is auth-profiles.json: the auto target writes the file."""

    needs_restart = True
    watches_store = True

    def make(self, root: Path) -> tuple[OpenClawTarget, dict[str, str]]:
        target, env = self.real_target(openclaw_legacy_dir(), "openclaw@2026.6.1", root, "auto")
        assert isinstance(target, AutoTarget)
        return target, env

    def openclaw_holds(self, handed: HandOff, token: Token) -> bool:
        """OpenClaw's report names its store and the expiry it believes; the store holds the
        token there."""
        auth = openclaw_report(handed.env)["auth"]
        believed = [p.get("expiresAt") for p in auth["oauth"]["profiles"]
                    if p["profileId"] == "kimi-coding:default"]
        stored = json.loads(Path(auth["storePath"]).read_text())["profiles"]["kimi-coding:default"]
        return believed == [int(token.expires_at * 1000)] and stored.get("access") == token.access

    def test_it_picked_the_file(self, handed: HandOff) -> None:
        assert handed.target.mode == "file"
