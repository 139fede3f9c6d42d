"""The state file: every field survives a save and a reload, bad values are dropped, not fatal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import stat
from pathlib import Path

import pytest

from kimi_tray.stores.state import (
    OpenClawMemory,
    OpenClawView,
    PersistentState,
    StateStore,
    _fits,
    fingerprint,
)


def full_state() -> PersistentState:
    """Every field set to a value unlike its default."""
    return PersistentState(
        dead_refresh_fp="deadbeefdeadbeef",
        dead_reason="The refresh token was rejected.",
        last_renewal=1_700_000_123.5,
        openclaw=OpenClawView(state="error", detail="gateway restart failed", mode="cli",
                              token_fp="0123456789abcdef", expires_at=1_700_000_900.0,
                              checked_at=1_700_000_100.25),
        last_forced_login_warning=1_700_000_050.0,
        openclaw_memory=OpenClawMemory(version="2026.9.6", generation="file",
                                       store_path="/x/auth-profiles.json", kimi_plugin=False,
                                       plugin_checked_at=1_699_999_999.0, call_seconds=2.5),
        inflight_refresh_fp="fedcba9876543210",
    )


def test_every_field_is_set_in_the_sample() -> None:
    # Guards the round-trip test below: a new field must be given a non-default value there.
    sample, default = full_state(), PersistentState()
    for group, base in ((sample, default), (sample.openclaw, default.openclaw),
                        (sample.openclaw_memory, default.openclaw_memory)):
        for f in dataclasses.fields(group):
            if f.name not in ("openclaw", "openclaw_memory"):
                assert getattr(group, f.name) != getattr(base, f.name), f.name


def test_save_then_reload_keeps_every_field(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path / "state")
    store.save(full_state())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    text = store.path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "dead_refresh_fp"'), "indented, final newline"
    with caplog.at_level(logging.WARNING):
        loaded = StateStore(tmp_path / "state").load()
    assert loaded == full_state()
    assert caplog.text == ""
    assert store.path.read_text() == text, "a clean file is not rewritten"


def test_the_file_is_state_json_and_a_partial_one_is_clean(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path)
    assert store.path == tmp_path / "state.json"
    store.path.write_text('{"dead_reason": "old"}')
    with caplog.at_level(logging.WARNING):
        assert store.load() == PersistentState(dead_reason="old")
    assert caplog.text == "" and store.path.read_text() == '{"dead_reason": "old"}', "not rewritten"


def test_missing_file_gives_defaults_without_creating_it(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path / "nowhere")
    with caplog.at_level(logging.WARNING):
        assert store.load() == PersistentState()
    assert not store.path.exists() and caplog.text == ""


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_corrupt_file_gives_defaults_with_a_warning(tmp_path: Path, caplog, content: bytes) -> None:
    store = StateStore(tmp_path)
    store.path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert store.load() == PersistentState()
    [record] = caplog.records
    assert record.getMessage().startswith(f"Ignoring the state file: {store.path}")
    assert store.path.read_bytes() == content, "left for the user to look at"


def test_wrong_typed_fields_are_dropped_with_a_warning_and_the_file_rewritten(tmp_path: Path,
                                                                               caplog) -> None:
    store = StateStore(tmp_path)
    good = dataclasses.asdict(full_state())
    bad = dict(good, dead_refresh_fp=5, last_renewal="yesterday", last_forced_login_warning=True,
               inflight_refresh_fp=None, unknown_key="ignored")
    bad["openclaw"] = dict(good["openclaw"], detail=["x"], expires_at=float("nan"))
    bad["openclaw_memory"] = dict(good["openclaw_memory"], kimi_plugin="yes", call_seconds={"s": 1})
    store.path.write_text(json.dumps(bad))
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    expected = full_state()
    expected.dead_refresh_fp = ""
    expected.last_renewal = None
    expected.last_forced_login_warning = None
    expected.inflight_refresh_fp = ""
    expected.openclaw.detail = ""
    expected.openclaw.expires_at = None
    expected.openclaw_memory.kimi_plugin = None
    expected.openclaw_memory.call_seconds = None
    assert loaded == expected
    [record] = caplog.records
    assert record.getMessage() == (
        f"Ignored wrong-typed fields in {store.path} (dead_refresh_fp, last_renewal, "
        "last_forced_login_warning, inflight_refresh_fp, openclaw.detail, openclaw.expires_at, "
        "openclaw_memory.kimi_plugin, openclaw_memory.call_seconds); the file is rewritten without them.")
    rewritten = json.loads(store.path.read_text())
    assert rewritten == json.loads(json.dumps(dataclasses.asdict(expected)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert store.load() == expected
    assert caplog.text == "", "once rewritten, the file is clean"


@pytest.mark.parametrize("field", ["openclaw", "openclaw_memory"])
@pytest.mark.parametrize("value", [[], "text", 3, None])
def test_a_group_that_is_not_an_object_is_dropped_whole(tmp_path: Path, caplog, field: str,
                                                        value: object) -> None:
    store = StateStore(tmp_path)
    data = dataclasses.asdict(full_state())
    data[field] = value
    store.path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    assert getattr(loaded, field) == getattr(PersistentState(), field)
    other = "openclaw_memory" if field == "openclaw" else "openclaw"
    assert getattr(loaded, other) == getattr(full_state(), other)
    assert loaded.dead_refresh_fp == "deadbeefdeadbeef"
    assert f"({field})" in caplog.text


def test_integer_times_and_null_optionals_are_accepted(tmp_path: Path, caplog) -> None:
    store = StateStore(tmp_path)
    store.path.write_text(json.dumps({"last_renewal": 1_700_000_000, "openclaw": {"expires_at": None},
                                      "openclaw_memory": {"kimi_plugin": True}}))
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    assert loaded.last_renewal == 1_700_000_000
    assert loaded.openclaw.expires_at is None and loaded.openclaw_memory.kimi_plugin is True
    assert caplog.text == ""


def test_save_into_an_unwritable_place_only_warns(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        StateStore(blocker / "state").save(full_state())
    [record] = caplog.records
    assert record.getMessage().startswith(f"Could not save the state file: Could not create {blocker}")


@pytest.mark.parametrize(("declared", "value", "fits"), [
    ("str", "x", True), ("str", 1, False), ("str", None, False), ("str | None", None, True),
    ("int", 3, True), ("float", 2.5, True), ("float", True, False), ("bool", False, True),
    ("bool", 0, False), ("float", float("inf"), False), ("float|None", 1.0, True),
    ("dict[str, Any]", {}, True), ("OpenClawView", {}, True), ("str", {}, False),
    ("float | None", {"a": 1}, False), ("bool | None", {}, False), ("int", {}, False),
    ("list[str]", ["a"], True), ("tuple[str, ...]", [], True), ("str", ["a"], False),
    ("str", object(), False),
])
def test_the_type_rule_for_each_kind_of_field(declared: str, value: object, fits: bool) -> None:
    assert _fits(declared, value) is fits


def test_fingerprint_is_short_stable_and_hides_the_token() -> None:
    fp = fingerprint("secret-refresh-token")
    assert fp == fingerprint("secret-refresh-token") and len(fp) == 16
    assert fp != fingerprint("secret-refresh-tokeN") and "secret" not in fp
    assert fp == hashlib.sha256(b"secret-refresh-token").hexdigest()[:16]
    assert fingerprint("") == ""
