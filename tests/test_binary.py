"""Smoke tests of the one-file binary itself (built by `pyinstaller build.spec` into dist/)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from kimi_tray.ui.icons import COLOURS
from tests.conftest import ROOT, kimi_file, read_json, require, wait_for, write_credentials

BINARY = ROOT / "dist" / "kimi-tray"
pytestmark = pytest.mark.binary


@pytest.fixture
def binary() -> Path:
    require(BINARY.exists(), "the one-file binary (pyinstaller --noconfirm build.spec)")
    return BINARY


def test_version_and_status_json(binary: Path, env: dict[str, str], home: Path, oauth_server) -> None:
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("kimi-tray ")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    status = subprocess.run([str(binary), "status", "--json"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["health"] == "fresh"


def test_daemon_renews_once(binary: Path, env: dict[str, str], home: Path, oauth_server,
                            tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("poll_interval = 0.5\n")
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 200)
    daemon = subprocess.Popen([str(binary), "daemon"], env={**env, "KIMI_TRAY_CONFIG": str(config)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, err
    assert read_json(kimi_file(home))["refresh_token"] != tokens["refresh_token"]
    assert tokens["refresh_token"] not in err


def test_tray_docks_green(binary: Path, env: dict[str, str], home: Path, oauth_server, desktop,
                          tmp_path: Path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    started = time.monotonic()
    tray = subprocess.Popen([str(binary)], env={**os.environ, **env, **desktop.env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: desktop.icon_geometry() is not None, timeout=30)
        visible = time.monotonic() - started
        x, y, w, h = desktop.icon_geometry()
        shot = desktop.screenshot(tmp_path / "binary.png")
        raw = Image.open(shot).convert("RGB").crop((x, y, x + w, y + h)).tobytes()
        pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
        green = sum(1 for p in pixels if sum(abs(a - b) for a, b in zip(p, COLOURS["fresh"],
                                                                          strict=True)) < 60)
        assert green > len(pixels) // 4, f"the docked icon is not green ({green}/{len(pixels)})"
        assert visible < 30
    finally:
        tray.terminate()
        out, _ = tray.communicate(timeout=15)
    assert "Traceback" not in out


def test_autostart_entry_of_the_binary_starts_it(binary: Path, env: dict[str, str], home: Path) -> None:
    from kimi_tray.platform.autostart.xdg import desktop_entry_values, parse_exec

    result = subprocess.run([str(binary), "autostart", "on"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    argv = parse_exec(desktop_entry_values(entry.read_text())["Exec"])
    assert argv == [str(binary)]
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    started = subprocess.run([*argv, "--version"], env=clean, cwd=home, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 0 and started.stdout.startswith("kimi-tray "), started.stderr
    status = subprocess.run([str(binary), "autostart", "status"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and f"runs {binary}" in status.stdout, status.stdout + status.stderr


def test_binary_sends_a_notification_with_a_button(binary: Path, env: dict[str, str], home: Path,
                                                   desktop, oauth_server) -> None:
    """desktop-notifier and dbus-fast made it into the bundle: the login-needed notification has
    its Log in button."""
    tray_env = {**os.environ, **env, **desktop.env, "PYSTRAY_BACKEND": "xorg"}
    tray = subprocess.Popen([str(binary)], env=tray_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: desktop.notify_calls("Kimi login needed"), timeout=60)
        assert 'string "Log in"' in desktop.notify_calls("Kimi login needed")[0]
    finally:
        tray.terminate()
        out, _ = tray.communicate(timeout=20)
    assert tray.returncode == 0, out
