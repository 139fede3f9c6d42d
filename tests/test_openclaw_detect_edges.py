"""Which OpenClaw this is, at more edges: every Kimi provider id counts, a broken CLI falls back
to what it said before and says so, and the automatic target names the whole command.

Real parts: the stand-in `openclaw` (tests/support/fake_openclaw.py) run as a process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw.base import Token
from kimi_tray.stores.openclaw.cli_target import CliTarget
from kimi_tray.stores.openclaw.detect import Detector, kimi_plugin_listed
from kimi_tray.stores.openclaw.file_target import LegacyFileTarget, legacy_profiles_path
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.openclaw.targets import AutoTarget, choose_target
from kimi_tray.stores.state import OpenClawMemory, OpenClawView
from tests.support.offline import offline_env, offline_settings

NOW = 1_800_000_000.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return offline_settings(offline_env(tmp_path), tmp_path)


@pytest.mark.parametrize("provider", ["kimi", "kimi-coding", "kimi-code"])
def test_each_kimi_provider_id_counts_and_others_do_not(provider: str) -> None:
    assert kimi_plugin_listed({"plugins": [{"id": "x", "providerIds": [provider]}]}) is True
    assert kimi_plugin_listed({"plugins": [{"id": "x", "providerIds": [provider.upper()]}]}) is False
    assert kimi_plugin_listed({"plugins": [{"id": "x", "providerIds": [f"{provider}-x"]}]}) is False


def test_a_plugin_list_with_odd_entries_is_read_past_them() -> None:
    kimi = {"id": "kimi", "enabled": True, "providerIds": ["kimi"]}
    assert kimi_plugin_listed({"plugins": [None, 3, {"providerIds": None}, kimi]}) is True


@pytest.mark.parametrize(("version", "named"), [("OpenClaw 2026.6.1", "OpenClaw 2026.6.1"),
                                                ("", "OpenClaw")])
def test_a_broken_cli_falls_back_to_the_remembered_generation_and_says_so(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        version: str, named: str) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "version")
    runner = Runner(settings)
    with pytest.raises(OpenClawError) as broken:
        runner.version()
    memory = OpenClawMemory(version, "file", "/x/auth-profiles.json")
    with caplog.at_level(logging.WARNING, logger="kimi_tray.stores.openclaw.detect"):
        assert Detector(runner, memory).generation() == "file"
    assert [r.getMessage() for r in caplog.records] == [
        f"{broken.value} Using what {named} said before: file."]
    assert memory == OpenClawMemory(version, "file", "/x/auth-profiles.json"), "nothing forgotten"


def test_the_automatic_target_names_the_whole_command_before_asking(settings: Settings) -> None:
    command = ("/usr/bin/env", "openclaw", "--no-color")
    auto = AutoTarget(settings.with_overrides(openclaw_command=command), OpenClawMemory())
    assert auto.describe() == ("OpenClaw (/usr/bin/env openclaw --no-color; generation not asked "
                               "yet)")


def test_a_missing_plugin_asked_about_just_now_is_not_asked_again(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    memory = OpenClawMemory()
    detector = Detector(Runner(settings), memory)
    assert detector.kimi_plugin(1000.0) is False
    monkeypatch.delenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN")
    detector.runner = Runner(settings)  # installed now: only a new question would see it
    assert detector.kimi_plugin(1000.0) is False, "the same instant: the answer is remembered"
    assert detector.kimi_plugin(1000.5) is False
    assert detector.kimi_plugin(1000.0 + 900) is True


def test_a_missing_plugin_without_a_time_is_asked_about(settings: Settings) -> None:
    """A state file saying "missing" without when (hand-edited, or older) asks OpenClaw again."""
    memory = OpenClawMemory(kimi_plugin=False, plugin_checked_at=None)
    assert Detector(Runner(settings), memory).kimi_plugin(1000.0) is True
    assert (memory.kimi_plugin, memory.plugin_checked_at) == (True, 1000.0)


def memories(target: object) -> list[OpenClawMemory]:
    """Every memory a target writes what OpenClaw said to."""
    if isinstance(target, AutoTarget):
        return [target.memory, target.cli.detector.memory, target.file.memory]
    if isinstance(target, CliTarget):
        return [target.detector.memory]
    assert isinstance(target, LegacyFileTarget)
    return [target.memory]


@pytest.mark.parametrize("mode", ["auto", "cli", "file"])
def test_the_chosen_target_remembers_into_the_engines_memory(settings: Settings, mode: str) -> None:
    """What OpenClaw said is saved in our state file only through the memory handed in."""
    memory = OpenClawMemory()
    target = choose_target(settings.with_overrides(openclaw_mode=mode), memory)
    assert target.mode in (mode, "auto")
    assert all(m is memory for m in memories(target))


def test_without_a_memory_the_target_starts_from_an_empty_one(settings: Settings,
                                                            tmp_path: Path) -> None:
    auto = choose_target(settings)
    assert isinstance(auto, AutoTarget) and auto.mode == "auto"
    assert auto.memory == OpenClawMemory() and auto.memory is auto.cli.detector.memory
    nowhere = settings.with_overrides(openclaw_command=(str(tmp_path / "none"),))
    legacy_profiles_path(settings.openclaw_state_dir, "main").parent.mkdir(parents=True)
    legacy_profiles_path(settings.openclaw_state_dir, "main").write_text("{}")
    memory = OpenClawMemory()
    chosen = choose_target(nowhere, memory)
    assert isinstance(chosen, LegacyFileTarget) and chosen.memory is memory


def test_the_automatic_target_hands_the_time_to_the_target_it_chose(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.6.1 (fake)")
    monkeypatch.setenv("FAKE_OPENCLAW_STORE_PATH", "/x/auth-profiles.json")
    token = Token("eyJ-current-access-token-0123456789", NOW + 900)
    legacy_profiles_path(settings.openclaw_state_dir, "main").parent.mkdir(parents=True)
    auto = AutoTarget(settings, OpenClawMemory())
    view = auto.sync(token, NOW)
    assert (view.mode, view.checked_at) == ("file", NOW)
    assert auto.inspect(token, NOW + 5).checked_at == NOW + 5


def test_sync_turned_off_still_names_the_configured_command(settings: Settings) -> None:
    """`doctor` with the sync off says whether the configured openclaw is there, not a default."""
    off = choose_target(settings.with_overrides(openclaw_mode="off",
                                                openclaw_command=("/opt/oc/bin/openclaw", "--x")))
    assert off.active is False and off.mode == "off"
    checks = off.doctor_checks(lambda: Token("eyJ-token-0123456789", NOW + 900), OpenClawView(), NOW)
    assert checks[0].detail == "/opt/oc/bin/openclaw is not on PATH"
