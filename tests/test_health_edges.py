"""Health and refresh timing at their edges, for short and long token lifetimes alike."""

from __future__ import annotations

import time

import pytest

from kimi_tray.core.health import (
    DEFAULT_LIFETIME,
    EXPIRING_BELOW,
    MIN_REFRESH_GAP,
    OPENCLAW_WORDS,
    Health,
    Status,
    format_duration,
    health_for,
    min_refresh_gap,
    refresh_due_at,
    refresh_margin,
)

# lifetime -> (refresh margin, least gap between refreshes)
LIFETIMES = {60.0: (30.0, 15.0), 300.0: (150.0, 75.0), 900.0: (450.0, 225.0), 3600.0: (1800.0, 900.0)}


@pytest.mark.parametrize(("lifetime", "margin", "gap"), [(k, *v) for k, v in LIFETIMES.items()])
def test_margin_gap_and_due_time_follow_the_lifetime(lifetime: float, margin: float, gap: float) -> None:
    assert refresh_margin(lifetime) == margin
    assert min_refresh_gap(lifetime) == gap
    assert refresh_due_at(10_000.0, lifetime) == 10_000.0 - margin
    # No lifetime sees more than 4 refreshes.
    assert lifetime / min_refresh_gap(lifetime) <= 4


@pytest.mark.parametrize("unknown", [None, 0.0, -60.0])
def test_unknown_lifetime_counts_as_the_default(unknown: float | None) -> None:
    assert refresh_margin(unknown) == DEFAULT_LIFETIME / 2 == 450.0
    assert min_refresh_gap(unknown) == DEFAULT_LIFETIME / 4
    assert refresh_due_at(1000.0, unknown) == 550.0


@pytest.mark.parametrize(("lifetime", "gap"), [(20.0, MIN_REFRESH_GAP), (40.0, 10.0), (44.0, 11.0)])
def test_the_gap_never_goes_below_ten_seconds(lifetime: float, gap: float) -> None:
    assert min_refresh_gap(lifetime) == gap


@pytest.mark.parametrize("lifetime", [300.0, 900.0, 3600.0])
def test_health_on_both_sides_of_every_edge(lifetime: float) -> None:
    margin = refresh_margin(lifetime)
    assert health_for(-1.0, lifetime) is Health.EXPIRED
    assert health_for(0.0, lifetime) is Health.EXPIRED
    assert health_for(0.5, lifetime) is Health.EXPIRING
    assert health_for(1.0, lifetime) is Health.EXPIRING
    assert health_for(EXPIRING_BELOW - 0.5, lifetime) is Health.EXPIRING
    assert health_for(EXPIRING_BELOW, lifetime) is Health.AGING
    assert health_for(margin - 0.5, lifetime) is Health.AGING
    assert health_for(margin, lifetime) is Health.FRESH
    assert health_for(margin + 0.5, lifetime) is Health.FRESH
    assert health_for(lifetime, lifetime) is Health.FRESH


def test_a_one_minute_token_is_expiring_its_whole_life() -> None:
    for left in (0.5, 1.0, 30.0, 59.0, 60.0):
        assert health_for(left, 60.0) is Health.EXPIRING
    assert health_for(0.0, 60.0) is Health.EXPIRED


def test_health_without_a_lifetime_uses_the_default_margin() -> None:
    assert health_for(449.0, None) is Health.AGING
    assert health_for(450.0, None) is Health.FRESH
    assert health_for(449.0, 0.0) is Health.AGING


def test_only_fresh_and_aging_are_ok() -> None:
    assert {h for h in Health if h.is_ok} == {Health.FRESH, Health.AGING}


def test_seconds_and_fraction_left() -> None:
    assert Status(Health.FRESH, now=100.0).seconds_left is None
    assert Status(Health.FRESH, now=100.0).fraction_left == 0.0
    status = Status(Health.AGING, now=100.0, expires_at=400.0, lifetime=600.0)
    assert status.seconds_left == 300.0 and status.fraction_left == 0.5
    assert Status(Health.AGING, now=100.0, expires_at=325.0).fraction_left == 0.25, "default 900 s"
    assert Status(Health.FRESH, now=0.0, expires_at=2000.0, lifetime=900.0).fraction_left == 1.0
    assert Status(Health.EXPIRED, now=100.0, expires_at=100.0, lifetime=900.0).fraction_left == 0.0
    assert Status(Health.EXPIRED, now=100.0, expires_at=50.0, lifetime=900.0).fraction_left == 0.0


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "0 s"), (0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h 0 min"),
    (3660, "1 h 1 min"), (2 * 86400 - 1, "47 h 59 min"), (2 * 86400, "2 days"), (9 * 86400 + 5, "9 days"),
])
def test_format_duration_edges(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_summary_heads() -> None:
    now = 1_000.0
    assert Status(Health.FRESH, now=now, expires_at=now + 660).summary() == \
        "Kimi: 11 min left, OpenClaw not checked yet"
    assert Status(Health.EXPIRED, now=now, expires_at=now - 1).summary() == \
        "Kimi: token expired, OpenClaw not checked yet"
    assert Status(Health.NEEDS_LOGIN, now=now).summary().startswith("Kimi: login needed, ")
    assert Status(Health.ERROR, now=now, message="disk full").summary().startswith("Kimi: disk full, ")
    assert Status(Health.ERROR, now=now).summary().startswith("Kimi: error, ")
    assert Status(Health.NEEDS_LOGIN, now=now, login_in_progress=True).summary().startswith(
        "Kimi: waiting for the browser login, ")
    assert Status(Health.FRESH, now=now).summary().startswith("Kimi: 0 s left, ")


def test_summary_renewal_time_and_openclaw_words() -> None:
    renewed = 1_700_000_000.0
    status = Status(Health.FRESH, now=renewed, expires_at=renewed + 900, last_renewal=renewed,
                    openclaw="in_sync")
    clock = time.strftime("%H:%M", time.localtime(renewed))
    assert status.summary() == f"Kimi: 15 min left, renewed {clock}, OpenClaw in sync"
    for state, words in OPENCLAW_WORDS.items():
        assert Status(Health.FRESH, now=0.0, openclaw=state).summary().endswith(", " + words)
    assert Status(Health.FRESH, now=0.0, openclaw="odd").summary().endswith(", OpenClaw odd")


def test_summary_shows_the_openclaw_detail_only_on_error() -> None:
    failed = Status(Health.FRESH, now=0.0, openclaw="error", openclaw_detail="gateway down.")
    assert failed.summary().endswith(", OpenClaw sync failed (gateway down)")
    assert Status(Health.FRESH, now=0.0, openclaw="error").summary().endswith(", OpenClaw sync failed")
    stale = Status(Health.FRESH, now=0.0, openclaw="stale", openclaw_detail="old token")
    assert stale.summary().endswith(", OpenClaw stale")


def test_a_one_second_token_keeps_its_own_lifetime() -> None:
    # Lifetimes below the 10 s gap are real lifetimes, not "unknown".
    assert refresh_margin(1.0) == 0.5 and min_refresh_gap(1.0) == MIN_REFRESH_GAP
    assert refresh_margin(0.5) == 0.25 and min_refresh_gap(0.5) == MIN_REFRESH_GAP
