"""The stores at edges their other tests left open: a file's replaceability on Windows, a lock that
vanishes while we look at it, a live lock holder where /proc is missing, the paste-token retries
and their bookkeeping, the JSON-file target's formatting and agents, the runner's odd answers."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError, OpenClawError
from kimi_tray.stores import fileio
from kimi_tray.stores.fileio import DirectoryLock, check_replaceable
from kimi_tray.stores.openclaw import cli_target as cli_module
from kimi_tray.stores.openclaw import lock as lock_module
from kimi_tray.stores.openclaw.base import Problem, Token
from kimi_tray.stores.openclaw.cli_target import CliTarget, auth_order_problems
from kimi_tray.stores.openclaw.detect import sanitize
from kimi_tray.stores.openclaw.file_target import (
    LegacyFileTarget,
    legacy_profiles_path,
    update_models_json,
)
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.state import OpenClawMemory, OpenClawView
from tests.conftest import calls
from tests.support.clock import FakeClock
from tests.support.offline import offline_env, offline_settings

ACCESS = "eyJhbGciOi-0123456789-abcdefghijkl-tail7890"
NOW = 1_800_000_000.0
TOKEN = Token("eyJ-current-access-token-0123456789", NOW + 900)
OURS = {"type": "oauth", "provider": "kimi-coding", "access": "old", "expires": 1}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return offline_env(tmp_path)


@pytest.fixture
def settings(env: dict[str, str], tmp_path: Path) -> Settings:
    return offline_settings(env, tmp_path)


@pytest.fixture
def logged(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Runners copy our environment when made: let the stand-in record its calls."""
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    return env


def pasted_expiries(env: dict[str, str]) -> list[str]:
    return [c["argv"][c["argv"].index("--expires-in") + 1] for c in calls(env)
            if c["argv"][:3] == ["models", "auth", "paste-token"]]


def shell_openclaw(settings: Settings, tmp_path: Path, script: str) -> Settings:
    path = tmp_path / "bin" / "sh-openclaw"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return settings.with_overrides(openclaw_command=(str(path),))


def agent_file(settings: Settings, data: dict | None, agent: str = "main", indent: int = 2) -> Path:
    path = legacy_profiles_path(settings.openclaw_state_dir, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        path.write_text(json.dumps(data, indent=indent) + "\n")
    return path


# -- fileio
def test_on_windows_a_regular_file_is_replaceable_without_asking_for_inode_flags(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "credentials.json"
    target.write_text("{}")
    with monkeypatch.context() as windows:  # undone before pytest itself makes a Path again
        windows.setitem(sys.modules, "fcntl", None)  # as on Windows: no fcntl to import
        windows.setattr(fileio.os, "name", "nt")
        check_replaceable(target)


def test_a_target_that_cannot_be_looked_at_is_named_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(LocalFileError) as caught:
        check_replaceable(blocker / "x")
    assert str(caught.value) == f"Could not read {blocker / 'x'}: Not a directory."


def test_a_lock_released_while_we_look_at_it_is_taken_at_once(tmp_path: Path) -> None:
    class ReleasingClock(FakeClock):
        """The other program releases its lock just as we read the clock to judge its age."""

        def now(self) -> float:
            with contextlib.suppress(FileNotFoundError):
                lock.lock_dir.rmdir()
            return super().now()

    sentinel = tmp_path / "share" / "credentials"
    lock = DirectoryLock(sentinel, timeout=0.0, clock=ReleasingClock())
    sentinel.parent.mkdir(mode=0o700)
    lock.lock_dir.mkdir()
    lock.acquire()  # no wait, so no timeout: the retry came at once
    try:
        assert lock.lock_dir.is_dir()
    finally:
        lock.release()
    assert not lock.lock_dir.exists()


# -- OpenClaw's lock
def test_a_live_holder_counts_as_alive_where_proc_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on a system without /proc (macOS): the process answers the probe, its status cannot
    # be read. Only our own pid is probed.
    monkeypatch.setattr(lock_module, "Path", lambda name: tmp_path / "no-proc" / name.lstrip("/"))
    assert lock_module.pid_definitely_dead(os.getpid()) is False
    assert lock_module.is_stale({"pid": os.getpid()}, NOW) is False


# -- doctor
def test_file_doctor_with_the_command_keeps_the_targets_own_problems(settings: Settings) -> None:
    path = agent_file(settings, {"profiles": {
        "kimi-coding:default": OURS,
        "kimi-coding:work": {"type": "oauth", "provider": "kimi-coding", "access": "stale"}}})
    target = LegacyFileTarget(settings)
    target.sync(TOKEN, NOW)
    checks = target.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert checks[0] == Check("ok", "openclaw command", settings.openclaw_command[0])
    assert Check("fail", "openclaw profiles", f"{path}: Kimi profile kimi-coding:work (provider "
                 "kimi-coding) holds an older token.",
                 f'delete the "kimi-coding:work" entry from {path}') in checks
    assert [c.name for c in checks].count("openclaw profiles") == 1


# -- the CLI target
def test_describe_names_the_whole_command(settings: Settings) -> None:
    target = CliTarget(settings.with_overrides(openclaw_command=("node", "/opt/oc/openclaw.mjs")))
    assert target.describe() == "OpenClaw CLI (node /opt/oc/openclaw.mjs), profile kimi:oauth"


class SteppedClock:
    """monotonic() gives these readings in turn, then the last one for ever."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def monotonic(self) -> float:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_paste_token_is_tried_at_most_twice(settings: Settings, logged,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # sync start, then per paste: the expiry's clock, before, after. 30 s > margin 20, then
    # 100 s > margin 50: still only two pastes.
    monkeypatch.setattr(cli_module, "time", SteppedClock(0, 0, 0, 30, 30, 30, 130))
    memory = OpenClawMemory(kimi_plugin=True)
    CliTarget(settings, memory).sync(Token(ACCESS, NOW + 900), NOW)
    assert pasted_expiries(logged) == ["880s", "820s"]
    assert memory.call_seconds == 100.0


def test_a_paste_taking_exactly_its_margin_is_not_repeated_and_its_time_kept_to_the_hundredth(
        settings: Settings, logged, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "time", SteppedClock(0, 0, 0, 20))
    memory = OpenClawMemory(kimi_plugin=True, call_seconds=10.0)  # margin 5 + 1.5 x 10 = 20 s
    CliTarget(settings, memory).sync(Token(ACCESS, NOW + 900), NOW)
    assert pasted_expiries(logged) == ["880s"]
    assert memory.call_seconds == 20.0
    monkeypatch.setattr(cli_module, "time", SteppedClock(0, 0, 0, 1.2345))
    CliTarget(settings, memory).sync(Token(ACCESS, NOW + 900), NOW)
    assert memory.call_seconds == 1.23


def test_a_token_with_one_second_left_after_the_margin_is_still_handed_over(
        settings: Settings, logged, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "time", SteppedClock(0))
    memory = OpenClawMemory(kimi_plugin=True, call_seconds=10.0)
    CliTarget(settings, memory).sync(Token(ACCESS, NOW + 21.5), NOW)
    assert pasted_expiries(logged) == ["1s"]


def test_paste_token_gets_its_own_time_limit(settings: Settings, logged,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "PASTE_TIMEOUT", 0.3)
    monkeypatch.setenv("FAKE_OPENCLAW_PASTE_DELAY", "2")
    target = CliTarget(settings, OpenClawMemory(kimi_plugin=True, call_seconds=0.0))
    with pytest.raises(OpenClawError) as slow:
        target.sync(Token(ACCESS, NOW + 900), NOW)
    assert str(slow.value) == "openclaw models auth paste-token did not finish in 0.3 s."


def test_a_carried_over_legacy_profile_of_token_type_is_kept_current(settings: Settings,
                                                                     logged) -> None:
    store = settings.openclaw_state_dir / "fake-store.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps({"kimi-coding:default": {
        "label": "eyJhbGci...older12", "provider": "kimi-coding", "type": "token"}}))
    now = __import__("time").time()
    CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True)).sync(
        Token(ACCESS, now + 900), now)
    argvs = [c["argv"] for c in calls(logged) if c["argv"][:3] == ["models", "auth", "paste-token"]]
    assert [(a[4], a[6]) for a in argvs] == [("kimi", "kimi:oauth"),
                                             ("kimi-coding", "kimi-coding:default")]


def test_a_profile_openclaw_names_no_id_for_is_said_so_with_a_fix_that_works(settings: Settings) -> None:
    """No id to log out by: the fix is to look, not a logout command missing its argument."""
    target = CliTarget(settings, OpenClawMemory(kimi_plugin=True))
    target.last_report = {"auth": {"oauth": {"profiles": [{"provider": "kimi", "type": "token"}]}}}
    assert target.find_problems(Token(ACCESS, NOW + 900), NOW) == [Problem(
        "OpenClaw's Kimi profile (no id) (provider kimi) holds an older token.",
        "openclaw models status")]
    report = {"auth": {"oauth": {"providers": [{"provider": "kimi", "effectiveProfiles": [
        {"type": "api_key"}, {"profileId": "kimi:oauth"}, {"type": "token", "profileId": "kimi:x"}]}]}}}
    assert auth_order_problems(report, "kimi", "kimi:oauth") == [Problem(
        "OpenClaw uses a profile with no id before kimi:oauth",
        "openclaw models auth order set --provider kimi kimi:oauth kimi:x",
        fatal=False, check="openclaw auth order")]


def test_a_remembered_cli_generation_survives_loading() -> None:
    memory = OpenClawMemory("OpenClaw 2026.9.6", "cli", "/h/.openclaw/state/openclaw.sqlite")
    assert sanitize(OpenClawMemory(**vars(memory))) == memory


# -- the runner
def test_without_home_the_default_state_dir_is_not_named_to_openclaw(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME")
    monkeypatch.delenv("OPENCLAW_STATE_DIR", raising=False)
    runner = Runner(settings.with_overrides(openclaw_state_dir=Path.home() / ".openclaw"))
    assert "OPENCLAW_STATE_DIR" not in runner.env


def test_json_that_is_not_an_object_is_named(settings: Settings, tmp_path: Path) -> None:
    runner = Runner(shell_openclaw(settings, tmp_path, "printf 42\n"))
    with pytest.raises(OpenClawError) as scalar:
        runner.json(["models", "status", "--json"])
    assert str(scalar.value) == "openclaw models status --json did not print a JSON object."


# -- the JSON-file target
def test_other_agents_after_a_configured_one_are_found_too(settings: Settings) -> None:
    main = agent_file(settings, {"profiles": {"kimi-coding:default": OURS}})
    zeta = agent_file(settings, {"profiles": {"kimi-coding:default": OURS}}, "zeta")
    assert LegacyFileTarget(settings).files() == [main, zeta]


def test_every_failing_agent_file_is_named_in_one_sentence_each(settings: Settings) -> None:
    settings = settings.with_overrides(openclaw_agents=("main", "coder"))
    paths = [agent_file(settings, None, agent) for agent in ("main", "coder")]
    for path in paths:
        path.write_text("[]")
    target = LegacyFileTarget(settings)
    each = []
    for path in paths:
        with pytest.raises(OpenClawError) as one:
            target._update(path, TOKEN)
        each.append(str(one.value))
    with pytest.raises(OpenClawError) as both:
        target.sync(TOKEN, NOW)
    assert str(both.value) == f"{each[0]} {each[1]}"


def test_a_file_without_profiles_gets_ours(settings: Settings) -> None:
    path = agent_file(settings, {"version": 1})
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    profiles = json.loads(path.read_text())["profiles"]
    assert profiles == {"kimi-coding:default": {"type": "oauth", "provider": "kimi-coding",
                                                "access": TOKEN.access,
                                                "expires": int(TOKEN.expires_at * 1000)}}


def test_both_files_keep_their_indentation(settings: Settings) -> None:
    path = agent_file(settings, {"version": 1, "profiles": {"kimi-coding:default": OURS}}, indent=4)
    models = path.with_name("models.json")
    models.write_text(json.dumps({"providers": {"kimi-coding": {"apiKey": "old"}}}, indent=4))
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    for written in (path, models):
        second = written.read_text().splitlines()[1]
        assert second.startswith('    "'), (written.name, second)
    assert json.loads(models.read_text())["providers"]["kimi-coding"]["apiKey"] == TOKEN.access


def test_no_models_json_is_not_worth_a_warning(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        update_models_json(tmp_path / "models.json", {"old"}, TOKEN)
    assert caplog.records == []
    assert not (tmp_path / "models.json").exists()


def test_with_an_empty_home_openclaw_is_told_the_state_dir(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Node takes its home from the password database when HOME is empty: no default to rely on.
    monkeypatch.setenv("HOME", "")
    monkeypatch.delenv("OPENCLAW_STATE_DIR", raising=False)
    state_dir = Path.home() / ".openclaw"
    runner = Runner(settings.with_overrides(openclaw_state_dir=state_dir))
    assert runner.env["OPENCLAW_STATE_DIR"] == str(state_dir)


def test_a_sync_that_replaced_no_token_leaves_models_json_unread(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    path = agent_file(settings, {"version": 1, "profiles": {}})
    models = path.with_name("models.json")
    models.write_text("{")
    with caplog.at_level(logging.WARNING):
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert caplog.records == []
    assert models.read_text() == "{"
