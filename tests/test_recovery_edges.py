"""The recovery file of a token the credential file has not taken yet: its exact content, what
reads back, what is refused, and when a new token may replace what the credential file holds."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import asdict
from pathlib import Path

import pytest

from kimi_tray.engine.recovery import (
    RECOVERY_FILE,
    Unsaved,
    file_takes,
    read_recovery,
    remove_recovery,
    write_recovery,
)
from kimi_tray.stores.credentials import Credentials
from kimi_tray.stores.state import fingerprint

NOW = 1_800_000_000.0
UNSAVED = Unsaved("at-secret", "rt-secret", NOW + 900.5, 900.0, "kimi-code", "Bearer",
                  fingerprint("rt-old"), "disk full")


def test_the_file_name_is_fixed() -> None:
    assert RECOVERY_FILE == "unsaved-token.json"


def test_repr_never_shows_a_token() -> None:
    text = repr(UNSAVED)
    assert text == f"Unsaved(expires_at={NOW + 900.5!r}, reason='disk full')"
    assert "secret" not in text and "secret" not in str(UNSAVED)


def test_the_file_is_indented_json_with_a_final_newline_and_every_field(tmp_path: Path, caplog) -> None:
    path = tmp_path / "state" / RECOVERY_FILE
    caplog.set_level(logging.ERROR)
    assert write_recovery(path, UNSAVED) is True
    raw = path.read_bytes()
    assert raw == (json.dumps(asdict(UNSAVED), indent=2) + "\n").encode()
    assert json.loads(raw) == {"access_token": "at-secret", "refresh_token": "rt-secret",
                               "expires_at": NOW + 900.5, "expires_in": 900.0, "scope": "kimi-code",
                               "token_type": "Bearer", "replaces": fingerprint("rt-old"),
                               "reason": "disk full"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [r.getMessage() for r in caplog.records] == ["The new Kimi token is not saved yet: disk full"]
    assert "secret" not in caplog.text


def test_an_existing_state_directory_others_could_enter_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    write_recovery(directory / RECOVERY_FILE, UNSAVED)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_non_finite_time_is_refused_not_written() -> None:
    with pytest.raises(ValueError):
        Unsaved("a", "r", float("inf"), 900, "s", "Bearer", "fp", "x").to_json()


def test_write_then_read_gives_the_same_token(tmp_path: Path) -> None:
    path = tmp_path / RECOVERY_FILE
    write_recovery(path, UNSAVED)
    assert read_recovery(path) == UNSAVED


def test_an_unwritable_place_keeps_the_token_in_memory_only(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    caplog.set_level(logging.ERROR)
    assert write_recovery(blocker / RECOVERY_FILE, UNSAVED) is False
    first, second = [r.getMessage() for r in caplog.records]
    assert first.startswith("Could not write the recovery file either (")
    assert str(blocker) in first, "the cause names the place"
    assert first.endswith("); the new token is kept in memory only until the credential file can be "
                          "written.")
    assert second == "The new Kimi token is not saved yet: disk full"


def test_a_missing_file_reads_as_none_quietly(tmp_path: Path, caplog) -> None:
    assert read_recovery(tmp_path / RECOVERY_FILE) is None
    assert caplog.text == ""


def test_integer_times_read_back_as_floats(tmp_path: Path) -> None:
    path = tmp_path / RECOVERY_FILE
    data = {**asdict(UNSAVED), "expires_at": 1_800_000_900, "expires_in": 900, "extra": "ignored"}
    path.write_text(json.dumps(data))
    got = read_recovery(path)
    assert got is not None and got.expires_at == 1_800_000_900.0 and got.expires_in == 900.0
    assert isinstance(got.expires_at, float) and isinstance(got.expires_in, float)


@pytest.mark.parametrize("change", [
    {"access_token": 5}, {"refresh_token": None}, {"replaces": ["fp"]}, {"expires_at": "soon"},
    {"expires_in": None},
])
def test_a_field_of_the_wrong_type_is_refused_and_left_in_place(tmp_path: Path, caplog, change: dict) -> None:
    path = tmp_path / RECOVERY_FILE
    path.write_text(json.dumps({**asdict(UNSAVED), **change}))
    caplog.set_level(logging.ERROR)
    assert read_recovery(path) is None
    assert path.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"The recovery file {path} cannot be read; it is left in place."]


@pytest.mark.parametrize("field", ["access_token", "expires_in", "reason", "token_type"])
def test_a_missing_field_is_refused(tmp_path: Path, field: str) -> None:
    data = asdict(UNSAVED)
    del data[field]
    path = tmp_path / RECOVERY_FILE
    path.write_text(json.dumps(data))
    assert read_recovery(path) is None


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / RECOVERY_FILE
    path.write_text("{not json")
    assert read_recovery(path) is None and path.exists()


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_reading_tightens_a_file_others_could_read(tmp_path: Path) -> None:
    path = tmp_path / RECOVERY_FILE
    write_recovery(path, UNSAVED)
    path.chmod(0o644)
    assert read_recovery(path) == UNSAVED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_remove_is_quiet_when_gone_and_warns_when_it_cannot(tmp_path: Path, caplog) -> None:
    path = tmp_path / RECOVERY_FILE
    write_recovery(path, UNSAVED)
    remove_recovery(path)
    assert not path.exists()
    caplog.clear()
    caplog.set_level(logging.WARNING)
    remove_recovery(path)
    assert caplog.text == ""
    path.mkdir()
    remove_recovery(path)
    assert path.is_dir()
    assert [r.getMessage() for r in caplog.records] == [f"Could not remove {path}: Is a directory."]


def live(refresh: str) -> Credentials:
    return Credentials("at", refresh, NOW + 900, 900)


@pytest.mark.parametrize(("current", "takes"), [
    (None, True),                               # no file (or unreadable)
    (live(""), True),                           # a tombstone: no refresh token
    (live("rt-old"), True),                     # the token it replaced
    (live("rt-new"), True),                     # already this token
    (live("rt-other"), False),                  # another login or renewal made meanwhile
])
def test_when_the_credential_file_takes_a_new_token(current: Credentials | None, takes: bool) -> None:
    assert file_takes(current, fingerprint("rt-old"), "rt-new") is takes
