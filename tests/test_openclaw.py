"""OpenClaw sync backends: the legacy file kept byte-for-byte, the choice of generation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kimi_tray.config import Settings
from kimi_tray.errors import OpenClawError
from kimi_tray.openclaw import (
    CliTarget,
    LegacyFileTarget,
    OffTarget,
    Token,
    choose_target,
    legacy_profiles_path,
)
from tests.conftest import calls

NOW = 1_800_000_000.0
TOKEN = Token("access-new-0123456789abcdef", "refresh-new-0123456789abcdef", NOW + 900)

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


def test_legacy_sync_changes_only_our_token_fields(settings: Settings) -> None:
    path = legacy_file(settings)
    view = LegacyFileTarget(settings).sync(TOKEN, NOW)
    assert view.state == "in_sync"
    expected = json.loads(json.dumps(LEGACY))
    expected["profiles"]["kimi-coding:default"].update(
        access=TOKEN.access, refresh=TOKEN.refresh, expires=int(TOKEN.expires_at * 1000))
    expected_bytes = (json.dumps(expected, indent=2, ensure_ascii=False) + "\n").encode()
    assert path.read_bytes() == expected_bytes, "every other byte is kept"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


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
                       "refresh": TOKEN.refresh, "expires": int(TOKEN.expires_at * 1000)}
    assert json.loads(other.read_text())["profiles"]["kimi-coding:default"]["access"] == TOKEN.access
    assert unrelated.read_bytes() == before_unrelated


def test_auto_mode_picks_the_generation(settings: Settings, tmp_path: Path) -> None:
    no_cli = settings.with_overrides(openclaw_command=(str(tmp_path / "no-such-openclaw"),))
    assert isinstance(choose_target(no_cli), OffTarget)
    assert isinstance(choose_target(settings), CliTarget), "openclaw on PATH, no legacy file"
    legacy_file(settings)
    assert isinstance(choose_target(no_cli), LegacyFileTarget)
    assert isinstance(choose_target(settings), LegacyFileTarget)
    sqlite = settings.openclaw_state_dir / "state" / "openclaw.sqlite"
    sqlite.parent.mkdir(parents=True)
    sqlite.write_bytes(b"SQLite format 3\x00")
    assert isinstance(choose_target(no_cli), CliTarget), "the SQLite store wins"
    for mode, kind in (("off", OffTarget), ("file", LegacyFileTarget), ("cli", CliTarget)):
        assert isinstance(choose_target(settings.with_overrides(openclaw_mode=mode)), kind)


def test_cli_target_uses_stdin_and_a_conservative_expiry(settings: Settings, env, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    import time

    now = time.time()
    token = Token(TOKEN.access, TOKEN.refresh, now + 900)
    view = CliTarget(settings).sync(token, now)
    assert view.state == "in_sync"
    paste = next(c for c in calls(env) if "paste-token" in c["argv"])
    assert TOKEN.access not in json.dumps(paste["argv"]) and TOKEN.refresh not in json.dumps(paste)
    seconds = int(paste["argv"][paste["argv"].index("--expires-in") + 1].rstrip("s"))
    assert seconds <= 900 - 10
    assert paste["argv"][paste["argv"].index("--profile-id") + 1] == "kimi:oauth"
    rotated = Token("another-access-token-zzzzzz", TOKEN.refresh, now + 900)
    assert CliTarget(settings).inspect(rotated, now).state == "stale"


def test_cli_target_refuses_a_token_about_to_expire(settings: Settings) -> None:
    with pytest.raises(OpenClawError, match="about to expire"):
        CliTarget(settings).sync(Token("a" * 20, "r" * 20, NOW + 5), NOW)


@pytest.mark.parametrize(
    ("mask", "token", "expected"),
    [("abcdefgh...789TOKEN", "abcdefghijklmnop789TOKEN", True),
     ("abcdefgh...789TOKEN", "abcdefghijklmnop789TOKEX", False),
     ("abc...xyz", "abcxyz", False),
     ("no-dots-here", "no-dots-here", False)],
)
def test_mask_matching(mask: str, token: str, expected: bool) -> None:
    from kimi_tray.openclaw import mask_matches

    assert mask_matches(mask, token) is expected
