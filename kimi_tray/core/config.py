"""Settings: defaults that just work, an optional TOML file, then environment overrides."""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from kimi_tray.core.errors import ConfigError

APP_NAME = "kimi-tray"
DEFAULT_OAUTH_HOST = "https://auth.kimi.com"
KIMI_CLIENT_ID = "17e5f671-d194-4dfb-9706-5516cb48c098"
OPENCLAW_MODES = ("auto", "cli", "file", "off")
DEFAULT_USAGE_BASE_URL = "https://api.kimi.com/coding/v1"


@dataclass(frozen=True)
class Settings:
    oauth_host: str = DEFAULT_OAUTH_HOST
    client_id: str = KIMI_CLIENT_ID
    kimi_share_dir: Path = field(default_factory=lambda: Path.home() / ".kimi")
    kimi_code_home: Path = field(default_factory=lambda: Path.home() / ".kimi-code")
    credentials_file: Path | None = None
    kimi_lock_disabled: bool = False
    openclaw_mode: str = "auto"
    openclaw_state_dir: Path = field(default_factory=lambda: Path.home() / ".openclaw")
    openclaw_command: tuple[str, ...] = ("openclaw",)
    openclaw_agents: tuple[str, ...] = ("main",)
    openclaw_profile_id: str = "kimi:oauth"
    openclaw_legacy_profile_id: str = "kimi-coding:default"
    state_dir: Path = field(default_factory=lambda: Path(platformdirs.user_state_dir(APP_NAME)))
    log_dir: Path = field(default_factory=lambda: Path(platformdirs.user_log_dir(APP_NAME)))
    lock_timeout: float = 10.0
    renew_give_up_after: float = 45.0
    poll_interval: float = 30.0  # daemon: how often to stat the credential file
    tray_poll_interval: float = 60.0  # tray: the same, and the redraw, in one wake a minute
    http_timeout: float = 15.0  # one refresh request in all (connect, send, the whole answer)
    locked_http_timeout: float = 3.0  # how much of it is waited for under the Kimi lock
    config_file: Path | None = None
    usage_enabled: bool = True  # fetch and show the Kimi quota
    usage_base_url: str = DEFAULT_USAGE_BASE_URL  # GET {usage_base_url}/usages
    usage_interval: float = 300.0  # how often the tray fetches the quota
    usage_thresholds: tuple[float, ...] = (80.0, 95.0)  # notify at these % used; [] turns off
    usage_notify_exhausted: bool = True
    usage_notify_back: bool = False  # "quota is back" when an exhausted window resets

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def config_path() -> Path:
    override = os.environ.get("KIMI_TRAY_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


_PATH_KEYS = {"kimi_share_dir", "kimi_code_home", "credentials_file", "openclaw_state_dir",
              "state_dir", "log_dir"}
_FLOAT_KEYS = {"lock_timeout", "renew_give_up_after", "poll_interval", "tray_poll_interval",
               "http_timeout", "locked_http_timeout", "usage_interval"}
_PERCENT_LIST_KEYS = {"usage_thresholds"}
_LIST_KEYS = {"openclaw_command", "openclaw_agents"}
_STR_KEYS = {"oauth_host", "client_id", "openclaw_mode", "openclaw_profile_id",
             "openclaw_legacy_profile_id", "usage_base_url"}


def load_settings(env: dict[str, str] | None = None, read_config_file: bool = True) -> Settings:
    """Build Settings from the TOML file (if any) and the environment; errors name the culprit.

    read_config_file=False: the environment and the defaults only (a broken config file is then
    reported by the caller, which goes on without it)."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    path = Path(env["KIMI_TRAY_CONFIG"]).expanduser() if env.get("KIMI_TRAY_CONFIG") else config_path()
    if read_config_file and path.is_file():
        values.update(_read_toml(path))
        values["config_file"] = path
    elif read_config_file and (path.exists() or path.is_symlink()):
        kind = "a directory" if path.is_dir() else "not a regular file (a broken link?)"
        raise ConfigError(f"The config file {path} is {kind}; make it a TOML file or remove it.")

    home = Path(env.get("HOME") or Path.home())
    if env.get("KIMI_SHARE_DIR"):
        values["kimi_share_dir"] = Path(env["KIMI_SHARE_DIR"]).expanduser()
    if env.get("KIMI_CODE_HOME"):
        values["kimi_code_home"] = Path(env["KIMI_CODE_HOME"]).expanduser()
    host = env.get("KIMI_CODE_OAUTH_HOST") or env.get("KIMI_OAUTH_HOST")
    if host:
        values["oauth_host"] = host
    if env.get("OPENCLAW_STATE_DIR"):
        values["openclaw_state_dir"] = Path(env["OPENCLAW_STATE_DIR"]).expanduser()
    if env.get("KIMI_DISABLE_OAUTH_LOCK") == "1":
        values["kimi_lock_disabled"] = True
    if env.get("KIMI_TRAY_OPENCLAW"):
        values["openclaw_mode"] = env["KIMI_TRAY_OPENCLAW"]
    if env.get("KIMI_CODE_BASE_URL"):  # the Kimi CLI's own variable for the API base
        values["usage_base_url"] = env["KIMI_CODE_BASE_URL"]

    values.setdefault("kimi_share_dir", home / ".kimi")
    values.setdefault("kimi_code_home", home / ".kimi-code")
    values.setdefault("openclaw_state_dir", home / ".openclaw")
    settings = Settings(**values)
    validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):  # imported only when there is a file to read (1.5 MiB)
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Could not read the config file {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}.") from None
    known = {f.name for f in fields(Settings)} - {"config_file"}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"Unknown key {key!r} in {path}; known keys: {', '.join(sorted(known))}.")
        values[key] = _coerce(path, key, value)
    return values


def _coerce(path: Path, key: str, value: Any) -> Any:
    def bad(kind: str) -> ConfigError:
        return ConfigError(f"{key} in {path} must be {kind}.")

    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value:
            raise bad("a path string")
        return Path(value).expanduser()
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise bad("a positive number")
        return float(value)
    if key in _LIST_KEYS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if key in _PERCENT_LIST_KEYS:
        if not isinstance(value, list) or not all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= 100 for v in value):
            raise bad("a list of percentages between 0 and 100 (an empty list turns them off)")
        return tuple(float(v) for v in value)
    if key in _STR_KEYS:
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if not isinstance(value, bool):
        raise bad("true or false")
    return value


def validate(settings: Settings) -> None:
    if settings.openclaw_mode not in OPENCLAW_MODES:
        raise ConfigError(
            f"openclaw_mode must be one of {', '.join(OPENCLAW_MODES)}, not {settings.openclaw_mode!r}."
        )
    check_oauth_host(settings.oauth_host)
    # usage_base_url is checked where a request would carry the token (the usage client, the
    # probe): KIMI_CODE_BASE_URL is the Kimi CLI's variable, and a value meant for it must not
    # stop the renewals.


def is_loopback_host(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def check_oauth_host(host: str) -> None:
    """Tokens travel only over HTTPS; plain HTTP is allowed to loopback (local test servers)."""
    parts = urlsplit(host)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"The OAuth host {host!r} is not an http(s) URL.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"The OAuth host {host} uses plain http; only https is allowed (http only for loopback)."
        )


API_BASE_WHAT = "Kimi API base URL (usage_base_url, or KIMI_CODE_BASE_URL)"


def check_https_url(url: str, what: str) -> None:
    """The same rule for any URL that carries a token: HTTPS, or plain HTTP to loopback only."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"The {what} {url!r} is not an http(s) URL.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"The {what} {url} uses plain http; only https is allowed (http only for loopback).")
