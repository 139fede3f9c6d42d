"""Saving into a credential file written in any layout keeps that layout and every field we do
not own; loading checks each field at its edges."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import load_settings
from kimi_tray.core.errors import LocalFileError
from kimi_tray.stores.credentials import (
    MAX_EXPIRY_AHEAD,
    MILLISECOND_EPOCH,
    PYTHON_CLI,
    SAVE_RESERVE,
    TYPESCRIPT_CLI,
    Credentials,
    CredentialSource,
    candidate_sources,
    device_id,
    expiry_problem,
    fix_permissions,
    parse_credentials,
)
from kimi_tray.stores.fileio import DirectoryLock, FileLock, NoLock

ORIGINAL = {
    "note": "first, foreign",
    "access_token": "old-access",
    "refresh_token": "old-refresh",
    "expires_at": 1_700_000_000.0,
    "scope": "kimi-code",
    "token_type": "Bearer",
    "expires_in": 900,
    "extra": {"nested": [1, 2, {"deep": None}]},
    "zz": "last, foreign",
}
NEW = dict(access_token="new-access", refresh_token="new-refresh", expires_at=1_800_000_000.5,
           expires_in=300.0, scope="kimi-code more", token_type="DPoP")


def src(tmp_path: Path, owner: str = PYTHON_CLI) -> CredentialSource:
    home = tmp_path / ("kimi-code" if owner == TYPESCRIPT_CLI else "kimi")
    return CredentialSource(home / "credentials" / "kimi-code.json", home, owner)


def write(source: CredentialSource, text: str) -> None:
    source.path.parent.mkdir(parents=True, exist_ok=True)
    source.path.write_text(text, encoding="utf-8")


def expected_after_save(**changes: object) -> dict:
    data = dict(ORIGINAL)
    data.update(access_token=NEW["access_token"], refresh_token=NEW["refresh_token"],
                expires_at=NEW["expires_at"], scope=NEW["scope"], token_type=NEW["token_type"],
                expires_in=NEW["expires_in"])
    data.update(changes)
    return data


LAYOUTS = {
    "indent-4": lambda d: json.dumps(d, indent=4) + "\n",
    "indent-4-no-newline": lambda d: json.dumps(d, indent=4),
    "tab": lambda d: json.dumps(d, indent="\t") + "\n",
    "indent-2-no-newline": lambda d: json.dumps(d, indent=2),
    "compact": lambda d: json.dumps(d, separators=(",", ":")),
    "compact-newline": lambda d: json.dumps(d, separators=(",", ":")) + "\n",
    "one-line-spaced": lambda d: json.dumps(d),
    "one-line-spaced-newline": lambda d: json.dumps(d) + "\n",
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("prepared", [False, True], ids=["direct", "prepared"])
def test_save_keeps_the_files_own_layout_and_every_foreign_field(tmp_path: Path, layout: str,
                                                                 prepared: bool) -> None:
    source = src(tmp_path)
    write(source, LAYOUTS[layout](ORIGINAL))
    ahead = source.prepare_save() if prepared else None
    saved = source.save(**NEW, prepared=ahead)
    assert source.path.read_text(encoding="utf-8") == LAYOUTS[layout](expected_after_save())
    assert list(json.loads(source.path.read_text())) == list(ORIGINAL), "key order kept"
    assert (saved.access_token, saved.refresh_token, saved.expires_at, saved.expires_in, saved.scope,
            saved.token_type) == ("new-access", "new-refresh", 1_800_000_000.5, 300.0, "kimi-code more",
                                  "DPoP")
    assert saved.raw["note"] == "first, foreign"
    assert stat.S_IMODE(source.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in source.path.parent.iterdir()) == ["kimi-code.json"]


def test_save_keeps_a_byte_order_mark(tmp_path: Path) -> None:
    source = src(tmp_path)
    source.path.parent.mkdir(parents=True)
    source.path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ORIGINAL, indent=2) + "\n").encode())
    source.save(**NEW)
    raw = source.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert json.loads(raw[3:]) == expected_after_save()


def test_empty_scope_and_token_type_keep_the_files_own(tmp_path: Path) -> None:
    source = src(tmp_path)
    write(source, json.dumps({**ORIGINAL, "scope": "from-file", "token_type": "FileType"}, indent=2))
    saved = source.save("a2", "r2", 1_800_000_000.0, 900.0, scope="", token_type="")
    data = json.loads(source.path.read_text())
    assert (data["scope"], data["token_type"], data["expires_in"]) == ("from-file", "FileType", 900.0)
    assert (saved.scope, saved.token_type, saved.expires_in) == ("from-file", "FileType", 900.0)


def test_scope_left_out_keeps_the_files_own_and_token_type_is_bearer(tmp_path: Path) -> None:
    source = src(tmp_path)
    write(source, json.dumps({**ORIGINAL, "scope": "from-file", "token_type": "FileType"}))
    saved = source.save("a2", "r2", 1_800_000_000.0, 900.0)
    assert (saved.scope, saved.token_type) == ("from-file", "Bearer")
    fresh = src(tmp_path / "new")
    assert (fresh.save("a", "r", 1_800_000_000.0, 900.0).scope, fresh.load().token_type) == ("", "Bearer")


def test_a_prepared_save_uses_the_file_as_read_before_the_refresh(tmp_path: Path) -> None:
    """Only the rename is left after the answer: the file is not read again, so a file garbled
    meanwhile does not cost the foreign fields read before."""
    source = src(tmp_path)
    write(source, json.dumps(ORIGINAL, indent=4))
    prepared = source.prepare_save()
    source.path.write_text("{garbled")
    source.save(**NEW, prepared=prepared)
    assert source.path.read_text() == json.dumps(expected_after_save(), indent=4)


def test_a_new_file_gets_every_field_indented_by_two(tmp_path: Path) -> None:
    source = src(tmp_path)
    source.save("a2", "r2", 1_800_000_000.25, 60.0, scope="", token_type="")
    text = source.path.read_text()
    assert text == json.dumps({"access_token": "a2", "refresh_token": "r2", "expires_at": 1_800_000_000.25,
                               "scope": "", "token_type": "Bearer", "expires_in": 60.0}, indent=2) + "\n"
    assert stat.S_IMODE(source.path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("lifetime", [60.0, 300.0, 900.0, 3600.0])
def test_the_lifetime_is_saved_as_given(tmp_path: Path, lifetime: float) -> None:
    source = src(tmp_path)
    write(source, json.dumps(ORIGINAL))
    source.save("a", "r", 1_800_000_000.0, lifetime)
    assert json.loads(source.path.read_text())["expires_in"] == lifetime
    assert source.load().expires_in == lifetime


def test_a_corrupt_file_is_replaced_whole(tmp_path: Path) -> None:
    source = src(tmp_path)
    write(source, "{not json")
    source.save(**NEW)
    assert json.loads(source.path.read_text()) == {k: NEW[k] for k in (
        "access_token", "refresh_token", "expires_at", "scope", "token_type", "expires_in")}


def test_typescript_owner_saves_whole_seconds_in_its_layout(tmp_path: Path) -> None:
    source = src(tmp_path, TYPESCRIPT_CLI)
    write(source, json.dumps(ORIGINAL, indent=4))
    saved = source.save(**NEW)
    text = source.path.read_text()
    assert text == json.dumps(expected_after_save(expires_at=1_800_000_000), indent=4)
    assert '"expires_at": 1800000000,' in text and saved.expires_at == 1_800_000_000.0


def test_prepare_save_reserves_room_for_the_answer(tmp_path: Path) -> None:
    source = src(tmp_path)
    write(source, json.dumps({**ORIGINAL, "pad": "x" * 5000}))
    size = source.path.stat().st_size
    prepared = source.prepare_save()
    try:
        assert prepared.reserve == 2 * size and prepared.tmp.stat().st_size == 2 * size
        assert prepared.base is not None and prepared.base[0]["pad"] == "x" * 5000
    finally:
        prepared.discard()
    small = src(tmp_path / "small")
    with small.prepare_save() as fresh:
        assert fresh.reserve == SAVE_RESERVE and fresh.base == ({}, None)
    assert not small.path.exists()


def test_prepare_save_failure_says_nothing_was_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    source = CredentialSource(blocker / "credentials" / "kimi-code.json", blocker, PYTHON_CLI)
    with pytest.raises(LocalFileError, match="The token was not refreshed, so nothing is lost"):
        source.prepare_save()


# ----------------------------------------------------------------------------- loading

def test_parse_reads_every_field() -> None:
    creds = parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "r", "expires_at": 5,
                                          "expires_in": 60, "scope": "s", "token_type": "T", "x": 1})
    assert (creds.access_token, creds.refresh_token, creds.expires_at, creds.expires_in, creds.scope,
            creds.token_type, dict(creds.raw)) == ("a", "r", 5.0, 60.0, "s", "T", {
                "access_token": "a", "refresh_token": "r", "expires_at": 5, "expires_in": 60, "scope": "s",
                "token_type": "T", "x": 1})
    assert type(creds.expires_at) is float and type(creds.expires_in) is float
    bare = parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "", "expires_at": 0})
    assert (bare.scope, bare.token_type, bare.expires_in, bare.can_refresh) == ("", "Bearer", None, False)
    assert parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "r", "expires_at": 0,
                                         "token_type": ""}).token_type == "Bearer"


@pytest.mark.parametrize("value", [0, -1, True, "900", float("nan"), float("inf"), MAX_EXPIRY_AHEAD + 1])
def test_an_unusable_expires_in_is_unknown(value: object) -> None:
    creds = parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "r", "expires_at": 1,
                                          "expires_in": value})
    assert creds.expires_in is None


def test_expires_in_up_to_a_year_is_kept() -> None:
    creds = parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "r", "expires_at": 1,
                                          "expires_in": MAX_EXPIRY_AHEAD})
    assert creds.expires_in == MAX_EXPIRY_AHEAD


@pytest.mark.parametrize(("key", "value", "message"), [
    ("scope", 5, "'scope' must be a string, not int"),
    ("token_type", ["x"], "'token_type' must be a string, not list"),
    ("refresh_token", None, "has no 'refresh_token' field; log in again to recreate it."),
    ("expires_at", None, "has no 'expires_at' field; log in again to recreate it."),
    ("expires_at", "1", "'expires_at' must be a number of epoch seconds, not str."),
    ("expires_at", -1, "'expires_at' is negative (-1); log in again to recreate the file."),
])
def test_parse_errors_name_the_field(key: str, value: object, message: str) -> None:
    data = {"access_token": "a", "refresh_token": "r", "expires_at": 1, key: value}
    with pytest.raises(LocalFileError) as info:
        parse_credentials(Path("/x/kimi-code.json"), data)
    assert str(info.value).startswith("/x/kimi-code.json") and message in str(info.value)


def test_expiry_problem_edges() -> None:
    now = 1_700_000_000.0
    assert expiry_problem(0.0, now) == ""
    assert expiry_problem(now + MAX_EXPIRY_AHEAD, now) == ""
    assert expiry_problem(now + MAX_EXPIRY_AHEAD + 1, now) == \
        f"is more than a year away ({now + MAX_EXPIRY_AHEAD + 1:.0f})"
    assert expiry_problem(-0.5, now) == "is negative (-0.5)"
    assert expiry_problem(MILLISECOND_EPOCH - 1, MILLISECOND_EPOCH) == ""
    assert expiry_problem(MILLISECOND_EPOCH, MILLISECOND_EPOCH) == \
        "looks like milliseconds (100000000000), not epoch seconds"
    assert expiry_problem(float("inf"), now) == "is inf, not a finite number"
    assert expiry_problem(float("nan"), now) == "is nan, not a finite number"
    assert expiry_problem(time.time() + MAX_EXPIRY_AHEAD - 60) == "", "now defaults to the real time"
    assert expiry_problem(time.time() + MAX_EXPIRY_AHEAD + 60) != ""


def test_credentials_helpers() -> None:
    creds = Credentials("a", "r", 1000.0)
    assert creds.seconds_left(400.0) == 600.0 and creds.can_refresh
    assert repr(creds) == "Credentials(expires_at=1000.0, refresh=True)"
    assert not Credentials("a", "", 1000.0).can_refresh


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True), (0o604, True),
                                             (0o610, True), (0o601, True)])
def test_permissions_are_tightened_only_when_others_can_read(tmp_path: Path, caplog, mode: int,
                                                             warned: bool) -> None:
    path = tmp_path / "f.json"
    path.write_text("{}")
    path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        fix_permissions(path)
    assert stat.S_IMODE(path.stat().st_mode) == (0o600 if warned else mode)
    assert ("readable by other users" in caplog.text) == warned
    if warned:
        assert f"(mode {mode:o})" in caplog.text
    fix_permissions(tmp_path / "missing.json")  # nothing to fix, no error


# ----------------------------------------------------------------------------- locks, sources, ids

def test_each_owner_takes_its_own_lock(tmp_path: Path) -> None:
    python = src(tmp_path)
    lock = python.lock(timeout=3.5)
    assert isinstance(lock, FileLock) and lock.path == python.path.with_name("kimi-code.lock")
    assert lock.timeout == 3.5
    assert isinstance(python.lock(timeout=1, disabled=True), FileLock), "the Python CLI's lock is kept"
    ts = src(tmp_path, TYPESCRIPT_CLI)
    dir_lock = ts.lock(timeout=2.5)
    assert isinstance(dir_lock, DirectoryLock) and dir_lock.timeout == 2.5
    assert dir_lock.sentinel == ts.home / "oauth" / "kimi-code"
    assert isinstance(ts.lock(timeout=1, disabled=True), NoLock)


def test_a_configured_file_is_owned_by_the_cli_whose_home_holds_it(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KIMI_CODE_HOME": str(tmp_path / "kc"), "KIMI_TRAY_CONFIG": "/nonexistent"}
    settings = load_settings(env)
    inside = settings.with_overrides(credentials_file=tmp_path / "kc" / "credentials" / "kimi-code.json")
    outside = settings.with_overrides(credentials_file=tmp_path / "other" / "credentials" / "c.json")
    [one] = candidate_sources(inside)
    assert (one.owner, one.home) == (TYPESCRIPT_CLI, tmp_path / "kc")
    [two] = candidate_sources(outside)
    assert (two.owner, two.home, two.path) == (PYTHON_CLI, tmp_path / "other", outside.credentials_file)
    both = candidate_sources(settings)
    assert [(s.owner, s.home) for s in both] == [(PYTHON_CLI, tmp_path / ".kimi"),
                                                 (TYPESCRIPT_CLI, tmp_path / "kc")]


def test_stale_temp_files_are_swept_fresh_ones_kept(tmp_path: Path) -> None:
    source = src(tmp_path)
    write(source, json.dumps(ORIGINAL))
    old = source.path.with_name("kimi-code.json.tmp.1.aa")
    young = source.path.with_name("kimi-code.json.tmp.2.bb")
    other = source.path.with_name("other.json.tmp.3.cc")
    for path in (old, young, other):
        path.write_text("secret")
    past = time.time() - 120
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    source.sweep_temp_files()
    assert not old.exists() and young.exists() and other.exists()


def test_device_id_is_read_back_stripped_and_an_empty_one_replaced(tmp_path: Path) -> None:
    home = tmp_path / "kimi"
    home.mkdir()
    (home / "device_id").write_text("abc123\n")
    assert device_id(home) == "abc123"
    (home / "device_id").write_text("  \n")
    fresh = device_id(home)
    assert len(fresh) == 32 and (home / "device_id").read_text() == fresh


# ----------------------------------------------------------------------------- found by mutation testing

def test_a_lifetime_below_one_second_is_still_a_lifetime() -> None:
    creds = parse_credentials(Path("f"), {"access_token": "a", "refresh_token": "r", "expires_at": 1,
                                          "expires_in": 0.5})
    assert creds.expires_in == 0.5


def test_the_permission_warning_names_the_file_and_its_mode(tmp_path: Path, caplog) -> None:
    path = tmp_path / "f.json"
    path.write_text("{}")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        fix_permissions(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} was readable by other users (mode 644); changed it to 600."]


def choose_env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "KIMI_TRAY_CONFIG": str(tmp_path / "none.toml")}


def kimi_files(tmp_path: Path) -> tuple[Path, Path]:
    return (tmp_path / ".kimi" / "credentials" / "kimi-code.json",
            tmp_path / ".kimi-code" / "credentials" / "kimi-code.json")


def put(path: Path, refresh: str, expires_at: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"access_token": "a", "refresh_token": refresh, "expires_at": expires_at}))
    path.chmod(0o600)


def test_choose_source_ranks_live_then_latest_then_the_python_cli(tmp_path: Path) -> None:
    from kimi_tray.stores.credentials import choose_source

    settings = load_settings(choose_env(tmp_path))
    py, ts = kimi_files(tmp_path)
    put(py, "live", 100.0)
    put(ts, "", 200.0)  # later, but its refresh token is gone
    assert choose_source(settings).path == py
    put(ts, "live", 100.0)  # a tie: the Python CLI's file
    assert choose_source(settings).path == py
    py.write_text("{corrupt")
    put(ts, "", 0.0)  # a tombstone still beats a file we cannot read
    assert choose_source(settings).path == ts
    py.unlink()
    put(py, "live", 100.0)
    py.chmod(0o644)
    choose_source(settings)
    assert stat.S_IMODE(py.stat().st_mode) == 0o644, "choosing reads only: the chosen source fixes it"


def test_two_unreadable_files_fall_back_to_the_python_cli(tmp_path: Path) -> None:
    from kimi_tray.stores.credentials import choose_source

    py, ts = kimi_files(tmp_path)
    for path in (py, ts):
        path.parent.mkdir(parents=True)
        path.write_text("{corrupt")
    assert choose_source(load_settings(choose_env(tmp_path))).path == py


def test_a_device_id_that_cannot_be_saved_is_used_for_this_run(tmp_path: Path, caplog) -> None:
    home = tmp_path / "not-a-directory"
    home.write_text("")
    with caplog.at_level(logging.WARNING):
        value = device_id(home)
    assert len(value) == 32
    assert [r.getMessage() for r in caplog.records] == [f"Could not create {home}: File exists."]
