"""Packaging files validate and say what they should; none holds a secret."""

from __future__ import annotations

import plistlib
import shutil
import subprocess

from tests.conftest import ROOT, require

PACKAGING = ROOT / "packaging"


def test_desktop_file_validates() -> None:
    require(shutil.which("desktop-file-validate") is not None, "desktop-file-validate")
    result = subprocess.run(["desktop-file-validate", str(PACKAGING / "linux" / "kimi-tray.desktop")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_runs_the_daemon_and_restarts_on_failure() -> None:
    unit = (PACKAGING / "linux" / "kimi-tray.service").read_text()
    sections = [line for line in unit.splitlines() if line.startswith("[")]
    assert sections == ["[Unit]", "[Service]", "[Install]"]
    assert "ExecStart=@KIMI_TRAY@ daemon" in unit and "Restart=on-failure" in unit
    assert "WantedBy=default.target" in unit
    for secret_word in ("access_token", "refresh_token", "Environment=KIMI", "Bearer"):
        assert secret_word not in unit


def test_macos_plists() -> None:
    fragment = plistlib.loads((PACKAGING / "macos" / "Info.plist.fragment").read_bytes())
    assert fragment["LSUIElement"] is True
    agent = plistlib.loads((PACKAGING / "macos" / "io.github.kimi-tray.plist").read_bytes())
    assert agent["RunAtLoad"] is True and agent["Label"] == "io.github.kimi-tray"


def test_build_spec_names_the_dynamic_imports() -> None:
    spec = (ROOT / "build.spec").read_text()
    for name in ("pystray._xorg", "pystray._gtk", "pystray._appindicator", "pystray._win32",
                 "pystray._darwin", "plyer.platforms.linux.notification",
                 "plyer.platforms.win.notification", "plyer.platforms.macosx.notification",
                 "assets/icons", "LSUIElement"):
        assert name in spec
