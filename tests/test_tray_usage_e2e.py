"""The quota in the real tray under Xvfb: menu lines, greyed when stale, tooltip, notifications on
D-Bus counted once across restarts, and a screenshot of the menu for the README."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, kimi_file, require, wait_for, write_credentials
from tests.support.desktop import Desktop, missing_tools
from tests.support.usage_server import FakeKimiUsage, kimi_reply
from tests.test_tray_e2e import SHOTS, Tray

pytestmark = pytest.mark.desktop


@pytest.fixture
def tall_desktop(tmp_path: Path) -> Iterator[Desktop]:
    """Room below the panel for the whole menu (status, usage lines, actions)."""
    require(not missing_tools(), f"the desktop test tools ({', '.join(missing_tools())})")
    directory = tmp_path / "desktop"
    directory.mkdir()
    session = Desktop(directory).start(height=520)
    yield session
    session.stop()


def open_menu_and_shoot(tray: Tray, desktop: Desktop, shot: Path) -> Image.Image:
    x, y, w, h = tray.geometry()
    desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"])
    time.sleep(1.0)
    desktop.screenshot(shot)
    desktop.run(["xdotool", "key", "Escape"])
    time.sleep(0.3)
    return Image.open(shot).convert("RGB")


def dark_text_pixels(image: Image.Image, below: int = 50) -> int:
    """Near-black pixels inside the menu (the white box below the panel): enabled items' text.
    Greyed (insensitive) items draw lighter text, so stale lines add none."""
    area = image.crop((0, below, image.width, image.height))
    light = area.point(lambda v: 255 if v >= 245 else 0).convert("L").point(lambda v: 255 if v == 255 else 0)
    box = light.getbbox()
    assert box is not None, "no menu on screen"
    menu = area.crop(box)
    raw = menu.tobytes()
    return sum(1 for i in range(0, len(raw), 3) if max(raw[i:i + 3]) < 90)


def test_usage_in_the_menu_greyed_when_stale_and_thresholds_notify_once(
        env, home, oauth_server, usage_server: FakeKimiUsage, tall_desktop: Desktop, tmp_path) -> None:
    desktop = tall_desktop
    config = tmp_path / "config.toml"
    config.write_text("poll_interval = 0.5\ntray_poll_interval = 0.5\n")
    tray_env = {**os.environ, **env, **desktop.env, "KIMI_TRAY_CONFIG": str(config),
                "PYSTRAY_BACKEND": "gtk"}
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 880)
    usage_server.reply = kimi_reply(week_used=512, window_remaining=30)  # 5 h: 85 % used

    # 1. Numbers from an hour ago, and the server failing now: shown greyed with their age.
    state = home / ".local" / "state" / "kimi-tray"
    state.mkdir(parents=True)
    old = time.time() - 3600
    (state / "usage.json").write_text(json.dumps({"last": {
        "plan": "Intermediate", "fetched_at": old, "error": "", "windows": [
            {"name": "Week", "used": 400, "limit": 2048, "remaining": 1648, "resets_at": old + 5 * 86400},
            {"name": "5 h", "used": 20, "limit": 200, "remaining": 180, "resets_at": old + 7200}]}}))
    usage_server.fail_always("500")
    stale_tray = Tray(tray_env, desktop, tmp_path / "stale.log")
    try:
        assert wait_for(lambda: usage_server.count >= 1, timeout=15), stale_tray.output()
        assert wait_for(lambda: "; Week: 20 % used (as of" in desktop.windows(), timeout=10), \
            desktop.windows()
        stale_shot = open_menu_and_shoot(stale_tray, desktop, tmp_path / "menu-stale.png")
        assert wait_for(lambda: "The menu opened with usage numbers over a minute old" in
                        stale_tray.output(), timeout=5), "opening the menu asks for new numbers"
    finally:
        stale_tray.stop()
    assert "Kimi quota" not in desktop.notifications(), "stale numbers never notify"

    # 2. The server answers: both windows within seconds of the start, live, and one notification.
    usage_server.clear_faults()
    before = usage_server.count
    started = time.monotonic()
    tray = Tray(tray_env, desktop, tmp_path / "fresh.log")
    try:
        assert wait_for(lambda: "5 h: 85 % used" in desktop.windows(), timeout=15), tray.output()
        seen_after = time.monotonic() - started
        assert usage_server.count == before + 1, (before, usage_server.requests[-3:], tray.output())
        assert wait_for(lambda: "Kimi quota 80 % used" in desktop.notifications(), timeout=10)
        fresh_shot = open_menu_and_shoot(tray, desktop, tmp_path / "menu-fresh.png")
    finally:
        tray.stop()
    # 3. A restart with the same numbers: no second notification.
    again = Tray(tray_env, desktop, tmp_path / "again.log")
    try:
        assert wait_for(lambda: usage_server.count == before + 2, timeout=15), again.output()
        time.sleep(2)
    finally:
        again.stop()
    assert desktop.notifications().count("Kimi quota 80 % used") == 1, desktop.notifications()
    assert desktop.notifications().count("Kimi quota") == 1

    menu_box = (304, 0, 1024, 320)
    SHOTS.mkdir(parents=True, exist_ok=True)
    fresh_shot.crop(menu_box).save(SHOTS / "tray-menu-usage.png")
    stale_shot.crop(menu_box).save(SHOTS / "tray-menu-usage-stale.png")
    fresh_dark, stale_dark = dark_text_pixels(fresh_shot), dark_text_pixels(stale_shot)
    assert fresh_dark > stale_dark * 1.3, f"live lines dark, stale ones greyed ({fresh_dark}, {stale_dark})"
    for log in (tmp_path / "stale.log", tmp_path / "fresh.log", tmp_path / "again.log"):
        text = log.read_text()
        assert "Traceback" not in text and tokens["access_token"] not in text
    assert seen_after < 15
    assert ROOT.exists()
