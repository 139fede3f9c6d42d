"""The Kimi credential file: validation, tombstones, rewrites that keep what we do not own."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from kimi_tray.core.config import load_settings
from kimi_tray.core.errors import LocalFileError
from kimi_tray.stores.credentials import (
    PYTHON_CLI,
    TYPESCRIPT_CLI,
    CredentialSource,
    choose_source,
    device_id,
)
from tests.conftest import write_credentials

TOKENS = {"access_token": "access-AAAAAAAAAAAA", "refresh_token": "refresh-RRRRRRRRRRRR"}


def source(home: Path, owner: str = PYTHON_CLI) -> CredentialSource:
    return CredentialSource(home / "credentials" / "kimi-code.json", home, owner)


def test_load_valid_file(tmp_path: Path) -> None:
    src = source(tmp_path)
    write_credentials(src.path, TOKENS, 1800000000.5)
    creds = src.load()
    assert creds.expires_at == 1800000000.5 and creds.can_refresh
    assert "refresh-" not in repr(creds) and "access-" not in repr(creds)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"access_token": "a", "expires_at": 1}, "no 'refresh_token'"),
        ({"access_token": "a", "refresh_token": "r"}, "no 'expires_at'"),
        ({"access_token": "a", "refresh_token": "r", "expires_at": "soon"}, "must be a number"),
        ({"access_token": 5, "refresh_token": "r", "expires_at": 1}, "must be a string"),
        ({"access_token": "a", "refresh_token": "r", "expires_at": True}, "must be a number"),
    ],
)
def test_mistyped_or_incomplete_files_are_clear_errors(tmp_path: Path, data: dict, message: str) -> None:
    src = source(tmp_path)
    src.path.parent.mkdir(parents=True)
    src.path.write_text(json.dumps(data))
    with pytest.raises(LocalFileError, match=message) as info:
        src.load()
    assert str(src.path) in str(info.value)


def test_tombstone_means_login_needed_not_corruption(tmp_path: Path) -> None:
    src = source(tmp_path, TYPESCRIPT_CLI)
    src.path.parent.mkdir(parents=True)
    src.path.write_text(json.dumps({"access_token": "", "refresh_token": "", "expires_at": 0,
                                    "scope": "", "token_type": "Bearer", "expires_in": 0}))
    creds = src.load()
    assert not creds.can_refresh


def test_wrong_permissions_are_fixed_with_a_warning(tmp_path: Path, caplog) -> None:
    src = source(tmp_path)
    write_credentials(src.path, TOKENS, 1.0)
    src.path.chmod(0o644)
    src.load()
    assert stat.S_IMODE(src.path.stat().st_mode) == 0o600
    assert "readable by other users" in caplog.text


def test_save_keeps_unknown_fields_and_order(tmp_path: Path) -> None:
    src = source(tmp_path)
    write_credentials(src.path, TOKENS, 1.0, user_note={"keep": [1, 2]}, zz_last="x")
    saved = src.save("new-access-XXXXXXXX", "new-refresh-YYYYYYYY", 1234.5, 900, "kimi-code", "Bearer")
    data = json.loads(src.path.read_text())
    assert data["user_note"] == {"keep": [1, 2]} and data["zz_last"] == "x"
    assert list(data)[-1] == "zz_last", "key order is kept"
    assert data["expires_at"] == 1234.5 and isinstance(data["expires_at"], float)
    assert saved.refresh_token == "new-refresh-YYYYYYYY"
    assert stat.S_IMODE(src.path.stat().st_mode) == 0o600


def test_kimi_code_owner_gets_integer_expiry_and_keeps_foreign_fields(tmp_path: Path) -> None:
    """The README says: foreign fields in the TypeScript CLI's file are kept by us."""
    src = source(tmp_path / "kc", TYPESCRIPT_CLI)
    src.save("a" * 20, "r" * 20, 1234.9, 900, "kimi-code", "Bearer")
    data = json.loads(src.path.read_text())
    assert data["expires_at"] == 1234 and isinstance(data["expires_at"], int)
    assert set(data) == {"access_token", "refresh_token", "expires_at", "scope", "token_type",
                         "expires_in"}
    src.path.write_text(json.dumps({**data, "foreign": {"x": 1}}, indent=2) + "\n")
    src.save("b" * 20, "s" * 20, 2000.0, 900, "kimi-code", "Bearer")
    assert json.loads(src.path.read_text())["foreign"] == {"x": 1}
    assert stat.S_IMODE(src.path.parent.stat().st_mode) == 0o700
    assert src.path.read_text().endswith("}\n")


def test_choose_source_prefers_live_refresh_token_with_latest_expiry(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    settings = load_settings(env)
    py = tmp_path / ".kimi" / "credentials" / "kimi-code.json"
    ts = tmp_path / ".kimi-code" / "credentials" / "kimi-code.json"
    assert choose_source(settings).path == py, "with no file, ~/.kimi is the default"
    write_credentials(py, TOKENS, 100.0)
    write_credentials(ts, TOKENS, 200.0)
    assert choose_source(settings).owner == TYPESCRIPT_CLI
    write_credentials(ts, {"access_token": "", "refresh_token": ""}, 0)
    assert choose_source(settings).owner == PYTHON_CLI, "a tombstone loses to a live token"
    override = load_settings({**env, "KIMI_SHARE_DIR": str(tmp_path / "elsewhere")})
    assert choose_source(override).path == ts


def test_device_id_created_once_private(tmp_path: Path) -> None:
    first = device_id(tmp_path / ".kimi")
    assert re.fullmatch("[0-9a-f]{32}", first), "32 lowercase hex digits, as the Kimi CLIs write it"
    assert device_id(tmp_path / ".kimi") == first
    assert stat.S_IMODE((tmp_path / ".kimi" / "device_id").stat().st_mode) == 0o600
