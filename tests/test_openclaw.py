"""OpenClaw sync backends: the JSON file kept byte-for-byte, the generation OpenClaw reports, the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw import (
    PLUGIN_FIX,
    AutoTarget,
    CliTarget,
    LegacyFileTarget,
    OffTarget,
    Token,
    choose_target,
    legacy_profiles_path,
)
from kimi_tray.stores.state import OpenClawMemory, StateStore
from tests.conftest import calls

NOW = 1_800_000_000.0
TOKEN = Token("access-new-0123456789abcdef", NOW + 900)

LEGACY = {
    "version": 1,
    "profiles": {
        "anthropic:default": {"type": "oauth", "provider": "anthropic", "access": "a", "refresh": "r",
                              "expires": 1795000000000, "email": "ü@example.com"},
        "kimi-coding:default": {"type": "oauth", "provider": "kimi-coding", "access": "old-access",
                                "refresh": "old-refresh", "expires": 1, "accountId": "keep-me"},
    },
    "lastGood": {"kimi-coding": "kimi-coding:default"},
    "usageStats": {"kimi-coding:default": {"lastUsed": 1795000000000.5}},
}


def legacy_file(settings: Settings, agent: str = "main", data: dict | None = None) -> Path:
    path = legacy_profiles_path(settings.openclaw_state_dir, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data or LEGACY, indent=2, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def fake_log(env, monkeypatch) -> dict[str, str]:
    """The targets run the fake openclaw with our environment: let it record its calls."""
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    return env


def test_legacy_sync_changes_only_our_token_fields_and_drops_the_refresh_token(settings) -> None:
    path = legacy_file(settings)
    view = LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert view.state == "in_sync"
    expected = json.loads(json.dumps(LEGACY))
    ours = expected["profiles"]["kimi-coding:default"]
    ours.update(access=TOKEN.access, expires=int(TOKEN.expires_at * 1000))
    del ours["refresh"]  # OpenClaw never tries to refresh a profile without one
    expected_bytes = (json.dumps(expected, indent=2, ensure_ascii=False) + "\n").encode()
    assert path.read_bytes() == expected_bytes, "every other byte is kept"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not path.with_name("auth-profiles.json.lock").exists(), "OpenClaw's lock is released"


@pytest.mark.parametrize("content", [b"{broken", b"[]", b'{"profiles": []}', b""])
def test_malformed_legacy_file_is_never_overwritten(settings: Settings, content: bytes) -> None:
    path = legacy_file(settings)
    path.write_bytes(content)
    with pytest.raises(OpenClawError, match="auth-profiles.json") as info:
        LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert path.read_bytes() == content
    assert TOKEN.access not in str(info.value)


def test_legacy_profile_created_when_missing_and_other_agents_found(settings: Settings) -> None:
    main = legacy_file(settings, data={"version": 1, "profiles": {}})
    other = legacy_file(settings, agent="coder")
    unrelated = legacy_file(settings, agent="bare", data={"version": 1, "profiles": {"x:y": {}}})
    before_unrelated = unrelated.read_bytes()
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    created = json.loads(main.read_text())["profiles"]["kimi-coding:default"]
    assert created == {"type": "oauth", "provider": "kimi-coding", "access": TOKEN.access,
                       "expires": int(TOKEN.expires_at * 1000)}
    assert json.loads(other.read_text())["profiles"]["kimi-coding:default"]["access"] == TOKEN.access
    assert unrelated.read_bytes() == before_unrelated


def test_a_kimi_oauth_token_profile_in_the_json_file_is_kept_current_too(settings) -> None:
    """OpenClaw 2026.6.x's own paste-token writes `kimi:oauth` into the JSON file: never abandoned."""
    data = json.loads(json.dumps(LEGACY))
    data["profiles"]["kimi:oauth"] = {"type": "token", "provider": "kimi", "token": "old-access",
                                      "expires": 5}
    path = legacy_file(settings, data=data)
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    profiles = json.loads(path.read_text())["profiles"]
    assert profiles["kimi:oauth"] == {"type": "token", "provider": "kimi", "token": TOKEN.access,
                                      "expires": int(TOKEN.expires_at * 1000)}
    assert profiles["kimi-coding:default"]["access"] == TOKEN.access


def test_models_json_copy_of_our_token_is_replaced_and_a_users_key_is_not(settings) -> None:
    path = legacy_file(settings)
    models = path.with_name("models.json")
    models.write_text(json.dumps({"providers": {
        "kimi-code": {"baseUrl": "https://api.kimi.com/coding/", "apiKey": "old-access", "models": []},
        "kimi": {"apiKey": "sk-users-own-key"},
        "openai": {"apiKey": "old-access"},
    }}, indent=2) + "\n")
    LegacyFileTarget(settings).sync(TOKEN, NOW)
    providers = json.loads(models.read_text())["providers"]
    assert providers["kimi-code"]["apiKey"] == TOKEN.access
    assert providers["kimi-code"]["baseUrl"] == "https://api.kimi.com/coding/"
    assert providers["kimi"]["apiKey"] == "sk-users-own-key"
    assert providers["openai"]["apiKey"] == "old-access", "only Kimi providers"
    assert oct(models.stat().st_mode & 0o777) == "0o600"


def test_json_file_doctor_problems_name_each_stale_kimi_profile_and_its_fix(settings) -> None:
    data = json.loads(json.dumps(LEGACY))
    data["profiles"]["kimi-coding:work"] = {"type": "oauth", "provider": "kimi-coding",
                                            "access": "stale", "expires": 1}
    data["profiles"]["kimi:default"] = {"type": "api_key", "provider": "kimi", "key": "sk-own"}
    path = legacy_file(settings, data=data)
    target = LegacyFileTarget(settings)
    view = target.sync(TOKEN, NOW)
    assert view.state == "error" and "kimi-coding:work" in view.detail
    assert view.token_fp, "our token was delivered: nothing to retry"
    assert [(p.text.split(": ", 1)[1], p.fix) for p in target.problems] == [
        ("Kimi profile kimi-coding:work (provider kimi-coding) holds an older token.",
         f'delete the "kimi-coding:work" entry from {path}')]


def test_auto_mode_asks_openclaw_not_the_files_lying_around(settings, tmp_path, fake_log,
                                                            monkeypatch) -> None:
    """OpenClaw 2026.6.1 makes state/openclaw.sqlite on any write (a gateway restart too) while
    its credentials stay in auth-profiles.json: what counts is the store OpenClaw reports."""
    no_cli = settings.with_overrides(openclaw_command=(str(tmp_path / "no-such-openclaw"),))
    assert isinstance(choose_target(no_cli), OffTarget)
    path = legacy_file(settings)
    assert isinstance(choose_target(no_cli), LegacyFileTarget), "no CLI: the file we can see"
    sqlite = settings.openclaw_state_dir / "state" / "openclaw.sqlite"
    sqlite.parent.mkdir(parents=True)
    sqlite.write_bytes(b"SQLite format 3\x00")
    monkeypatch.setenv("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.6.1 (2e08f0f)")
    monkeypatch.setenv("FAKE_OPENCLAW_STORE_PATH", str(path))
    memory = OpenClawMemory()
    for _ in range(2):
        target = choose_target(settings, memory)
        assert isinstance(target, AutoTarget)
        view = target.sync(TOKEN, NOW)
        assert view.state == "in_sync" and target.mode == "file" and target.restart_after_sync
    argv = [c["argv"] for c in calls(fake_log)]
    assert not any("paste-token" in a for a in argv), "no second (kimi:oauth) profile"
    assert argv.count(["models", "status", "--json"]) == 1, "the answer is cached with the version"
    assert memory.version == "OpenClaw 2026.6.1 (2e08f0f)" and memory.store_path == str(path)
    monkeypatch.setenv("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.9.6 (eb377ac)")
    monkeypatch.delenv("FAKE_OPENCLAW_STORE_PATH")
    target = choose_target(settings, memory)
    now = time.time()
    assert target.sync(Token(TOKEN.access, now + 900), now).state == "in_sync"
    assert target.mode == "cli" and not target.restart_after_sync
    for mode, kind in (("off", OffTarget), ("file", LegacyFileTarget), ("cli", CliTarget)):
        assert isinstance(choose_target(settings.with_overrides(openclaw_mode=mode)), kind)


def test_cli_target_uses_stdin_and_a_conservative_expiry(settings: Settings, fake_log) -> None:
    now = time.time()
    token = Token(TOKEN.access, now + 900)
    view = CliTarget(settings).sync(token, now)
    assert view.state == "in_sync"
    paste = next(c for c in calls(fake_log) if "paste-token" in c["argv"])
    assert TOKEN.access not in json.dumps(paste["argv"])
    seconds = int(paste["argv"][paste["argv"].index("--expires-in") + 1].rstrip("s"))
    assert seconds <= 900 - 10
    assert paste["argv"][paste["argv"].index("--profile-id") + 1] == "kimi:oauth"
    rotated = Token("another-access-token-zzzzzz", now + 900)
    assert CliTarget(settings).inspect(rotated, now).state == "stale"


def test_cli_target_refuses_a_token_about_to_expire(settings: Settings, fake_log) -> None:
    with pytest.raises(OpenClawError, match="about to expire"):
        CliTarget(settings).sync(Token("a" * 20, NOW + 5), NOW)


def test_missing_kimi_plugin_is_an_error_with_its_fix_asked_once(settings, fake_log,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    memory = OpenClawMemory()
    now = time.time()
    target = CliTarget(settings, memory)
    view = target.sync(Token(TOKEN.access, now + 900), now)
    assert view.state == "error" and "Kimi provider plugin is not installed" in view.detail
    assert view.token_fp, "the token is in OpenClaw; only the plugin is missing"
    assert [p.fix for p in target.problems] == [PLUGIN_FIX]
    paste = next(c for c in calls(fake_log) if "paste-token" in c["argv"])
    seconds = int(paste["argv"][paste["argv"].index("--expires-in") + 1].rstrip("s"))
    assert seconds <= 900 - 120, "a paste without the plugin is slow: the first margin allows it"
    CliTarget(settings, memory).sync(Token(TOKEN.access, now + 900), now + 60)
    argv = [c["argv"] for c in calls(fake_log)]
    assert argv.count(["plugins", "list", "--json"]) == 1, "cached, not asked before every paste"


def test_learnt_paste_time_survives_in_the_state_file(settings, fake_log, monkeypatch) -> None:
    """So a cold `kimi-tray renew` (a new process) pastes once, with the margin it needs."""
    monkeypatch.setenv("FAKE_OPENCLAW_PASTE_DELAY", "0.6")
    store = StateStore(settings.state_dir)
    state = store.load()
    now = time.time()
    CliTarget(settings, state.openclaw_memory).sync(Token(TOKEN.access, now + 900), now)
    store.save(state)
    learnt = store.load().openclaw_memory.call_seconds
    assert learnt is not None and 0.6 <= learnt < 5
    CliTarget(settings, store.load().openclaw_memory).sync(Token(TOKEN.access, now + 900), now)
    pastes = [c["argv"] for c in calls(fake_log) if "paste-token" in c["argv"]]
    assert len(pastes) == 2, "one paste per sync"
    first, second = (int(a[a.index("--expires-in") + 1].rstrip("s")) for a in pastes)
    assert first <= 900 - 20 < 900 - 10 <= second, "the second run starts from the learnt time"


@pytest.mark.parametrize(
    ("mask", "token", "expected"),
    [("abcdefgh...789TOKEN", "abcdefghijklmnop789TOKEN", True),
     ("abcdefgh...789TOKEN", "abcdefghijklmnop789TOKEX", False),
     ("abc...xyz", "abcxyz", False),
     ("no-dots-here", "no-dots-here", False)],
)
def test_mask_matching(mask: str, token: str, expected: bool) -> None:
    from kimi_tray.stores.openclaw import mask_matches

    assert mask_matches(mask, token) is expected


def test_a_broken_openclaw_cli_does_not_stop_the_json_file(settings, fake_log, monkeypatch) -> None:
    """Once OpenClaw said it keeps credentials in the JSON file, a CLI that stops starting (a Node
    upgrade, say) does not stop kimi-tray from keeping that file current."""
    path = legacy_file(settings)
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "version")
    with pytest.raises(OpenClawError, match="openclaw --version failed"):
        choose_target(settings, OpenClawMemory()).sync(TOKEN, NOW)
    memory = OpenClawMemory(version="OpenClaw 2026.6.1 (2e08f0f)", generation="file",
                            store_path=str(path))
    assert choose_target(settings, memory).sync(TOKEN, NOW).state == "in_sync"
    assert json.loads(path.read_text())["profiles"]["kimi-coding:default"]["access"] == TOKEN.access


def test_auth_order_from_openclaws_report() -> None:
    from kimi_tray.stores.openclaw.cli_target import auth_order_problems

    def report(*profiles: tuple[str, str]) -> dict:
        effective = [{"profileId": pid, "type": kind} for pid, kind in profiles]
        return {"auth": {"oauth": {"providers": [{"provider": "kimi", "effectiveProfiles": effective}]}}}

    ok = auth_order_problems(report(("kimi:oauth", "token")), "kimi", "kimi:oauth")
    assert [(p.text, p.fix) for p in ok] == [("kimi:oauth is used first", "")]
    users_key = auth_order_problems(report(("kimi:default", "api_key"), ("kimi:oauth", "token")),
                                    "kimi", "kimi:oauth")
    assert [(p.text, p.fix, p.fatal) for p in users_key] == [(
        "OpenClaw uses kimi:default before kimi:oauth",
        "openclaw models auth order set --provider kimi kimi:oauth kimi:default", False)]
    other_token = auth_order_problems(report(("kimi:old", "token"), ("kimi:oauth", "token")),
                                      "kimi", "kimi:oauth")
    assert other_token[0].fatal, "another token first: OpenClaw would not use ours"
    assert auth_order_problems({}, "kimi", "kimi:oauth") == []


def test_an_agent_file_with_only_a_kimi_oauth_profile_is_in_sync_without_a_second_one(settings):
    path = legacy_file(settings, data={"version": 1, "profiles": {"kimi:oauth": {
        "type": "token", "provider": "kimi", "token": "old", "expires": 1}}})
    assert LegacyFileTarget(settings).sync(TOKEN, NOW).state == "in_sync"
    assert list(json.loads(path.read_text())["profiles"]) == ["kimi:oauth"]


def test_cli_sync_never_pastes_over_a_users_own_api_key_profile(settings, fake_log) -> None:
    """OpenClaw 2026.9.6 lists a user's `paste-api-key --provider kimi-coding` key as profile
    kimi-coding:default, type api_key, among `auth.oauth.profiles`: that id is not ours then."""
    store = settings.openclaw_state_dir / "fake-store.json"
    store.parent.mkdir(parents=True)
    users_key = {"label": "sk-user-...34567890", "provider": "kimi-coding", "type": "api_key"}
    store.write_text(json.dumps({"kimi-coding:default": users_key}))
    now = time.time()
    view = CliTarget(settings).sync(Token(TOKEN.access, now + 900), now)
    assert view.state == "in_sync", view.detail
    pasted = [c["argv"][c["argv"].index("--profile-id") + 1] for c in calls(fake_log)
              if "paste-token" in c["argv"]]
    assert pasted == ["kimi:oauth"]
    assert json.loads(store.read_text())["kimi-coding:default"] == users_key


def test_every_paste_of_a_sync_promises_openclaw_no_more_than_the_token_lives(
        settings, fake_log, monkeypatch) -> None:
    """The second paste of a sync (a carried-over kimi-coding profile, another agent) starts
    seconds after the first: its expiry must count them."""
    import kimi_tray.stores.openclaw.cli_target as cli_target

    monkeypatch.setattr(cli_target, "CLI_MIN_MARGIN", 0.0)
    monkeypatch.setenv("FAKE_OPENCLAW_PASTE_DELAY", "1.0")
    settings = settings.with_overrides(openclaw_agents=("main", "a", "b"))
    store = settings.openclaw_state_dir / "fake-store.json"
    store.parent.mkdir(parents=True)
    store.write_text(json.dumps({"kimi-coding:default": {
        "label": "old-acce...7654321", "provider": "kimi-coding", "type": "token", "expiresAt": 1}}))
    now = time.time()
    token = Token(TOKEN.access, now + 900)
    CliTarget(settings, OpenClawMemory(call_seconds=1.1)).sync(token, now)
    expiries = {pid: p["expiresAt"] for pid, p in json.loads(store.read_text()).items()}
    assert set(expiries) == {"kimi:oauth", "kimi-coding:default"}
    assert max(expiries.values()) <= token.expires_at * 1000, expiries


def test_json_file_with_a_users_own_kimi_coding_api_key_gets_our_token_beside_it(settings) -> None:
    """A user's API key under kimi-coding:default is theirs: our token goes into kimi:oauth
    (a token profile, as OpenClaw's paste-token writes it) and the key stays as it was."""
    users_key = {"type": "api_key", "provider": "kimi-coding", "key": "sk-users-own-key"}
    path = legacy_file(settings, data={"version": 1, "profiles": {"kimi-coding:default": users_key}})
    target = LegacyFileTarget(settings)
    view = target.sync(TOKEN, NOW)
    assert view.state == "in_sync", view.detail
    profiles = json.loads(path.read_text())["profiles"]
    assert profiles["kimi-coding:default"] == users_key
    assert profiles["kimi:oauth"] == {"type": "token", "provider": "kimi", "token": TOKEN.access,
                                      "expires": int(TOKEN.expires_at * 1000)}
    assert target.sync(TOKEN, NOW).state == "in_sync" and len(json.loads(path.read_text())["profiles"]) == 2
    both = {"kimi-coding:default": users_key, "kimi:oauth": dict(users_key, provider="kimi")}
    before = legacy_file(settings, data={"version": 1, "profiles": both}).read_bytes()
    with pytest.raises(OpenClawError, match="not kimi-tray's"):
        target.sync(TOKEN, NOW)
    assert path.read_bytes() == before


def test_a_symlinked_agent_file_stays_a_link_and_its_target_gets_the_token(settings, tmp_path) -> None:
    """OpenClaw 2026.6.x saves a symlinked auth-profiles.json through the link (json-file.ts
    resolveJsonSaveTarget): a user's link (a shared or dotfiles copy) must stay a link."""
    path = legacy_file(settings)
    shared = tmp_path / "shared" / "auth-profiles.json"
    shared.parent.mkdir()
    path.rename(shared)
    path.symlink_to(Path("..") / ".." / ".." / ".." / ".." / "shared" / "auth-profiles.json")
    assert path.resolve() == shared.resolve()
    assert LegacyFileTarget(settings).sync(TOKEN, NOW).state == "in_sync"
    assert path.is_symlink()
    assert json.loads(shared.read_text())["profiles"]["kimi-coding:default"]["access"] == TOKEN.access


def test_a_failing_openclaw_json_command_reports_openclaws_own_reason(settings, fake_log,
                                                                      monkeypatch) -> None:
    """OpenClaw 2026.9.6 over a 2026.6.x state dir: its reason, not the last line of its JSON."""
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "migration")
    with pytest.raises(OpenClawError) as failed:
        CliTarget(settings).inspect(TOKEN, NOW)
    assert str(failed.value) == (
        "openclaw models status failed: Auth profile store ~/.openclaw/agents/main/agent/"
        "openclaw-agent.sqlite requires legacy credential migration; affected providers: "
        "kimi-coding; run openclaw doctor --fix.")
