"""The quota in the menu model, the tooltip and the icon (no display needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from kimi_tray.core.health import Health
from kimi_tray.core.usage import Usage, UsageWindow
from kimi_tray.ui.icons import COLOURS, draw_icon
from kimi_tray.ui.menu import build_menu, tooltip, usage_entries
from tests.conftest import ROOT
from tests.support.icon_probe import quota_fill_at, ring_fraction_at, status_for_preview


def with_usage(used_5h: float, age: float = 10, error: str = "", health: Health = Health.FRESH):
    status = status_for_preview(health, 0.7)
    usage = Usage("Intermediate", status.now - age,
                  (UsageWindow("Week", 512, 2048, 1536, status.now + 5 * 86400),
                   UsageWindow("5 h", used_5h, 200, 200 - used_5h, status.now + 7800)),
                  error=error, stale_after=360)
    return dataclasses.replace(status, usage=usage)


def test_menu_has_a_line_per_window_then_the_age_live_when_fresh() -> None:
    status = with_usage(50)
    entries = build_menu(status, autostart_on=False, openclaw_on=True)
    keys = [e.key for e in entries]
    assert keys[:5] == ["status", "usage_0", "usage_1", "usage_age", "renew"]
    assert entries[0].label.endswith("(plan Intermediate)")
    assert entries[1].label.startswith("Week: 25 % used, resets ") and entries[1].enabled
    assert entries[2].label == "5 h: 25 % used, resets in 2 h 10 min" and entries[2].enabled
    assert entries[3].label.startswith("as of ") and entries[3].enabled


def test_stale_or_failed_numbers_are_greyed_with_their_age() -> None:
    old = usage_entries(with_usage(50, age=900))
    assert not any(e.enabled for e in old) and old[-1].label.endswith("(15 min ago)")
    failed = usage_entries(with_usage(50, age=30, error="the usage server is busy or failing (HTTP 500)"))
    assert not any(e.enabled for e in failed)
    assert "could not update: the usage server is busy or failing (HTTP 500)" in failed[-1].label
    assert usage_entries(status_for_preview(Health.FRESH)) == [], "no usage, no lines"


def test_tooltip_names_the_most_constrained_window() -> None:
    assert tooltip(with_usage(170)).endswith("; 5 h: 85 % used")
    assert "(as of " in tooltip(with_usage(170, age=900))
    assert tooltip(status_for_preview(Health.FRESH)) == status_for_preview(Health.FRESH).summary()


def test_icon_quota_bar_keeps_the_tokens_colour_shape_and_ring() -> None:
    plain = draw_icon(status_for_preview(Health.FRESH, 0.7), 64)
    for used, share in ((0, 0.25), (50, 0.25), (170, 0.85), (200, 1.0)):  # 0: the week's 25 %
        image = draw_icon(with_usage(used), 64)
        assert abs(quota_fill_at(image) - share) < 0.06, (used, quota_fill_at(image))
        assert image.getpixel((32, 32))[:3] == COLOURS["fresh"], "the disc keeps its colour"
        assert abs(ring_fraction_at(image) - ring_fraction_at(plain)) < 0.02, "the ring is untouched"
    assert plain.getpixel((int(64 * 0.9), 32))[:3] == COLOURS["fresh"], "no bar without usage"
    hot = draw_icon(with_usage(196), 64).getpixel((60, 40))[:3]
    stale = draw_icon(with_usage(196, age=900), 64).getpixel((60, 40))[:3]
    assert hot[0] > 180 and hot[1] < 80, "red above 95 %"
    assert stale[0] == stale[1] == stale[2], "grey when stale"
    login = draw_icon(dataclasses.replace(with_usage(50), health=Health.NEEDS_LOGIN), 64)
    assert login.getpixel((14, 32))[:3] == COLOURS["needs_login"], "other shapes keep theirs"
    assert abs(quota_fill_at(login) - 0.25) < 0.06


MENU_ORDER_SCRIPT = """
import dataclasses, sys
sys.path.insert(0, sys.argv[1])
from kimi_tray.platform.autostart.xdg import XdgAutostart
from kimi_tray.core.config import load_settings
from kimi_tray.engine.scheduler import Engine
from kimi_tray.core.health import Health
from kimi_tray.ui.notify import LogNotifier
from kimi_tray.ui.tray import TrayApp
from tests.test_usage_ui import with_usage

settings = load_settings()
app = TrayApp(Engine(settings).handle(), settings, XdgAutostart(), LogNotifier(), None, "gtk",
              config_error="Unknown key 'x'.")
app._status = with_usage(170, error="the usage server is busy or failing (HTTP 500)",
                         health=Health.EXPIRED)
for item in app.icon.menu.items:
    if item.visible:
        print(app.entries()[[e.label for e in app.entries()].index(item.text)].key)
"""


@pytest.mark.desktop
def test_the_tray_menu_shows_its_lines_in_the_order_the_menu_model_gives(env, desktop) -> None:
    """The real pystray menu, not just the model: what to do and the config error sit right under
    the status line, above the quota lines (as the README says)."""
    status = with_usage(170, error="the usage server is busy or failing (HTTP 500)", health=Health.EXPIRED)
    expected = [e.key for e in build_menu(status, False, True, ("Config error",))]
    assert expected[:3] == ["status", "advice", "note0"], expected
    result = subprocess.run([sys.executable, "-c", MENU_ORDER_SCRIPT, str(ROOT)],
                            env={**env, **desktop.env, "PYSTRAY_BACKEND": "gtk"}, capture_output=True,
                            text=True, timeout=60, cwd=str(ROOT))
    assert result.returncode == 0, result.stderr
    shown = result.stdout.split()
    assert [key for key in shown if key != "autostart"] == [k for k in expected if k != "autostart"], shown


def test_more_windows_than_menu_lines_keep_the_most_constrained_and_say_how_many_are_left() -> None:
    status = status_for_preview(Health.FRESH, 0.7)
    windows = tuple(UsageWindow(f"{d} d", 10 * d, 1000, 1000 - 10 * d, None) for d in range(1, 8))
    windows += (UsageWindow("5 h", 190, 200, 10, None),)  # the one about to run out comes last
    entries = usage_entries(dataclasses.replace(status, usage=Usage("", status.now, windows)))
    labels = [e.label for e in entries]
    assert len(entries) <= 5, labels
    assert "5 h: 95 % used" in labels, "the most constrained window is never left out"
    assert labels[-2] == "5 more windows: kimi-tray status lists them all", labels
    assert labels[-1].startswith("as of ")
