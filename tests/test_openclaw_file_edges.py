"""The JSON-file target (OpenClaw 2026.6.x) and the choice of target, at their edges, on real files:
which profile is ours, which file is found, what a stale or broken file reads as, the `models.json`
copy, and which target each configuration gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError, OpenClawError
from kimi_tray.stores.openclaw import (
    AutoTarget,
    CliTarget,
    LegacyFileTarget,
    OffTarget,
    Token,
    choose_target,
    legacy_profiles_path,
)
from kimi_tray.stores.openclaw.base import Problem
from kimi_tray.stores.openclaw.file_target import save_target, update_models_json
from kimi_tray.stores.state import OpenClawMemory, OpenClawView, fingerprint
from tests.support.offline import offline_env, offline_settings

NOW = 1_800_000_000.0
TOKEN = Token("eyJ-current-access-token-0123456789", NOW + 900)
EXPIRES_MS = int(TOKEN.expires_at * 1000)
OURS = {"type": "oauth", "provider": "kimi-coding", "access": "old", "refresh": "r", "expires": 1}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return offline_env(tmp_path)


@pytest.fixture
def settings(env: dict[str, str], tmp_path: Path) -> Settings:
    return offline_settings(env, tmp_path)


def agent_file(settings: Settings, profiles: dict | None, agent: str = "main", **extra) -> Path:
    path = legacy_profiles_path(settings.openclaw_state_dir, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    if profiles is not None:
        path.write_text(json.dumps({"version": 1, "profiles": profiles, **extra}, indent=2) + "\n")
    return path


def profiles_of(path: Path) -> dict:
    return json.loads(path.read_text())["profiles"]


# -- which profile is ours
def test_our_profiles_get_the_token_and_lose_any_refresh_token(settings: Settings) -> None:
    """Either type: `doctor` flags a refresh token on a profile we keep, so a sync drops it (it
    used to stay on a token profile, and the view read as an error after every renewal)."""
    path = agent_file(settings, {"kimi-coding:default": OURS, "kimi:oauth": {
        "type": "token", "provider": "kimi", "token": "old", "expires": 1, "refresh": "r2"}})
    view = LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert profiles_of(path) == {
        "kimi-coding:default": {"type": "oauth", "provider": "kimi-coding", "access": TOKEN.access,
                                "expires": EXPIRES_MS},
        "kimi:oauth": {"type": "token", "provider": "kimi", "token": TOKEN.access,
                       "expires": EXPIRES_MS}}
    assert view == OpenClawView("in_sync", "1 agent file(s) hold the current token", "file",
                                fingerprint(TOKEN.access), TOKEN.expires_at, NOW)


def test_a_new_file_gets_kimi_coding_default(settings: Settings) -> None:
    path = agent_file(settings, None)
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert json.loads(path.read_text()) == {"version": 1, "profiles": {"kimi-coding:default": {
        "type": "oauth", "provider": "kimi-coding", "access": TOKEN.access, "expires": EXPIRES_MS}}}


def test_a_users_own_key_under_our_legacy_id_is_kept_and_kimi_oauth_made(settings: Settings) -> None:
    key = {"type": "api_key", "provider": "kimi-coding", "key": "sk-own"}
    path = agent_file(settings, {"kimi-coding:default": key})
    target = LegacyFileTarget(settings)
    view = target.sync(TOKEN, NOW)
    assert profiles_of(path) == {"kimi-coding:default": key, "kimi:oauth": {
        "type": "token", "provider": "kimi", "token": TOKEN.access, "expires": EXPIRES_MS}}
    assert view.state == "in_sync" and target.holding_profile_id == "kimi:oauth"


def test_both_ids_taken_by_the_user_is_an_error_naming_the_fix(settings: Settings) -> None:
    taken = {"kimi-coding:default": {"type": "api_key"}, "kimi:oauth": {"type": "api_key"}}
    path = agent_file(settings, taken)
    before = path.read_bytes()
    with pytest.raises(OpenClawError) as taken_error:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert str(taken_error.value) == ("Profiles kimi-coding:default and kimi:oauth are not "
                                      "kimi-tray's; set openclaw_profile_id to a free profile id.")
    assert path.read_bytes() == before


def test_profiles_that_are_not_an_object_are_left_untouched(settings: Settings) -> None:
    path = agent_file(settings, None)
    path.write_text('{"profiles": [1]}')
    with pytest.raises(OpenClawError) as bad:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert str(bad.value) == f"{path}: 'profiles' is not an object; it was left untouched."
    assert path.read_text() == '{"profiles": [1]}'


def test_a_missing_agent_directory_is_named(settings: Settings) -> None:
    with pytest.raises(OpenClawError) as missing:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    directory = legacy_profiles_path(settings.openclaw_state_dir, "main").parent
    assert str(missing.value) == f"The OpenClaw agent directory {directory} does not exist."


def test_every_failing_agent_file_is_reported_together(settings: Settings) -> None:
    settings = settings.with_overrides(openclaw_agents=("main", "coder", "ok"))
    for agent in ("main", "coder"):
        agent_file(settings, None, agent).write_text("[]")
    good = agent_file(settings, {"kimi-coding:default": OURS}, "ok")
    with pytest.raises(OpenClawError) as both:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert str(both.value).count("It was left untouched.") == 2
    assert "agents/main/" in str(both.value) and "agents/coder/" in str(both.value)
    assert profiles_of(good)["kimi-coding:default"]["access"] == TOKEN.access, "the others still"


def test_other_agents_with_our_profile_are_found_and_others_are_not(settings: Settings) -> None:
    main = agent_file(settings, {"kimi-coding:default": OURS})
    coder = agent_file(settings, {"kimi:oauth": {"type": "token", "token": "old"}}, "coder")
    agent_file(settings, {"kimi-coding:default": {"type": "api_key"}}, "keyonly")
    agent_file(settings, {"x": {}}, "bare")
    agent_file(settings, None, "list").write_text('{"profiles": []}')
    target = LegacyFileTarget(settings)
    view = target.sync(TOKEN, NOW)
    assert view.detail == "2 agent file(s) hold the current token"
    assert profiles_of(coder)["kimi:oauth"]["token"] == TOKEN.access
    broken = agent_file(settings, None, "broken")
    broken.write_text("{")
    assert target.files() == [main, coder]
    assert target.watched_files() == [main, coder]
    assert target.describe() == (f"OpenClaw auth-profiles.json ({main}, {coder}), "
                                 "profile kimi-coding:default")
    view = target.inspect(TOKEN, NOW)
    assert view.state == "error" and view.detail.startswith(f"{broken} is not valid JSON")


# -- models.json
def test_models_json_copies_of_a_replaced_token_follow_it(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    data = {"providers": {"kimi": {"apiKey": "old-1"}, "kimi-coding": {"apiKey": "old-2"},
                          "kimi-code": {"apiKey": "sk-own"}, "openai": {"apiKey": "old-1"},
                          "moonshot": "old-1"}}
    models.write_text(json.dumps(data))
    update_models_json(models, {"old-1", "old-2"}, TOKEN)
    providers = json.loads(models.read_text())["providers"]
    assert providers == {"kimi": {"apiKey": TOKEN.access}, "kimi-coding": {"apiKey": TOKEN.access},
                         "kimi-code": {"apiKey": "sk-own"}, "openai": {"apiKey": "old-1"},
                         "moonshot": "old-1"}


def test_models_json_is_left_alone_when_nothing_of_ours_is_in_it(tmp_path: Path, caplog) -> None:
    models = tmp_path / "models.json"
    models.write_text('{"providers": {"kimi": {"apiKey": "other"}}}')
    before = models.stat().st_mtime_ns, models.stat().st_ino
    update_models_json(models, {"old"}, TOKEN)
    update_models_json(models, set(), TOKEN)
    assert (models.stat().st_mtime_ns, models.stat().st_ino) == before
    update_models_json(tmp_path / "none.json", {"old"}, TOKEN)
    assert not (tmp_path / "none.json").exists()
    models.write_text('{"providers": ')
    update_models_json(models, {"old"}, TOKEN)
    assert models.read_text() == '{"providers": '
    assert f"Left {models} as it was" in caplog.text
    models.write_text('{"providers": ["kimi"]}')
    update_models_json(models, {"old"}, TOKEN)
    assert models.read_text() == '{"providers": ["kimi"]}'


def test_models_json_next_to_the_agent_file_is_updated_by_a_sync(settings: Settings) -> None:
    path = agent_file(settings, {"kimi-coding:default": OURS})
    models = path.with_name("models.json")
    models.write_text(json.dumps({"providers": {"kimi-coding": {"apiKey": "old"}}}))
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert json.loads(models.read_text())["providers"]["kimi-coding"]["apiKey"] == TOKEN.access


def test_a_symlinked_agent_file_stays_a_link(settings: Settings, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere" / "auth-profiles.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"profiles": {"kimi-coding:default": OURS}}))
    path = agent_file(settings, None)
    path.symlink_to(Path("..", "..", "..", "..", "..", "elsewhere", "auth-profiles.json"))
    assert save_target(path) == real
    assert save_target(real) == real
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert path.is_symlink() and profiles_of(real)["kimi-coding:default"]["access"] == TOKEN.access


# -- reading what OpenClaw holds
def test_inspect_missing_stale_broken_and_current(settings: Settings) -> None:
    none = LegacyFileTarget(settings.with_overrides(openclaw_agents=()))
    assert none.inspect(TOKEN, NOW) == OpenClawView("missing", "No OpenClaw agent files found.",
                                                    "file", checked_at=NOW)
    target = LegacyFileTarget(settings)
    path = agent_file(settings, None)
    assert target.inspect(TOKEN, NOW).state == "error", "a configured agent without its file"
    path.write_text("{")
    view = target.inspect(TOKEN, NOW)
    assert view.state == "error" and str(path) in view.detail and view.checked_at == NOW
    assert view.mode == "file"
    path.write_text('{"profiles": ["kimi-coding:default"]}')
    assert target.inspect(TOKEN, NOW).state == "missing"
    agent_file(settings, {"other": {"type": "oauth"}})
    assert target.inspect(TOKEN, NOW) == OpenClawView(
        "missing", f"{path} has no kimi-coding:default profile.", "file", checked_at=NOW)
    agent_file(settings, {"kimi-coding:default": OURS})
    assert target.inspect(TOKEN, NOW) == OpenClawView(
        "stale", "OpenClaw holds an older Kimi token.", "file", checked_at=NOW)
    agent_file(settings, {"kimi:oauth": {"type": "token", "provider": "kimi", "token": TOKEN.access}})
    view = target.inspect(TOKEN, NOW)
    assert (view.state, view.expires_at) == ("in_sync", None)
    assert target.holding_profile_id == "kimi:oauth"


def test_the_earliest_expiry_of_all_files_is_reported(settings: Settings) -> None:
    settings = settings.with_overrides(openclaw_agents=("main", "coder"))
    current = {"type": "oauth", "provider": "kimi-coding", "access": TOKEN.access}
    agent_file(settings, {"kimi-coding:default": {**current, "expires": 1_800_000_500_000}})
    agent_file(settings, {"kimi-coding:default": {**current, "expires": 1_800_000_400_500}}, "coder")
    view = LegacyFileTarget(settings).inspect(TOKEN, NOW)
    assert view.expires_at == 1_800_000_400.5
    assert view.detail == "2 agent file(s) hold the current token"


def test_problems_name_each_stale_profile_a_refresh_token_and_a_broken_file(settings: Settings) -> None:
    agent_file(settings, None, "aaa").write_text("{")  # a broken file before the others
    main = agent_file(settings, {
        "openai:x": {"type": "oauth", "provider": "openai", "access": "old"},
        "kimi:key": {"type": "api_key", "provider": "kimi", "key": "sk"},
        "kimi-coding:default": {**OURS, "access": TOKEN.access},
        "kimi:oauth": {"type": "token", "provider": "kimi", "token": "old"},
        "kimi-code:mine": {"type": "oauth", "provider": "kimi-code", "access": "old"},
        "kimi:same": {"type": "token", "provider": "kimi", "token": TOKEN.access, "refresh": "r"},
        "odd": "not a profile"})
    broken = agent_file(settings, None, "zzz")
    broken.write_text("{")
    agent_file(settings, None, "list").write_text('{"profiles": []}')
    target = LegacyFileTarget(settings)
    problems = target.find_problems(TOKEN)
    first = problems.pop(0)
    assert first.fix.startswith("repair or delete ")
    assert first.fix.endswith("agents/aaa/agent/auth-profiles.json")
    assert [(p.text, p.fix) for p in problems[:3]] == [
        (f"{main}: kimi-coding:default holds a refresh token, so OpenClaw could refresh it itself "
         "and rotate kimi-tray's token.", "kimi-tray renew"),
        (f"{main}: Kimi profile kimi:oauth (provider kimi) holds an older token.", "kimi-tray renew"),
        (f"{main}: Kimi profile kimi-code:mine (provider kimi-code) holds an older token.",
         f'delete the "kimi-code:mine" entry from {main}'),
    ]
    assert len(problems) == 4 and problems[3].fix == f"repair or delete {broken}"
    assert all(p.fatal and p.check == "openclaw profiles" for p in problems)


def test_a_fatal_problem_makes_the_view_an_error_with_our_token(settings: Settings) -> None:
    agent_file(settings, {"kimi-coding:default": OURS,
                          "kimi-coding:work": {"type": "oauth", "provider": "kimi-coding",
                                               "access": "stale"}})
    target = LegacyFileTarget(settings)
    view = target.sync(TOKEN, NOW)
    assert view.state == "error" and view.token_fp == fingerprint(TOKEN.access)
    assert view.detail.endswith("Kimi profile kimi-coding:work (provider kimi-coding) holds an "
                                "older token.")


def test_file_doctor_works_without_the_command_and_asks_the_auth_order_with_it(
        settings: Settings, tmp_path: Path, monkeypatch) -> None:
    agent_file(settings, {"kimi-coding:default": OURS})
    target = LegacyFileTarget(settings)
    target.sync(TOKEN, NOW)
    checks = target.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert target.memory.plugin_checked_at == NOW, "doctor's plugin answer is remembered"
    assert [(c.level, c.name) for c in checks] == [
        ("ok", "openclaw command"), ("ok", "openclaw sync"), ("ok", "openclaw kimi plugin"),
        ("ok", "openclaw kimi models"), ("ok", "openclaw profile"), ("ok", "openclaw profiles"),
        ("warn", "openclaw gateway")]
    assert checks[4].detail == "in_sync: kimi-coding:default holds the current token"
    monkeypatch.setenv("FAKE_OPENCLAW_GATEWAY_RUNNING", "1")
    running = LegacyFileTarget(settings)
    last = OpenClawView(detail="in sync; gateway restart failed: no service")
    assert running.doctor_checks(lambda: TOKEN, last, NOW)[-1] == Check(
        "fail", "openclaw gateway",
        "running, but it did not take the current token after the last renewal",
        "openclaw gateway restart")
    offline = LegacyFileTarget(settings.with_overrides(openclaw_command=(str(tmp_path / "none"),)))
    checks = offline.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert [(c.level, c.name) for c in checks] == [
        ("warn", "openclaw command"), ("ok", "openclaw sync"), ("ok", "openclaw profile"),
        ("ok", "openclaw profiles")]
    assert offline._auth_order_problems("kimi-coding:default") == [Problem(
        f"The openclaw command ({tmp_path / 'none'}) was not found.", "openclaw doctor",
        fatal=False, check="openclaw auth order")]
    stale = offline.doctor_checks(lambda: Token("eyJ-other", NOW + 900), OpenClawView(), NOW)
    assert stale[-1] == Check("fail", "openclaw profile",
                              "stale: OpenClaw holds an older Kimi token.", "kimi-tray renew")
    agent_file(settings, None).write_text("{")
    broken = offline.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    path = legacy_profiles_path(settings.openclaw_state_dir, "main")
    assert broken[-1] == Check("fail", "openclaw profile",
                               f"{path} is not valid JSON (line 1, column 2).", "kimi-tray renew")


def test_file_restart_and_lock_wait_come_from_the_settings(settings: Settings) -> None:
    assert LegacyFileTarget(settings).lock_wait == settings.lock_timeout
    assert LegacyFileTarget(settings, lock_wait=0.5).lock_wait == 0.5
    assert LegacyFileTarget(settings).restart_gateway() == (True, "OpenClaw gateway restarted.")
    assert LegacyFileTarget.restart_after_sync is True and CliTarget.restart_after_sync is False


# -- which target
def test_each_mode_gets_its_target(settings: Settings, tmp_path: Path) -> None:
    off = choose_target(settings.with_overrides(openclaw_mode="off"))
    assert isinstance(off, OffTarget) and off.describe() == (
        "OpenClaw sync off: turned off in the configuration")
    assert isinstance(choose_target(settings.with_overrides(openclaw_mode="cli")), CliTarget)
    assert isinstance(choose_target(settings.with_overrides(openclaw_mode="file")), LegacyFileTarget)
    assert isinstance(choose_target(settings), AutoTarget)
    nowhere = settings.with_overrides(openclaw_command=(str(tmp_path / "none"),))
    chosen = choose_target(nowhere)
    assert isinstance(chosen, OffTarget) and chosen.active is False
    assert chosen.reason == (f"no OpenClaw state in {settings.openclaw_state_dir} and no openclaw "
                             "command on PATH")
    assert chosen.command == str(tmp_path / "none")
    agent_file(settings, {})
    assert isinstance(choose_target(nowhere), LegacyFileTarget)


def test_off_target_does_nothing_and_says_why(settings: Settings) -> None:
    assert OffTarget("because").command == "openclaw"
    off = OffTarget("because", "/nowhere/openclaw")
    assert off.sync(TOKEN, NOW) == OpenClawView("off", "because", "off", checked_at=NOW)
    assert off.inspect(TOKEN, NOW) == off.sync(TOKEN, NOW)
    assert off.watched_files() == [] and off.problems == []
    assert off.restart_gateway() == (False, "OpenClaw sync is off; there is no gateway to restart.")
    assert (off.mode, off.active, off.restart_after_sync) == ("off", False, False)
    assert off.doctor_checks(lambda: TOKEN, OpenClawView(), NOW) == [
        Check("warn", "openclaw command", "/nowhere/openclaw is not on PATH",
              "install OpenClaw (npm install -g openclaw) or set openclaw_command"),
        Check("warn", "openclaw sync", "because",
              "install OpenClaw, or ignore if you only use the Kimi CLI")]


def test_auto_target_follows_the_generation_openclaw_reports(settings: Settings, monkeypatch) -> None:
    memory = OpenClawMemory()
    auto = AutoTarget(settings, memory)
    assert auto.mode == "auto" and auto.active is True
    assert auto.describe() == (f"OpenClaw ({settings.openclaw_command[0]}; generation not asked "
                               "yet)")
    assert auto.current is auto.cli and auto.restart_after_sync is False
    monkeypatch.setenv("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.6.1 (fake)")
    monkeypatch.setenv("FAKE_OPENCLAW_STORE_PATH", "/x/auth-profiles.json")
    auto = AutoTarget(settings, memory)
    path = agent_file(settings, {"kimi-coding:default": OURS})
    view = auto.sync(TOKEN, NOW)
    assert (auto.mode, view.state, view.mode) == ("file", "in_sync", "file")
    assert auto.current is auto.file and auto.restart_after_sync is True
    assert auto.watched_files() == [path] and auto.problems == []
    assert auto.describe().startswith("OpenClaw 2026.6.1 (fake): OpenClaw auth-profiles.json (")
    assert auto.inspect(TOKEN, NOW).state == "in_sync"
    assert auto.restart_gateway() == (True, "OpenClaw gateway restarted.")
    checks = auto.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert checks[1] == Check("ok", "openclaw generation",
                              "OpenClaw 2026.6.1 (fake): credentials in auth-profiles.json, written "
                              "under OpenClaw's lock; the gateway restarts after each renewal")
    memory.generation = "cli"
    assert auto.watched_files() == [] and auto.mode == "cli"


def test_auto_doctor_says_when_openclaw_cannot_tell_its_generation(settings: Settings,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "version")
    checks = AutoTarget(settings, OpenClawMemory()).doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert [(c.level, c.name) for c in checks] == [("ok", "openclaw command"),
                                                   ("fail", "openclaw generation")]
    assert checks[1].fix == "run `openclaw doctor` and fix what it reports"
    assert checks[1].detail.startswith("openclaw --version failed: ")
    monkeypatch.delenv("FAKE_OPENCLAW_FAIL")
    auto = AutoTarget(settings, OpenClawMemory())
    checks = auto.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert checks[1] == Check("ok", "openclaw generation", "OpenClaw 2026.9.6 (fake): credentials in "
                              "SQLite, written with `openclaw models auth paste-token`")
    assert isinstance(auto.resolve(), CliTarget)


def test_broken_json_is_a_local_file_error_inside(settings: Settings) -> None:
    path = agent_file(settings, None)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises((OpenClawError, LocalFileError)) as broken:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert str(broken.value).endswith("It was left untouched.")
    assert path.read_bytes() == b"\xff\xfe"


def status_openclaw(settings: Settings, tmp_path: Path, report: dict) -> Settings:
    """The stand-in, except that `models status --json` prints `report`."""
    from tests.conftest import SUPPORT

    (tmp_path / "report.json").write_text(json.dumps(report))
    script = tmp_path / "bin" / "status-openclaw"
    script.write_text("#!/bin/sh\n"
                      f'[ "$1 $2" = "models status" ] && exec cat {tmp_path / "report.json"}\n'
                      f'exec {__import__("sys").executable} {SUPPORT / "fake_openclaw.py"} "$@"\n')
    script.chmod(0o755)
    return settings.with_overrides(openclaw_command=(str(script),))


def test_file_doctor_asks_openclaw_which_profile_it_uses_first(settings: Settings,
                                                               tmp_path: Path) -> None:
    report = {"auth": {"oauth": {"providers": [
        {"provider": "kimi-coding", "effectiveProfiles": [{"profileId": "kimi-coding:default"}]},
        {"provider": "kimi", "effectiveProfiles": [{"profileId": "kimi:old", "type": "token"}]}]}}}
    settings = status_openclaw(settings, tmp_path, report)
    agent_file(settings, {"kimi-coding:default": OURS})
    target = LegacyFileTarget(settings)
    target.sync(TOKEN, NOW)
    checks = target.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert Check("ok", "openclaw auth order", "kimi-coding:default is used first", "") in checks
    assert target._auth_order_problems("kimi:oauth") == [Problem(
        "OpenClaw uses kimi:old before kimi:oauth",
        "openclaw models auth order set --provider kimi kimi:oauth kimi:old",
        fatal=True, check="openclaw auth order")]


def test_auto_doctor_passes_on_the_last_hand_off_and_the_time(settings: Settings, tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_GATEWAY_RUNNING", "1")
    memory = OpenClawMemory()
    auto = AutoTarget(settings, memory)
    now = __import__("time").time()
    token = Token(TOKEN.access, now + 900)
    auto.sync(token, now)
    assert auto.inspect(token, now).checked_at == now
    last = OpenClawView(detail="in sync; no running gateway picked it up")
    checks = auto.doctor_checks(lambda: token, last, now + 5)
    assert checks[-1].level == "fail" and checks[-1].name == "openclaw gateway"
    assert memory.plugin_checked_at == now + 5
    missing = AutoTarget(settings.with_overrides(openclaw_command=(str(tmp_path / "none"),)),
                         OpenClawMemory())
    first = missing.doctor_checks(lambda: token, OpenClawView(), now)[0]
    assert (first.level, first.name) == ("warn", "openclaw command")


def test_doctor_lists_each_problem_after_the_profile_that_holds_our_token(settings: Settings,
                                                                          tmp_path: Path) -> None:
    path = agent_file(settings, {"kimi-coding:default": OURS,
                                 "kimi-coding:work": {"type": "oauth", "provider": "kimi-coding",
                                                      "access": "stale"}})
    target = LegacyFileTarget(settings.with_overrides(openclaw_command=(str(tmp_path / "none"),)))
    target.sync(TOKEN, NOW)
    checks = target.doctor_checks(lambda: TOKEN, OpenClawView(), NOW)
    assert checks[2:] == [
        Check("ok", "openclaw profile", "in_sync: kimi-coding:default holds the current token"),
        Check("fail", "openclaw profiles", f"{path}: Kimi profile kimi-coding:work (provider "
              "kimi-coding) holds an older token.", f'delete the "kimi-coding:work" entry from {path}')]


def test_the_file_target_waits_for_openclaws_lock_only_as_long_as_configured(
        settings: Settings) -> None:
    import os
    import time

    path = agent_file(settings, {"kimi-coding:default": OURS})
    lock = path.with_name(path.name + ".lock")
    lock.write_text(json.dumps({"pid": os.getpid()}))
    started = time.monotonic()
    with pytest.raises(OpenClawError, match=r"waited 0 s and wrote nothing"):
        LegacyFileTarget(settings, lock_wait=0).sync(TOKEN, NOW)
    assert time.monotonic() - started < 2
    assert profiles_of(path)["kimi-coding:default"]["access"] == "old"
