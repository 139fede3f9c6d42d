"""Autostart backends (XDG for real, launchd by its plist, Windows with winreg replaced at the edge)
and the notification policy."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from kimi_tray.autostart.launchd import LaunchAgent
from kimi_tray.autostart.windows import RUN_KEY, RunKey
from kimi_tray.autostart.xdg import XdgAutostart
from kimi_tray.health import Health, Status
from kimi_tray.notify import NotificationPolicy
from tests.conftest import require

COMMAND = ["/opt/My Apps/python3", "-m", "kimi_tray"]


def test_xdg_entry_written_valid_and_removed(tmp_path: Path) -> None:
    backend = XdgAutostart(config_home=tmp_path, command=COMMAND)
    assert not backend.is_enabled()
    backend.enable()
    assert backend.is_enabled() and backend.path == tmp_path / "autostart" / "kimi-tray.desktop"
    text = backend.path.read_text()
    assert 'Exec="/opt/My Apps/python3" -m kimi_tray' in text
    require(shutil.which("desktop-file-validate") is not None, "desktop-file-validate")
    check = subprocess.run(["desktop-file-validate", str(backend.path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    backend.disable()
    assert not backend.is_enabled()
    backend.disable()  # idempotent


def test_xdg_honours_xdg_config_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert XdgAutostart(command=COMMAND).path == tmp_path / "cfg" / "autostart" / "kimi-tray.desktop"


def test_launch_agent_plist(tmp_path: Path) -> None:
    agent = LaunchAgent(home=tmp_path, command=COMMAND)
    agent.enable()
    data = plistlib.loads(agent.path.read_bytes())
    assert data["ProgramArguments"] == COMMAND and data["RunAtLoad"] is True
    assert data["Label"] == agent.path.stem
    assert agent.path.parent == tmp_path / "Library" / "LaunchAgents"
    agent.disable()
    assert not agent.is_enabled()


class FakeWinreg:
    """winreg at the edge: an in-memory HKCU with winreg's calling conventions."""

    HKEY_CURRENT_USER, KEY_READ, KEY_SET_VALUE, REG_SZ = "HKCU", 1, 2, 1

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}

    class _Key:
        def __init__(self, path: str) -> None:
            self.path = path

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def CreateKeyEx(self, root, path, reserved, access):  # noqa: N802
        assert root == "HKCU" and reserved == 0
        return self._Key(path)

    def SetValueEx(self, key, name, reserved, kind, value):  # noqa: N802
        self.values[(key.path, name)] = value

    def QueryValueEx(self, key, name):  # noqa: N802
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        return self.values[(key.path, name)], self.REG_SZ

    def DeleteValue(self, key, name):  # noqa: N802
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        del self.values[(key.path, name)]


def test_windows_run_key() -> None:
    registry = FakeWinreg()
    backend = RunKey(registry=registry, command=[r"C:\Program Files\kimi-tray.exe"])
    assert not backend.is_enabled()
    backend.enable()
    assert registry.values[(RUN_KEY, "kimi-tray")] == r'"C:\Program Files\kimi-tray.exe"'
    assert backend.is_enabled()
    backend.disable()
    backend.disable()
    assert not backend.is_enabled()


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, title: str, message: str) -> None:
        self.sent.append((title, message))


def status(health: Health, left: float | None = 600, failures: int = 0, **kw) -> Status:
    now = 1_800_000_000.0
    return Status(health, now, expires_at=None if left is None else now + left, lifetime=900,
                  failures=failures, **kw)


def test_policy_notifies_once_per_episode_and_on_recovery() -> None:
    recorder = Recorder()
    policy = NotificationPolicy(recorder)
    for _ in range(5):
        policy.on_status(status(Health.NEEDS_LOGIN, message="The refresh token was rejected."))
    assert [t for t, _ in recorder.sent] == ["Kimi login needed"]
    policy.on_status(status(Health.FRESH))
    assert recorder.sent[-1][0] == "Kimi login restored"
    for left in (280, 200, 100):
        policy.on_status(status(Health.AGING, left=left, failures=3, message="renewal failing: 503"))
    policy.on_status(status(Health.FRESH))
    titles = [t for t, _ in recorder.sent]
    assert titles.count("Kimi token renewal failing") == 1 and titles[-1] == "Kimi token renewed"


def test_policy_never_sends_a_token() -> None:
    recorder = Recorder()
    NotificationPolicy(recorder).on_status(
        status(Health.NEEDS_LOGIN, message="bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"))
    assert "eyJ" not in recorder.sent[0][1]


@pytest.mark.parametrize(("days_left", "expected"), [(10, 0), (2.5, 1)])
def test_forced_login_warning_at_most_daily(days_left: float, expected: int) -> None:
    recorder = Recorder()
    policy = NotificationPolicy(recorder)
    now = 1_800_000_000.0
    for hour in range(0, 20):
        policy.on_status(Status(Health.FRESH, now + hour * 3600, expires_at=now + hour * 3600 + 800,
                                lifetime=900, refresh_token_expires_at=now + days_left * 86400))
    assert [t for t, _ in recorder.sent].count("Kimi login will end soon") == expected


def test_forced_login_warning_remembered_across_restarts() -> None:
    now = 1_800_000_000.0
    status = Status(Health.FRESH, now, expires_at=now + 800, lifetime=900,
                    refresh_token_expires_at=now + 2 * 86400)
    remembered: list[float] = []
    first = Recorder()
    NotificationPolicy(first, on_forced_warning=remembered.append).on_status(status)
    assert remembered == [now] and len(first.sent) == 1
    restarted = Recorder()
    later = Status(Health.FRESH, now + 3600, expires_at=now + 4400, lifetime=900,
                   refresh_token_expires_at=now + 2 * 86400)
    NotificationPolicy(restarted, last_forced_warning=remembered[-1]).on_status(later)
    assert restarted.sent == [], "a restart within a day does not warn again"
