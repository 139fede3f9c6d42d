"""Autostart backends (XDG for real, launchd by its plist, Windows with winreg replaced at the edge)
and the notification policy."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from kimi_tray.core.health import Health, Status
from kimi_tray.platform.autostart import LaunchCommand, check_command
from kimi_tray.platform.autostart.launchd import LaunchAgent
from kimi_tray.platform.autostart.windows import RUN_KEY, RunKey, split_command_line
from kimi_tray.platform.autostart.xdg import XdgAutostart, desktop_entry_values, parse_exec
from kimi_tray.ui.notify import NotificationPolicy
from tests.conftest import ROOT, require, run_cli
from tests.support.fake_winreg import FakeWinreg

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
    shows_actions = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.actions: list[list[str]] = []

    def send(self, title: str, message: str, actions=()) -> None:
        self.sent.append((title, message))
        self.actions.append([a.key for a in actions])


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


# ----------------------------------------------------------------------------- entries that start
def installed_venv(tmp_path: Path) -> Path:
    """A venv holding kimi_tray as pip installs it: the package in site-packages and a
    `kimi-tray` console script; dependencies come from this interpreter's site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    shutil.copytree(ROOT / "kimi_tray", site / "kimi_tray",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = venv / "bin" / "kimi-tray"
    script.write_text(f"#!{python}\nimport sys\nfrom kimi_tray.cli.main import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return venv


def clean_env(home: Path) -> dict[str, str]:
    """A login session's environment: no PYTHONPATH, its own HOME."""
    keep = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**keep, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def run_exec_line(entry: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """What a desktop session does at login: split the Exec line, run it from Path (or HOME)."""
    values = desktop_entry_values(entry.read_text())
    argv = parse_exec(values["Exec"])
    return subprocess.run([*argv, "--version"], cwd=values.get("Path") or home, env=clean_env(home),
                          capture_output=True, text=True, timeout=60)


def test_venv_install_writes_an_entry_that_starts(tmp_path: Path, home: Path) -> None:
    venv = installed_venv(tmp_path)
    result = subprocess.run([str(venv / "bin" / "kimi-tray"), "autostart", "on"], env=clean_env(home),
                            cwd=home, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    assert parse_exec(desktop_entry_values(entry.read_text())["Exec"]) == [str(venv / "bin" / "kimi-tray")]
    started = run_exec_line(entry, home)
    assert started.returncode == 0 and started.stdout.startswith("kimi-tray "), started.stderr
    status = subprocess.run([str(venv / "bin" / "kimi-tray"), "autostart", "status"], env=clean_env(home),
                            cwd=home, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "runs " in status.stdout, status.stderr


def test_source_checkout_writes_an_entry_that_starts(env: dict[str, str], home: Path) -> None:
    result = run_cli(["autostart", "on"], env)
    assert result.returncode == 0, result.stderr
    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    values = desktop_entry_values(entry.read_text())
    assert values["Path"] == str(ROOT)
    started = run_exec_line(entry, home)
    assert started.returncode == 0 and started.stdout.startswith("kimi-tray "), started.stderr


def test_a_broken_entry_is_reported(tmp_path: Path) -> None:
    """The entry the old code wrote: the resolved interpreter, which cannot import kimi_tray."""
    gone = str(tmp_path / "gone" / "python3")
    broken = XdgAutostart(config_home=tmp_path, command=[gone, "-m", "kimi_tray"])
    broken.enable()
    assert "does not exist" in check_command(broken.written_command())
    system_python = LaunchCommand((sys._base_executable, "-m", "kimi_tray"))
    assert "No module named kimi_tray" in check_command(system_python)


@pytest.mark.parametrize("argv", [
    ["/opt/My Apps/python3", "-m", "kimi_tray"],
    ['C:\\Program Files\\k "t"\\x.exe', "a\\\\", "b c\\", "100%"],
    ["plain"],
])
def test_command_lines_round_trip(argv: list[str]) -> None:
    from kimi_tray.platform.autostart.xdg import exec_line

    assert parse_exec(exec_line(argv)) == argv
    assert split_command_line(subprocess.list2cmdline(argv)) == argv


# ----------------------------------------------------------------------------- one per episode
def test_each_problem_notifies_once_with_its_fix_and_button(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    recorder = Recorder()
    policy = NotificationPolicy(recorder, actions=("login", "open_log"), log_episodes=True)
    corrupt = f"{tmp_path}/.kimi/credentials/kimi-code.json is not valid JSON (line 1, column 62)."
    for _ in range(3):
        policy.on_status(status(Health.ERROR, left=None, message=corrupt))
    assert recorder.sent == [("Kimi credentials unreadable",
                              "~/.kimi/credentials/kimi-code.json is not valid JSON. Log in again to "
                              "write a new credential file: choose Log in... in the menu.")]
    assert recorder.actions == [["login", "open_log"]]
    for left in (250, 100, 40):
        policy.on_status(status(Health.AGING, left=left, failures=2,
                                message="renewal failing: The Kimi server could not be reached."))
    title, message = recorder.sent[-1]
    assert title == "Kimi token renewal failing" and recorder.actions[-1] == ["open_log"]
    assert message.lower().count("failing") == 1 and "renewal failing" not in message
    assert len(recorder.sent) == 2


def test_a_login_from_the_tray_ends_with_its_own_notification_only() -> None:
    recorder = Recorder()
    policy = NotificationPolicy(recorder, actions=("login",))
    policy.on_status(status(Health.NEEDS_LOGIN, message="The Kimi refresh token was rejected."))
    assert recorder.actions == [["login"]]
    policy.on_status(status(Health.NEEDS_LOGIN, login_in_progress=True))
    policy.on_status(status(Health.FRESH))
    assert [t for t, _ in recorder.sent] == ["Kimi login needed"], "the tray says 'done' itself"


def test_a_daemon_gets_no_buttons_it_cannot_answer() -> None:
    recorder = Recorder()
    NotificationPolicy(recorder, login_hint="Run `kimi-tray login`.").on_status(
        status(Health.NEEDS_LOGIN, message="No Kimi credentials at /x."))
    assert recorder.actions == [[]] and "kimi-tray login" in recorder.sent[0][1]


# ----------------------------------------------------------------------------- menu words, redraws
def test_a_corrupt_file_gets_a_short_menu_line_and_an_enabled_log_in(monkeypatch, tmp_path) -> None:
    from kimi_tray.ui.menu import build_menu

    monkeypatch.setenv("HOME", str(tmp_path))
    message = (f"{tmp_path}/.kimi/credentials/kimi-code.json is not valid JSON "
               "(Expecting property name enclosed in double quotes: line 1, column 62).")
    entries = {e.key: e for e in build_menu(status(Health.ERROR, left=None, message=message), False, True)}
    assert entries["status"].label == "Kimi: ~/.kimi/credentials/kimi-code.json is not valid JSON"
    assert entries["advice"].label == "Fix: Log in... below writes a new file"
    assert entries["login"].enabled and entries["login"].default
    assert all(len(e.label) <= 64 for e in entries.values())
    failing = status(Health.EXPIRING, left=50, failures=3, message="renewal failing: HTTP 503.")
    advice = {e.key: e for e in build_menu(failing, False, True)}["advice"].label
    assert advice == "Renewal failing: check the network (retrying)"


def test_the_next_redraw_is_when_the_picture_changes() -> None:
    from kimi_tray.ui.tray import as_of, next_picture_change

    now = 1_800_000_000.0
    minutes = Status(Health.FRESH, now, expires_at=now + 600.5, lifetime=900)
    assert next_picture_change(minutes) == pytest.approx(now + 0.5 + 0.05)  # 10 min -> 9 min
    seconds = Status(Health.EXPIRING, now, expires_at=now + 38.25, lifetime=900, failures=3)
    assert next_picture_change(seconds) == pytest.approx(now + 0.25 + 0.05)  # 38 s -> 37 s
    at_threshold = Status(Health.AGING, now, expires_at=now + 120.5, lifetime=900)
    assert next_picture_change(at_threshold) == pytest.approx(now + 0.5 + 0.05)  # turns orange
    later = as_of(seconds, now + 40)
    assert later.health is Health.EXPIRED and later.summary().startswith("Kimi: token expired")
    assert next_picture_change(later) is None
    assert next_picture_change(Status(Health.NEEDS_LOGIN, now)) is None


def test_a_browser_that_fails_is_reported_and_reaped(tmp_path, monkeypatch) -> None:
    from kimi_tray.platform.browser import open_url

    failing = tmp_path / "fails"
    failing.write_text("#!/bin/sh\necho 'no method available for opening' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(failing))
    assert open_url("http://127.0.0.1/x") == \
        "The browser did not open (fails: no method available for opening)."
    slow = tmp_path / "slow"
    slow.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'pid'}\nsleep 1\n")
    slow.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(slow))
    assert open_url("http://127.0.0.1/x", settle=0.3) == ""  # still running: a browser that started
    pid = int((tmp_path / "pid").read_text())
    import time

    time.sleep(1.5)
    assert not Path(f"/proc/{pid}").exists(), "reaped, not a zombie"
