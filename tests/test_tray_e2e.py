"""The tray end to end: a real X tray host, a real notification daemon, real clicks, screenshots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from kimi_tray.icons import COLOURS
from tests.conftest import ROOT, have, kimi_file, read_json, wait_for, write_credentials
from tests.support.desktop import Desktop
from tests.support.oauth_server import FakeKimiOAuth

pytestmark = pytest.mark.desktop
SHOTS = ROOT / ".artifacts" / "screenshots"


@pytest.fixture
def tray_env(env: dict[str, str], desktop: Desktop, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    # Usage lines would add live menu items and shift the Down-key counts below; the usage menu
    # has its own test (test_tray_usage_e2e.py).
    config.write_text("poll_interval = 0.5\ntray_poll_interval = 0.5\nusage_enabled = false\n")
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\necho \"$1\" >> {tmp_path / 'browser.log'}\n")
    browser.chmod(0o755)
    return {**os.environ, **env, **desktop.env, "KIMI_TRAY_CONFIG": str(config),
            "BROWSER": str(browser), "PYSTRAY_BACKEND": "gtk"}


class Tray:
    def __init__(self, env: dict[str, str], desktop: Desktop, log: Path) -> None:
        self.desktop = desktop
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "-v"], env=env, cwd=ROOT,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.started = time.monotonic()
        if not wait_for(lambda: desktop.icon_geometry() is not None, timeout=15):
            self.stop()  # a failed start must not leave a tray running after the test
            raise AssertionError(f"no tray icon within 15 s:\n{self.output()}")
        self.visible_after = time.monotonic() - self.started

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def geometry(self) -> tuple[int, int, int, int]:
        geometry = self.desktop.icon_geometry()
        assert geometry is not None
        return geometry

    def state(self, shot: Path) -> str:
        """Which state's colour dominates the docked icon's pixels in a real screenshot."""
        x, y, w, h = self.geometry()
        self.desktop.screenshot(shot)
        raw = Image.open(shot).convert("RGB").crop((x, y, x + w, y + h)).tobytes()
        counts = dict.fromkeys(COLOURS, 0)
        for pixel in zip(raw[0::3], raw[1::3], raw[2::3], strict=True):
            for name, colour in COLOURS.items():
                if sum(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 60:
                    counts[name] += 1
        return max(counts, key=counts.get) if max(counts.values()) > 40 else "none"

    def wait_state(self, expected: str, shot: Path, timeout: float = 20) -> str:
        seen = ""

        def check() -> bool:
            nonlocal seen
            seen = self.state(shot)
            return seen == expected

        wait_for(check, timeout=timeout, interval=0.3)
        return seen

    def menu(self, downs: int, shot: Path | None = None) -> None:
        """Right-click the icon, move down to the n-th enabled item, press Return."""
        x, y, w, h = self.geometry()
        self.desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"])
        time.sleep(0.8)
        for _ in range(downs):
            self.desktop.run(["xdotool", "key", "Down"])
            time.sleep(0.1)
        if shot is not None:
            self.desktop.screenshot(shot)
        self.desktop.run(["xdotool", "key", "Return"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def tray_factory(tray_env, desktop, tmp_path) -> Iterator:
    trays: list[Tray] = []

    def start() -> Tray:
        tray = Tray(tray_env, desktop, tmp_path / f"tray{len(trays)}.log")
        trays.append(tray)
        return tray

    yield start
    for tray in trays:
        tray.stop()


def crop_panel(shot: Path, out: Path, box=(624, 0, 1024, 250)) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    Image.open(shot).crop(box).save(out)


def test_icon_docks_green_and_turns_red_when_the_token_expires(tray_factory, home, oauth_server,
                                                                 desktop, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = tray_factory()
    shot = tmp_path / "fresh.png"
    assert tray.wait_state("fresh", shot) == "fresh"
    crop_panel(shot, SHOTS / "tray-fresh.png", (784, 0, 1024, 48))
    # The server goes down and another program leaves a token that is about to run out.
    oauth_server.fail_always("503")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 6)
    assert tray.wait_state("expired", tmp_path / "expired.png", timeout=30) == "expired"
    assert wait_for(lambda: "Kimi token renewal failing" in desktop.notifications(), timeout=10)
    oauth_server.clear_faults()
    assert "Traceback" not in tray.output()


def test_dead_refresh_token_notifies_once_and_login_from_the_menu_fixes_it(
        tray_factory, home, oauth_server: FakeKimiOAuth, desktop, tmp_path, env) -> None:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 200)  # due for renewal
    oauth_server.revoke_all()
    tray = tray_factory()
    shot = tmp_path / "login.png"
    assert tray.wait_state("needs_login", shot) == "needs_login"
    assert wait_for(lambda: "Kimi login needed" in desktop.notifications(), timeout=10)
    crop_panel(shot, SHOTS / "tray-needs-login.png", (784, 0, 1024, 48))
    time.sleep(2)
    assert desktop.notifications().count("Kimi login needed") == 1, "once per episode"

    oauth_server.device_script = ["pending", "slow_down", "pending", "ok"]
    tray.menu(downs=2, shot=tmp_path / "menu-login.png")  # Renew now, Log in...
    crop_panel(tmp_path / "menu-login.png", SHOTS / "tray-menu-login.png")
    assert wait_for(lambda: (tmp_path / "browser.log").exists(), timeout=10), tray.output()
    url = (tmp_path / "browser.log").read_text().strip()
    assert url.startswith(oauth_server.url + "/device?user_code=CODE-")
    assert tray.wait_state("fresh", tmp_path / "after.png", timeout=30) == "fresh"
    assert wait_for(lambda: "Kimi login done" in desktop.notifications(), timeout=10)
    new = read_json(kimi_file(home))
    assert new["refresh_token"] in oauth_server.valid_refresh
    notifications = desktop.notifications()
    for secret in (tokens["refresh_token"], new["refresh_token"], new["access_token"]):
        assert secret not in notifications and secret not in tray.output()


def test_menu_renew_now_start_on_login_and_single_instance(tray_factory, home, oauth_server,
                                                           desktop, tray_env, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = tray_factory()
    assert wait_for(lambda: "OpenClaw in sync" in desktop.windows(), timeout=20), tray.output()
    before = oauth_server.successful_refreshes
    tray.menu(downs=1, shot=tmp_path / "menu.png")  # Renew now
    crop_panel(tmp_path / "menu.png", SHOTS / "tray-menu.png")
    assert wait_for(lambda: oauth_server.successful_refreshes == before + 1, timeout=10)

    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    assert not entry.exists()
    tray.menu(downs=4)  # Renew now, Restart OpenClaw gateway, Open log, Start on login
    assert wait_for(entry.exists, timeout=5)
    if have("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    tray.menu(downs=4)
    assert wait_for(lambda: not entry.exists(), timeout=5), "unchecking removes the entry"

    second = subprocess.run([sys.executable, "-m", "kimi_tray"], env=tray_env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and "already running" in second.stdout
    tray.menu(downs=5)  # Quit
    assert tray.proc.wait(10) == 0


def test_no_display_points_at_the_daemon(env) -> None:
    clean = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-m", "kimi_tray"], env=clean, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no graphical session" in result.stderr and "kimi-tray daemon" in result.stderr
    assert "Traceback" not in result.stderr


def test_menu_less_fallback_docks_and_a_click_renews(tray_env, home, oauth_server, desktop,
                                                     tmp_path) -> None:
    """Without PyGObject pystray's xorg backend has no menu: a plain click runs Renew now."""
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = Tray({**tray_env, "PYSTRAY_BACKEND": "xorg"}, desktop, tmp_path / "xorg.log")
    try:
        assert tray.wait_state("fresh", tmp_path / "xorg.png") == "fresh"
        before = oauth_server.successful_refreshes
        for _attempt in range(3):  # the panel may still be laying out its icons: click again
            x, y, w, h = tray.geometry()
            desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "1"])
            if wait_for(lambda: oauth_server.successful_refreshes > before, timeout=5):
                break
        assert oauth_server.successful_refreshes == before + 1, tray.output()
    finally:
        tray.stop()
