"""What every autostart backend promises, run against each of them with its entry in a temp home:
XDG and systemd files, the macOS LaunchAgent plist, the Windows Run key (winreg faked at the
edge) and install.sh's crontab @reboot line (a crontab stand-in on PATH)."""

from __future__ import annotations

import os
import plistlib
from pathlib import Path

import pytest

from kimi_tray.platform.autostart import (
    AutostartBackend,
    LaunchCommand,
    all_backends,
    check_command,
    is_on,
    launch_spec,
)
from kimi_tray.platform.autostart.cron import CronReboot, is_ours
from kimi_tray.platform.autostart.launchd import LaunchAgent
from kimi_tray.platform.autostart.systemd import SystemdUnit
from kimi_tray.platform.autostart.windows import RunKey, with_checkout_on_path
from kimi_tray.platform.autostart.xdg import XdgAutostart
from tests.support.fake_winreg import FakeWinreg
from tests.test_install import CRONTAB


class AutostartContract:
    """Subclasses say how to build their backend in `home`, how to look at its entry without
    it, and how to make the entry unreadable."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> AutostartBackend:
        return self.make(tmp_path / "home")

    def make(self, home: Path) -> AutostartBackend:
        raise NotImplementedError

    def entry_exists(self, backend: AutostartBackend) -> bool:
        """Is any trace of the entry there, looked at without the backend?"""
        raise NotImplementedError

    def break_entry(self, backend: AutostartBackend) -> None:
        """Make the entry in place one that cannot be read."""
        raise NotImplementedError

    def expected(self, spec: LaunchCommand) -> LaunchCommand:
        """The command an entry for this launch spec runs (the same, unless the platform's
        entry cannot hold a working directory)."""
        return spec

    # -- the contract
    def test_nothing_is_on_before_enable(self, backend: AutostartBackend) -> None:
        assert not is_on(backend) and not self.entry_exists(backend)
        assert backend.written_command() is None
        assert backend.disable() is False, "nothing of ours to remove"

    def test_on_writes_the_launch_spec_and_it_starts(self, backend: AutostartBackend) -> None:
        assert backend.intended_command() == self.expected(launch_spec())
        backend.enable()
        assert is_on(backend) and self.entry_exists(backend)
        written = backend.written_command()
        assert written == backend.intended_command() == self.expected(launch_spec())
        assert check_command(written) == "", "the entry's command starts kimi-tray"

    def test_enable_twice_then_off_leaves_nothing(self, backend: AutostartBackend) -> None:
        backend.enable()
        backend.enable()
        assert backend.disable() is True
        assert not is_on(backend) and not self.entry_exists(backend)
        assert backend.written_command() is None
        assert backend.disable() is False

    def test_status_of_an_unreadable_entry_is_an_answer(self, backend: AutostartBackend) -> None:
        backend.enable()
        self.break_entry(backend)
        assert isinstance(is_on(backend), bool)
        assert backend.written_command() is None, "an entry that cannot be read runs nothing we know"

    def test_it_says_what_doctor_and_the_cli_need(self, backend: AutostartBackend) -> None:
        for text in (backend.label, backend.starts, backend.fix, backend.location()):
            assert isinstance(text, str) and text.strip()
        assert all(isinstance(arg, str) and arg for arg in backend.extra_args)
        assert isinstance(backend.after_enable(), str)


class TestXdgAutostart(AutostartContract):
    def make(self, home: Path) -> XdgAutostart:
        return XdgAutostart(config_home=home / ".config")

    def entry_exists(self, backend: AutostartBackend) -> bool:
        assert isinstance(backend, XdgAutostart)
        return backend.path.exists() or backend.path.is_symlink()

    def break_entry(self, backend: AutostartBackend) -> None:
        assert isinstance(backend, XdgAutostart)
        backend.path.write_bytes(b"\xff\xfe[Desktop Entry]\nExec=\xff\n")


class TestSystemdUnit(AutostartContract):
    def make(self, home: Path) -> SystemdUnit:
        return SystemdUnit(config_home=home / ".config")

    def entry_exists(self, backend: AutostartBackend) -> bool:
        assert isinstance(backend, SystemdUnit)
        return backend.path.exists() or backend.wants_link().is_symlink()

    def break_entry(self, backend: AutostartBackend) -> None:
        assert isinstance(backend, SystemdUnit)
        backend.path.write_text("[Service]\nExecStart=\"unclosed quote\n")

    def test_the_unit_runs_the_daemon(self, backend: AutostartBackend) -> None:
        backend.enable()
        assert isinstance(backend, SystemdUnit)
        assert backend.extra_args == ("daemon",)
        exec_start = next(line for line in backend.path.read_text().splitlines()
                          if line.startswith("ExecStart="))
        assert exec_start.endswith(" daemon")


class TestLaunchAgent(AutostartContract):
    def make(self, home: Path) -> LaunchAgent:
        return LaunchAgent(home=home)

    def entry_exists(self, backend: AutostartBackend) -> bool:
        assert isinstance(backend, LaunchAgent)
        return backend.path.exists()

    def break_entry(self, backend: AutostartBackend) -> None:
        assert isinstance(backend, LaunchAgent)
        backend.path.write_bytes(b"<?xml version='1.0'?><plist><dict><key>Label")

    def test_the_plist_is_what_launchd_reads(self, backend: AutostartBackend) -> None:
        backend.enable()
        assert isinstance(backend, LaunchAgent)
        agent = plistlib.loads(backend.path.read_bytes())
        spec = launch_spec()
        assert agent["ProgramArguments"] == list(spec.argv) and agent["RunAtLoad"] is True
        assert agent.get("WorkingDirectory") == spec.cwd


class TestWindowsRunKey(AutostartContract):
    def make(self, home: Path) -> RunKey:
        return RunKey(registry=FakeWinreg())

    def registry(self, backend: AutostartBackend) -> FakeWinreg:
        assert isinstance(backend, RunKey) and isinstance(backend.reg, FakeWinreg)
        return backend.reg

    def entry_exists(self, backend: AutostartBackend) -> bool:
        return bool(self.registry(backend).values)

    def break_entry(self, backend: AutostartBackend) -> None:
        self.registry(backend).denied = True

    def expected(self, spec: LaunchCommand) -> LaunchCommand:
        return LaunchCommand(tuple(with_checkout_on_path(spec)))


class TestCronRebootLine(AutostartContract):
    """install.sh's line, read and written through a crontab stand-in (one table in a file)."""

    @pytest.fixture
    def backend(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AutostartBackend:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "crontab").write_text(CRONTAB)
        (bin_dir / "crontab").chmod(0o755)
        self.table = tmp_path / "crontab.txt"
        self.table.write_text("MAILTO=''\n@daily /usr/bin/backup\n")
        monkeypatch.setenv("CRONTAB_FILE", str(self.table))
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return CronReboot()

    def entry_exists(self, backend: AutostartBackend) -> bool:
        return any("kimi" in line for line in self.table.read_text().splitlines())

    def break_entry(self, backend: AutostartBackend) -> None:
        self.table.write_text('@reboot "/opt/unclosed/kimi-tray daemon >/dev/null 2>&1\n')

    def test_the_users_other_lines_stay(self, backend: AutostartBackend) -> None:
        backend.enable()
        lines = self.table.read_text().splitlines()
        assert lines[:2] == ["MAILTO=''", "@daily /usr/bin/backup"]
        assert sum(is_ours(line) for line in lines) == 1 and lines[-1].endswith(" daemon >/dev/null 2>&1")
        backend.disable()
        assert self.table.read_text().splitlines() == ["MAILTO=''", "@daily /usr/bin/backup"]


@pytest.mark.parametrize(("platform", "kinds"), [
    ("linux", [XdgAutostart, SystemdUnit, CronReboot]),
    ("darwin", [LaunchAgent, CronReboot]),
])
def test_every_backend_of_a_platform_is_listed_once(platform: str, kinds: list[type]) -> None:
    """status, doctor and uninstall walk this list: a backend missing here is never seen."""
    assert [type(backend) for backend in all_backends(platform)] == kinds
