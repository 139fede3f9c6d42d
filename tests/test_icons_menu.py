"""Icon pixels and the menu model, from a Status, without a display."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kimi_tray.core.health import Health, Status, health_for
from kimi_tray.ui.icons import COLOURS, draw_icon
from kimi_tray.ui.menu import build_menu
from tests.support.icon_probe import ring_fraction_at, status_for_preview


def dominant(image) -> tuple[int, int, int]:
    raw = image.convert("RGBA").tobytes()
    pixels = zip(raw[0::4], raw[1::4], raw[2::4], raw[3::4], strict=True)
    opaque = [p[:3] for p in pixels if p[3] > 250 and min(p[:3]) < 200]
    return max(set(opaque), key=opaque.count)


@pytest.mark.parametrize("health", list(Health))
@pytest.mark.parametrize("size", [16, 22, 32, 64, 128])
def test_colour_by_health_at_every_size(health: Health, size: int) -> None:
    image = draw_icon(status_for_preview(health, 0.8 if health.is_ok else 0.05), size)
    assert image.size == (size, size)
    assert dominant(image) == COLOURS[health.value]


def test_waiting_for_login_is_blue() -> None:
    status = replace(status_for_preview(Health.NEEDS_LOGIN), login_in_progress=True)
    assert dominant(draw_icon(status)) == COLOURS["waiting"]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 1.0])
def test_ring_shows_the_share_of_lifetime_left(fraction: float) -> None:
    measured = ring_fraction_at(draw_icon(status_for_preview(Health.FRESH, fraction), 64))
    assert measured == pytest.approx(fraction, abs=0.03)


def test_shapes_differ_without_colour() -> None:
    """Login-needed and error must read on a monochrome panel: compare the alpha masks."""
    masks = {h: draw_icon(status_for_preview(h, 0.0), 32).getchannel("A").point(lambda a: a > 128 and 255)
             for h in (Health.EXPIRED, Health.NEEDS_LOGIN, Health.ERROR)}
    masks[Health.FRESH] = draw_icon(status_for_preview(Health.FRESH, 0.8), 32).getchannel("A").point(
        lambda a: a > 128 and 255)
    shapes = {bytes(mask.tobytes()) for mask in masks.values()}
    assert len(shapes) == 4


def test_health_thresholds() -> None:
    assert health_for(600, 900) is Health.FRESH
    assert health_for(449, 900) is Health.AGING
    assert health_for(119, 900) is Health.EXPIRING
    assert health_for(0, 900) is Health.EXPIRED
    assert health_for(350, 3600) is Health.AGING  # half of an hour-long token


def test_summary_reads_like_a_sentence() -> None:
    now = 1_800_000_000.0
    status = Status(Health.FRESH, now, expires_at=now + 660, lifetime=900, last_renewal=now - 240,
                    openclaw="in_sync")
    assert status.summary().startswith("Kimi: 11 min left, renewed ")
    assert status.summary().endswith(", OpenClaw in sync")


def keys(entries) -> dict:
    return {e.key: e for e in entries}


def test_menu_model_when_fresh() -> None:
    menu = keys(build_menu(status_for_preview(Health.FRESH), autostart_on=True, openclaw_on=True))
    assert list(menu) == ["status", "renew", "login", "restart", "open_log", "autostart", "quit"]
    assert not menu["status"].enabled and menu["status"].label.startswith("Kimi: ")
    assert menu["renew"].enabled and menu["renew"].default
    assert not menu["login"].enabled
    assert menu["autostart"].checked is True
    assert menu["restart"].enabled


def test_menu_model_when_login_needed_and_waiting() -> None:
    status = status_for_preview(Health.NEEDS_LOGIN, 0)
    menu = keys(build_menu(status, autostart_on=False, openclaw_on=False))
    assert menu["login"].enabled and menu["login"].default and not menu["renew"].default
    assert menu["autostart"].checked is False and not menu["restart"].enabled
    waiting = keys(build_menu(replace(status, login_in_progress=True), False, True))
    assert "login" not in waiting and "cancel_login" in waiting
    assert not waiting["renew"].enabled
    renewing = keys(build_menu(replace(status_for_preview(Health.AGING), renewing=True), False, True))
    assert not renewing["renew"].enabled
