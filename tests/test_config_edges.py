"""Settings: every way in (defaults, the TOML file, the environment) and every refusal, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimi_tray.core.config import (
    DEFAULT_OAUTH_HOST,
    DEFAULT_USAGE_BASE_URL,
    Settings,
    check_https_url,
    check_oauth_host,
    config_path,
    is_loopback_host,
    load_settings,
)
from kimi_tray.core.errors import ConfigError


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "KIMI_TRAY_CONFIG": str(tmp_path / "none.toml"), **extra}


def with_toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return base_env(tmp_path, KIMI_TRAY_CONFIG=str(path))


def test_defaults_follow_home(tmp_path: Path) -> None:
    settings = load_settings(base_env(tmp_path))
    home = tmp_path / "home"
    assert (settings.kimi_share_dir, settings.kimi_code_home, settings.openclaw_state_dir) == (
        home / ".kimi", home / ".kimi-code", home / ".openclaw")
    assert settings.oauth_host == DEFAULT_OAUTH_HOST and settings.usage_base_url == DEFAULT_USAGE_BASE_URL
    assert settings.config_file is None and not settings.kimi_lock_disabled
    assert settings.openclaw_mode == "auto" and settings.credentials_file is None


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load_settings(base_env(
        tmp_path, KIMI_SHARE_DIR="~/share", KIMI_CODE_HOME=str(tmp_path / "kc"), OPENCLAW_STATE_DIR="/oc",
        KIMI_CODE_OAUTH_HOST="http://127.0.0.1:5", KIMI_OAUTH_HOST="http://127.0.0.1:6",
        KIMI_DISABLE_OAUTH_LOCK="1", KIMI_TRAY_OPENCLAW="off", KIMI_CODE_BASE_URL="http://x.example/v1"))
    assert settings.kimi_share_dir == Path("~/share").expanduser()
    assert settings.kimi_code_home == tmp_path / "kc" and settings.openclaw_state_dir == Path("/oc")
    assert settings.oauth_host == "http://127.0.0.1:5", "KIMI_CODE_OAUTH_HOST wins"
    assert settings.kimi_lock_disabled and settings.openclaw_mode == "off"
    assert settings.usage_base_url == "http://x.example/v1", "checked where a token is sent, not here"
    assert load_settings(base_env(tmp_path, KIMI_OAUTH_HOST="http://127.0.0.1:6")).oauth_host == \
        "http://127.0.0.1:6"
    for value in ("0", "true", "yes", ""):
        assert not load_settings(base_env(tmp_path, KIMI_DISABLE_OAUTH_LOCK=value)).kimi_lock_disabled
    empty = load_settings(base_env(tmp_path, KIMI_SHARE_DIR="", KIMI_TRAY_OPENCLAW="",
                                   KIMI_CODE_OAUTH_HOST=""))
    assert empty.kimi_share_dir == tmp_path / "home" / ".kimi" and empty.openclaw_mode == "auto"
    assert empty.oauth_host == DEFAULT_OAUTH_HOST


def test_every_kind_of_key_from_the_file(tmp_path: Path) -> None:
    env = with_toml(tmp_path, """
        state_dir = "~/state"
        lock_timeout = 3
        http_timeout = 2.5
        openclaw_command = "oc"
        openclaw_agents = ["main", "work"]
        usage_thresholds = [50, 99.5, 100]
        oauth_host = "https://auth.example.com"
        usage_enabled = false
        openclaw_mode = "file"
    """)
    settings = load_settings(env)
    assert settings.config_file == tmp_path / "config.toml"
    assert settings.state_dir == Path("~/state").expanduser()
    assert settings.lock_timeout == 3.0 and isinstance(settings.lock_timeout, float)
    assert settings.http_timeout == 2.5
    assert settings.openclaw_command == ("oc",) and settings.openclaw_agents == ("main", "work")
    assert settings.usage_thresholds == (50.0, 99.5, 100.0)
    assert settings.oauth_host == "https://auth.example.com" and settings.usage_enabled is False
    assert settings.openclaw_mode == "file"
    assert load_settings(with_toml(tmp_path, "usage_thresholds = []")).usage_thresholds == ()


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    env = with_toml(tmp_path, 'openclaw_mode = "file"\nkimi_share_dir = "/from/file"')
    settings = load_settings({**env, "KIMI_TRAY_OPENCLAW": "cli", "KIMI_SHARE_DIR": "/from/env"})
    assert settings.openclaw_mode == "cli" and settings.kimi_share_dir == Path("/from/env")


def test_the_file_can_be_skipped(tmp_path: Path) -> None:
    env = with_toml(tmp_path, "this is not toml")
    settings = load_settings(env, read_config_file=False)
    assert settings.config_file is None


@pytest.mark.parametrize(("text", "message"), [
    ("lock_timeout = 0", "lock_timeout in .* must be a positive number."),
    ("lock_timeout = -1", "must be a positive number"),
    ("lock_timeout = true", "must be a positive number"),
    ('lock_timeout = "3"', "must be a positive number"),
    ('state_dir = ""', "state_dir in .* must be a path string."),
    ("state_dir = 5", "must be a path string"),
    ("openclaw_agents = []", "openclaw_agents in .* must be a list of strings."),
    ("openclaw_agents = [1]", "must be a list of strings"),
    ("openclaw_agents = 5", "must be a list of strings"),
    ("usage_thresholds = [0]", "must be a list of percentages between 0 and 100"),
    ("usage_thresholds = [100.5]", "must be a list of percentages"),
    ("usage_thresholds = [true]", "must be a list of percentages"),
    ("usage_thresholds = 80", "must be a list of percentages"),
    ('oauth_host = ""', "oauth_host in .* must be a non-empty string."),
    ("client_id = 5", "must be a non-empty string"),
    ('usage_enabled = "yes"', "usage_enabled in .* must be true or false."),
    ("usage_enabled = 1", "must be true or false"),
    ("nonsense = 1", "Unknown key 'nonsense' in .*; known keys: client_id, credentials_file, "),
    ('config_file = "/x"', "Unknown key 'config_file'"),
    ("a = [", "is not valid TOML"),
    ('openclaw_mode = "sometimes"', "openclaw_mode must be one of auto, cli, file, off, not 'sometimes'."),
    ('oauth_host = "http://auth.kimi.com"', "uses plain http; only https is allowed"),
])
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(with_toml(tmp_path, text))
    if "must be" in message and "openclaw_mode" not in message:
        assert str(tmp_path / "config.toml") in str(info.value)


def test_a_config_path_that_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="is a directory; make it a TOML file or remove it."):
        load_settings(base_env(tmp_path, KIMI_TRAY_CONFIG=str(tmp_path / "dir.toml")))
    (tmp_path / "broken.toml").symlink_to(tmp_path / "missing-target")
    with pytest.raises(ConfigError, match=r"is not a regular file \(a broken link\?\)"):
        load_settings(base_env(tmp_path, KIMI_TRAY_CONFIG=str(tmp_path / "broken.toml")))
    assert load_settings(base_env(tmp_path, KIMI_TRAY_CONFIG=str(tmp_path / "dir.toml")),
                         read_config_file=False).config_file is None


def test_an_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe = 1")
    with pytest.raises(ConfigError, match="Could not read the config file"):
        load_settings(base_env(tmp_path, KIMI_TRAY_CONFIG=str(path)))


def test_config_path_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KIMI_TRAY_CONFIG", "~/my.toml")
    assert config_path() == Path("~/my.toml").expanduser()
    monkeypatch.setenv("KIMI_TRAY_CONFIG", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "kimi-tray" / "config.toml"


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("localhost.example.com", False), ("10.0.0.1", False), ("auth.kimi.com", False), ("", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(("url", "ok"), [
    ("https://auth.kimi.com", True), ("http://127.0.0.1:9", True), ("http://localhost", True),
    ("http://[::1]:5", True), ("http://auth.kimi.com", False), ("ftp://127.0.0.1", False),
    ("https://", False), ("auth.kimi.com", False),
])
def test_urls_that_may_carry_a_token(url: str, ok: bool) -> None:
    for check in (check_oauth_host, lambda u: check_https_url(u, "API base")):
        if ok:
            check(url)
        else:
            with pytest.raises(ConfigError):
                check(url)


def test_url_refusals_say_what_and_why() -> None:
    with pytest.raises(ConfigError) as info:
        check_https_url("http://x.example", "usage URL")
    assert str(info.value) == ("The usage URL http://x.example uses plain http; only https is allowed "
                               "(http only for loopback).")
    with pytest.raises(ConfigError) as info:
        check_https_url("ftp://x", "usage URL")
    assert str(info.value) == "The usage URL 'ftp://x' is not an http(s) URL."
    with pytest.raises(ConfigError) as info:
        check_oauth_host("ftp://x")
    assert str(info.value) == "The OAuth host 'ftp://x' is not an http(s) URL."


def test_with_overrides_returns_a_changed_copy() -> None:
    base = Settings()
    changed = base.with_overrides(lock_timeout=1.0)
    assert changed.lock_timeout == 1.0 and base.lock_timeout == 10.0 and changed is not base


def test_fractions_below_one_are_positive_numbers(tmp_path: Path) -> None:
    settings = load_settings(with_toml(tmp_path, "locked_http_timeout = 0.5\nusage_thresholds = [0.5]"))
    assert settings.locked_http_timeout == 0.5 and settings.usage_thresholds == (0.5,)
