"""Which OpenClaw this is, at more edges: every Kimi provider id counts, a broken CLI falls back
to what it said before and says so, and the automatic target names the whole command.

Real parts: the stand-in `openclaw` (tests/support/fake_openclaw.py) run as a process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw.detect import Detector, kimi_plugin_listed
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.openclaw.targets import AutoTarget
from kimi_tray.stores.state import OpenClawMemory
from tests.support.offline import offline_env, offline_settings


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
