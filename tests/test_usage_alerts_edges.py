"""Quota notifications at their edges: each threshold on both sides, episodes, what is remembered.

Real parts: the usage store's file in tmp_path; the notifier's "screen" is a list.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.core.health import Health, Status
from kimi_tray.core.usage import Usage, UsageWindow
from kimi_tray.stores.usage_store import UsageStore
from kimi_tray.ui.usage_alerts import UsageAlerts, alerts_from_settings
from kimi_tray.ui.usage_text import reset_clock, window_line

NOW = 1_800_000_000.0


class Screen:
    name = "record"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, title: str, message: str) -> None:
        self.sent.append((title, message))

    @property
    def titles(self) -> list[str]:
        return [title for title, _ in self.sent]


def window(used: float, limit: float = 200, name: str = "5 h", resets: float | None = NOW + 3600,
           remaining: float | None = None) -> UsageWindow:
    return UsageWindow(name, used, limit, limit - used if remaining is None else remaining, resets)


def usage(*windows: UsageWindow, at: float = NOW) -> Usage:
    return Usage("Intermediate", at, windows)


@pytest.fixture
def store(tmp_path: Path) -> UsageStore:
    return UsageStore(tmp_path)


@pytest.mark.parametrize(("used", "titles"), [
    (159, []),                                     # 79.5 %: just below 80
    (160, ["Kimi quota 80 % used"]),               # exactly 80 %
    (189, ["Kimi quota 80 % used"]),               # 94.5 %
    (190, ["Kimi quota 95 % used"]),               # exactly 95 %: the highest crossed, once
])
def test_each_threshold_on_both_sides_of_its_edge(store: UsageStore, used: float, titles: list[str]) -> None:
    screen = Screen()
    UsageAlerts(screen, store, (80, 95)).check(usage(window(used)), NOW)
    assert screen.titles == titles
    if titles:
        assert screen.sent[0][1] == window_line(window(used), NOW) + "."


def test_thresholds_are_sorted_and_fractional_ones_keep_their_digits(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store, (95, 50.5))
    assert alerts.thresholds == [50.5, 95.0]
    alerts.check(usage(window(101)), NOW)  # 50.5 %
    assert screen.titles == ["Kimi quota 50.5 % used"]


def test_what_is_remembered_on_disk_per_window(store: UsageStore) -> None:
    screen = Screen()
    UsageAlerts(screen, store, (80, 95)).check(usage(window(192), window(20, name="Week")), NOW)
    assert store.load_alerts() == {"5 h": {"levels": [80.0, 95.0], "exhausted": False},
                                   "Week": {"levels": [], "exhausted": False}}


def test_nothing_changed_writes_nothing(store: UsageStore) -> None:
    alerts = UsageAlerts(Screen(), store, (80, 95))
    alerts.check(usage(window(170)), NOW)
    written = store.path.stat().st_ino  # each save is a new file renamed into place
    alerts.check(usage(window(171)), NOW)
    alerts.check(usage(window(4), window(4, name="Week")), NOW)
    assert store.path.stat().st_ino != written, "a new episode and a new window are saved"
    written = store.path.stat().st_ino
    alerts.check(usage(window(5), window(6, name="Week")), NOW)
    assert store.path.stat().st_ino == written


def test_the_same_level_again_is_no_new_notice(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store, (80, 95))
    alerts.check(usage(window(160)), NOW)  # exactly 80 %
    alerts.check(usage(window(160)), NOW)
    alerts.check(usage(window(192)), NOW)
    alerts.check(usage(window(192)), NOW)
    alerts.check(usage(window(170)), NOW)
    assert screen.titles == ["Kimi quota 80 % used", "Kimi quota 95 % used"]
    assert store.load_alerts()["5 h"]["levels"] == [80.0]


def test_a_window_without_a_limit_does_not_hide_the_next_one(store: UsageStore) -> None:
    screen = Screen()
    UsageAlerts(screen, store, (80,)).check(usage(UsageWindow("odd", 5, None, None, None), window(170)), NOW)
    assert screen.titles == ["Kimi quota 80 % used"]


def test_levels_of_other_thresholds_remembered_are_kept_when_exhausted(store: UsageStore) -> None:
    store.save_alerts({"5 h": {"levels": [50.0], "exhausted": False}})
    UsageAlerts(Screen(), store, (80, 95)).check(usage(window(200)), NOW)
    assert store.load_alerts()["5 h"] == {"levels": [50.0, 80.0, 95.0], "exhausted": True}


def test_each_notice_is_logged_as_shown(store: UsageStore, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.ui.usage_alerts")
    UsageAlerts(Screen(), store, (80,)).check(usage(window(170)), NOW)
    assert [r.getMessage() for r in caplog.records] == [
        f"Kimi quota 80 % used: {window_line(window(170), NOW)}."]


def test_back_is_not_said_unless_asked(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store)
    alerts.check(usage(window(200)), NOW)
    alerts.check(usage(window(4)), NOW)
    assert screen.titles == ["Kimi quota exhausted"]


def test_dropping_below_a_threshold_starts_a_new_episode(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store, (80, 95))
    alerts.check(usage(window(190)), NOW)
    alerts.check(usage(window(170)), NOW)  # 85 %: below 95 only
    assert store.load_alerts()["5 h"]["levels"] == [80.0]
    alerts.check(usage(window(190)), NOW)
    assert screen.titles == ["Kimi quota 95 % used", "Kimi quota 95 % used"]
    alerts.check(usage(window(159.9)), NOW)  # below both
    alerts.check(usage(window(160)), NOW)
    assert screen.titles[-1] == "Kimi quota 80 % used" and len(screen.sent) == 3


def test_exhausted_notifies_once_with_the_reset_time_and_covers_every_threshold(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store, (80, 95))
    alerts.check(usage(window(200)), NOW)
    assert screen.sent == [("Kimi quota exhausted",
                            f"The 5 h quota is used up; it resets at {reset_clock(NOW + 3600, NOW)}.")]
    assert store.load_alerts()["5 h"] == {"levels": [80.0, 95.0], "exhausted": True}
    alerts.check(usage(window(200)), NOW)
    assert len(screen.sent) == 1


def test_exhausted_by_remaining_while_under_every_threshold(store: UsageStore) -> None:
    """The server says none is left although `used` is low: exhausted all the same, and no
    threshold notice follows it."""
    screen = Screen()
    UsageAlerts(screen, store, (80, 95)).check(usage(window(10, remaining=0)), NOW)
    assert screen.titles == ["Kimi quota exhausted"]
    assert store.load_alerts()["5 h"] == {"levels": [80.0, 95.0], "exhausted": True}


def test_exhausted_notice_can_be_switched_off_then_thresholds_speak(store: UsageStore) -> None:
    screen = Screen()
    UsageAlerts(screen, store, (80, 95), exhausted=False).check(usage(window(200)), NOW)
    assert screen.titles == ["Kimi quota 95 % used"]


def test_back_after_exhaustion_only_when_asked(tmp_path: Path) -> None:
    quiet, loud = Screen(), Screen()
    for screen, back, where in ((quiet, False, "q"), (loud, True, "l")):
        alerts = UsageAlerts(screen, UsageStore(tmp_path / where), (80, 95), back=back)
        alerts.check(usage(window(200)), NOW)
        alerts.check(usage(window(4)), NOW)
        alerts.check(usage(window(4)), NOW)  # back is said once
    assert quiet.titles == ["Kimi quota exhausted"]
    assert loud.sent[1:] == [("Kimi quota is back",
                              f"The 5 h quota has reset: {window_line(window(4), NOW)}.")]


def test_windows_without_a_limit_are_skipped(store: UsageStore) -> None:
    screen = Screen()
    UsageAlerts(screen, store, (80,)).check(usage(UsageWindow("odd", 500, None, None, None)), NOW)
    assert screen.sent == [] and store.load_alerts() == {}


@pytest.mark.parametrize("remembered", [
    "not a dict", {"levels": "80"}, {"levels": [True, "95", None], "exhausted": "yes"},
])
def test_memory_in_another_shape_is_treated_as_nothing_sent(store: UsageStore, remembered: object) -> None:
    store.save_alerts({"5 h": remembered})  # type: ignore[dict-item]
    screen = Screen()
    UsageAlerts(screen, store, (80, 95)).check(usage(window(192)), NOW)
    assert screen.titles == ["Kimi quota 95 % used"]
    assert store.load_alerts()["5 h"] == {"levels": [80.0, 95.0], "exhausted": False}


def test_integer_levels_on_disk_count_as_sent(store: UsageStore) -> None:
    store.save_alerts({"5 h": {"levels": [80, 95], "exhausted": False}})
    screen = Screen()
    UsageAlerts(screen, store, (80, 95)).check(usage(window(192)), NOW)
    assert screen.sent == []
    assert json.loads(store.path.read_text())["alerts"]["5 h"]["levels"] == [80, 95]


def test_exhausted_remembered_from_a_restart_is_not_repeated(store: UsageStore) -> None:
    store.save_alerts({"5 h": {"levels": [80.0, 95.0], "exhausted": True}})
    screen = Screen()
    UsageAlerts(screen, store, (80, 95), back=True).check(usage(window(200)), NOW)
    assert screen.sent == []


def test_on_status_judges_each_fetch_once_and_never_stale_numbers(store: UsageStore) -> None:
    screen = Screen()
    alerts = UsageAlerts(screen, store, (80,))
    alerts.on_status(Status(Health.FRESH, NOW))  # no usage yet
    fetched = usage(window(170))
    alerts.on_status(Status(Health.FRESH, NOW + 360, usage=fetched))  # 360 s old: still fresh
    assert screen.titles == ["Kimi quota 80 % used"]
    store.save_alerts({})  # forget on disk: only the fetch time stops a second notice
    alerts.on_status(Status(Health.FRESH, NOW + 10, usage=fetched))
    assert len(screen.sent) == 1
    stale = Screen()
    UsageAlerts(stale, UsageStore(store.path.parent / "other"), (80,)).on_status(
        Status(Health.FRESH, NOW + 361, usage=fetched))
    assert stale.sent == []


def test_alerts_from_settings_take_the_users_choices(settings: Settings, store: UsageStore) -> None:
    screen = Screen()
    chosen = settings.with_overrides(usage_thresholds=(50.0, 90.0), usage_notify_exhausted=False,
                                     usage_notify_back=True)
    alerts = alerts_from_settings(chosen, screen, store)
    assert alerts.thresholds == [50.0, 90.0] and alerts.exhausted is False and alerts.back is True
    assert alerts.notifier is screen and alerts.store is store
    default = alerts_from_settings(settings, screen, store)
    assert default.exhausted is settings.usage_notify_exhausted and default.back is settings.usage_notify_back
