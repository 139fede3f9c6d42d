"""The quota model, its file and the fetch policy at their edges (pure parts: no server needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kimi_tray.engine.usage_policy import (
    BACKOFF_CAP,
    MIN_GAP,
    RESET_SLACK,
    RETRY_AFTER_CAP,
    FetchPolicy,
    usage_backoff,
)
from kimi_tray.kimi.usage_model import (
    LAST_EPOCH,
    NAME_MAX,
    Usage,
    UsageFormatError,
    UsageWindow,
    clean_name,
    parse_time,
    parse_usages,
    plan_name,
    span_name,
    window_name,
)
from kimi_tray.stores.usage_store import UsageStore

# ----------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("used", "limit", "remaining", "fraction", "percent", "exhausted"), [
    (0, 100, None, 0.0, 0, False),
    (50, 100, None, 0.5, 50, False),
    (99.6, 100, None, 0.996, 99, False),  # rounds to 100 but is not used up: shown as 99
    (100, 100, None, 1.0, 100, True),
    (150, 100, None, 1.0, 100, True),
    (100, 100, 1, 1.0, 99, False),  # the server's remaining wins over used >= limit
    (10, 100, 0, 0.1, 10, True),
    (-5, 100, None, 0.0, 0, False),
    (5, 0, None, None, None, True),
    (5, None, None, None, None, False),
    (5, -1, 3, None, None, False),
])
def test_window_fractions_and_exhaustion(used, limit, remaining, fraction, percent, exhausted) -> None:
    window = UsageWindow("w", used, limit, remaining)
    assert window.fraction_used == (None if fraction is None else pytest.approx(fraction))
    assert window.percent_used == percent
    assert window.exhausted is exhausted


def test_most_constrained_prefers_exhausted_then_fullest() -> None:
    a, b = UsageWindow("a", 90, 100, None), UsageWindow("b", 50, 100, None)
    c = UsageWindow("c", 1, 100, 0)  # little used, but the server says nothing remains
    assert Usage(windows=(b, a)).most_constrained() is a
    assert Usage(windows=(a, c, b)).most_constrained() is c
    assert Usage(windows=(UsageWindow("x", 1, None, None),)).most_constrained() is None
    assert Usage().most_constrained() is None


def test_staleness_edges() -> None:
    fresh = Usage(fetched_at=1000.0, stale_after=60.0)
    assert not fresh.is_stale(1060.0) and fresh.is_stale(1060.5)
    assert Usage(fetched_at=None).is_stale(0.0)
    assert fresh.failed("HTTP 500", 1010.0).is_stale(1010.0), "a failed fetch marks the numbers stale"
    failed = fresh.failed("HTTP 500", 1010.0)
    assert (failed.error, failed.checked_at, failed.fetched_at) == ("HTTP 500", 1010.0, 1000.0)


def test_json_and_cache_forms_round_trip(tmp_path: Path) -> None:
    usage = Usage(plan="Intermediate", fetched_at=1000.0, error="", stale_after=300.0, checked_at=1001.0,
                  windows=(UsageWindow("Week", 10.0, 100.0, 90.0, 2000.0, 604800.0),
                           UsageWindow("5 h", 2.5, None, None, None, None)))
    assert usage.to_json(1100.0) == {
        "plan": "Intermediate", "fetched_at": 1000.0, "stale": False, "error": None,
        "windows": [{"name": "Week", "used": 10, "limit": 100, "remaining": 90, "resets_at": 2000,
                     "stale": False},
                    {"name": "5 h", "used": 2.5, "limit": None, "remaining": None, "resets_at": None,
                     "stale": False}]}
    assert isinstance(usage.to_json(0)["windows"][0]["used"], int)
    assert usage.to_json(1301.0)["stale"] is True and usage.to_json(1301.0)["windows"][0]["stale"] is True
    assert Usage(error="x").to_json(0)["plan"] is None and Usage(error="x").to_json(0)["error"] == "x"
    store = UsageStore(tmp_path / "state")
    store.save_usage(usage)
    assert store.load_usage(300.0) == usage
    assert store.load_usage(5.0).stale_after == 5.0
    text = store.path.read_text()
    assert text.startswith('{\n  "last": {') and text.endswith("}\n")


def test_a_failed_fetch_is_remembered_with_its_error(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    usage = Usage(fetched_at=5.0, windows=(UsageWindow("Week", 1.0, 2.0, 1.0),)).failed("HTTP 503", 9.0)
    store.save_usage(usage)
    loaded = store.load_usage(360.0)
    assert loaded == usage and loaded.error == "HTTP 503" and loaded.checked_at == 9.0


@pytest.mark.parametrize("cache", [
    None, [], "x", {"windows": [{"used": 1}]}, {"windows": [{"name": "w", "used": "many"}]},
    {"windows": [{"name": "w"}]}, {"windows": 5}, {"fetched_at": "later"},
])
def test_a_cache_of_the_wrong_shape_is_no_cache(cache: object) -> None:
    assert Usage.from_cache(cache, 60.0) is None


def test_cache_drops_reset_times_out_of_any_calendar() -> None:
    usage = Usage.from_cache({"windows": [
        {"name": "a", "used": 1, "resets_at": 0}, {"name": "b", "used": 1, "resets_at": LAST_EPOCH},
        {"name": "c", "used": 1, "resets_at": LAST_EPOCH + 1}, {"name": "d", "used": 1, "resets_at": -3}],
        "plan": None, "error": None}, 60.0)
    assert usage is not None and [w.resets_at for w in usage.windows] == [None, LAST_EPOCH, None, None]
    assert (usage.plan, usage.error, usage.fetched_at, usage.checked_at) == ("", "", None, None)


# ----------------------------------------------------------------------------- the usage file

def test_usage_file_keeps_both_parts_and_survives_corruption(tmp_path: Path, caplog) -> None:
    store = UsageStore(tmp_path)
    assert store.load_usage(60.0) is None and store.load_alerts() == {}
    assert not store.path.exists()
    store.save_alerts({"Week": {"level": 80}})
    store.save_usage(Usage(fetched_at=5.0, windows=(UsageWindow("Week", 1.0, 2.0, 1.0),)))
    assert store.load_alerts() == {"Week": {"level": 80}}, "saving the numbers keeps the alerts"
    assert json.loads(store.path.read_text())["alerts"] == {"Week": {"level": 80}}
    store.path.write_text(json.dumps({"alerts": ["not", "a", "dict"], "last": 3}))
    assert store.load_alerts() == {} and store.load_usage(60.0) is None
    assert store.path == tmp_path / "usage.json"
    store.path.write_text("{broken")
    with caplog.at_level(logging.WARNING):
        assert store.load_alerts() == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"Ignoring the usage file: {store.path} is not valid JSON (line 1, column 2)."]
    store.save_alerts({"x": {}})
    assert json.loads(store.path.read_text()) == {"alerts": {"x": {}}}


def test_usage_file_in_an_unwritable_place_only_warns(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        UsageStore(blocker / "state").save_alerts({})
    [record] = caplog.records
    assert record.getMessage().startswith(f"Could not save the usage file: Could not create {blocker}")


# ----------------------------------------------------------------------------- parsing

def test_weekly_and_limit_windows_with_derived_numbers() -> None:
    usage = parse_usages({
        "user": {"membershipLevel": "LEVEL_INTERMEDIATE"},
        "usage": {"limit": "100", "remaining": "40", "resetTime": "2026-12-01T00:00:00Z"},
        "limits": [
            {"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
             "detail": {"limit": 50, "used": 60}},
            {"window": {"duration": 1, "timeUnit": "TIME_UNIT_DAY"}, "limit": 10, "used": "3",
             "resetAt": 1_800_000_000_000},
            "garbage",
            {"detail": {"limit": "x", "remaining": 1}},
        ]}, stale_after=99.0, fetched_at=500.0)
    week, five, day = usage.windows
    assert (usage.plan, usage.fetched_at, usage.checked_at, usage.stale_after) == ("Intermediate", 500.0,
                                                                                  500.0, 99.0)
    assert (week.name, week.used, week.limit, week.remaining, week.length) == ("Week", 60.0, 100.0, 40.0,
                                                                               604800.0)
    assert week.resets_at == 1_796_083_200.0
    assert (five.name, five.used, five.remaining, five.length) == ("5 h", 60.0, 0.0, 18000.0)
    assert (day.name, day.used, day.remaining, day.resets_at) == ("1 d", 3.0, 7.0, 1_800_000_000.0)


def test_remaining_above_the_limit_gives_zero_used() -> None:
    [window] = parse_usages({"usage": {"limit": 10, "remaining": 15}}).windows
    assert window.used == 0.0


@pytest.mark.parametrize("body", [[], "x", {}, {"usage": "x"}, {"usage": {"limit": 5}}, {"limits": "x"},
                                  {"limits": [{"detail": []}]}])
def test_nothing_readable_is_a_format_error(body: object) -> None:
    with pytest.raises(UsageFormatError):
        parse_usages(body)


def test_windows_with_one_name_are_numbered() -> None:
    entry = {"window": {"duration": 5, "timeUnit": "TIME_UNIT_HOUR"}, "used": 1}
    names = [w.name for w in parse_usages({"limits": [entry, entry, entry, {"used": 2}]}).windows]
    assert names == ["5 h", "5 h (2)", "5 h (3)", "Limit 4"]


@pytest.mark.parametrize(("window", "expected"), [
    ({"duration": 1, "timeUnit": "TIME_UNIT_WEEK"}, ("Week", 604800.0)),
    ({"duration": 2, "timeUnit": "TIME_UNIT_WEEK"}, ("2 weeks", 1209600.0)),
    ({"duration": 7, "timeUnit": "TIME_UNIT_DAY"}, ("Week", 604800.0)),
    ({"duration": 90, "timeUnit": "TIME_UNIT_SECOND"}, ("90 s", 90.0)),
    ({"duration": "120", "timeUnit": "TIME_UNIT_SECOND"}, ("2 min", 120.0)),
    ({"duration": 366, "timeUnit": "TIME_UNIT_DAY"}, ("366 d", 366 * 86400.0)),
    ({"duration": 367, "timeUnit": "TIME_UNIT_DAY"}, ("", None)),
    ({"duration": 3, "timeUnit": "TIME_UNIT_FORTNIGHT"}, ("3 fortnight", None)),
    ({"duration": 2.5, "timeUnit": 5}, ("2.5 units", None)),
    ({"duration": 0, "timeUnit": "TIME_UNIT_DAY"}, ("", None)),
    ({"duration": -1, "timeUnit": "TIME_UNIT_DAY"}, ("", None)),
    ({"timeUnit": "TIME_UNIT_DAY"}, ("", None)),
    ("5h", ("", None)),
])
def test_window_names(window: object, expected: tuple) -> None:
    assert window_name(window) == expected


def test_span_names() -> None:
    assert [span_name(s) for s in (604800, 86400, 172800, 3600, 7200, 60, 61, 59)] == [
        "Week", "1 d", "2 d", "1 h", "2 h", "1 min", "61 s", "59 s"]


@pytest.mark.parametrize(("user", "plan"), [
    ({"membershipLevel": "LEVEL_INTERMEDIATE"}, "Intermediate"),
    ({"membershipLevel": "MEMBERSHIP_LEVEL_PRO_MAX"}, "Pro Max"),
    ({"membershipLevel": "Custom plan"}, "Custom plan"),
    ({"membershipLevel": "  "}, ""), ({"membershipLevel": 3}, ""), (None, ""), ("LEVEL_X", ""),
])
def test_plan_names(user: object, plan: str) -> None:
    assert plan_name(user) == plan


def test_clean_name_edges() -> None:
    assert clean_name("a\nb\tc\x00d") == "a b c d"
    assert clean_name("  spaced   out  ") == "spaced out"
    exact = "x" * NAME_MAX
    assert clean_name(exact) == exact
    assert clean_name(exact + "y") == "x" * (NAME_MAX - 1) + "…"
    assert clean_name("a" * 22 + " " + "b" * 5) == "a" * 22 + "…"


@pytest.mark.parametrize(("value", "epoch"), [
    ("2026-12-01T00:00:00Z", 1_796_083_200.0),
    ("2026-12-01T00:00:00z", 1_796_083_200.0),
    ("2026-12-01T00:00:00.123456789Z", 1_796_083_200.123457),
    ("2026-12-01T01:00:00+01:00", 1_796_083_200.0),
    ("2026-12-01T00:00:00", 1_796_083_200.0),
    (1_796_083_200, 1_796_083_200.0),
    ("1796083200", 1_796_083_200.0),
    (" 1796083200.5 ", 1_796_083_200.5),
    (1_796_083_200_000, 1_796_083_200.0),
    (100_000_000_000, 100_000_000_000.0),
    (100_000_000_001, 100_000_000.001),  # above 1e11: milliseconds
    (0, None), (-5, None), ("", None), ("   ", None), (None, None), ("tomorrow", None), (True, None),
    ("NaN", None), (float("nan"), None), ("9999-12-31T23:59:59Z", LAST_EPOCH),
    ("9999-12-31T23:59:59.5Z", None), (LAST_EPOCH * 1000, LAST_EPOCH), (LAST_EPOCH * 1000 + 1000, None),
])
def test_reset_times(value: object, epoch: float | None) -> None:
    result = parse_time(value)
    assert result == (None if epoch is None else pytest.approx(epoch, abs=1e-6))


# ----------------------------------------------------------------------------- the fetch policy

def test_backoff_doubles_from_a_minute_up_to_its_cap() -> None:
    assert [usage_backoff(n) for n in (0, 1, 2, 3, 7)] == [60.0, 60.0, 120.0, 240.0, BACKOFF_CAP]
    assert usage_backoff(5) == 960.0 and usage_backoff(6) == BACKOFF_CAP == 1800.0


def test_nothing_is_due_with_a_dead_token_or_nothing_to_do() -> None:
    policy = FetchPolicy(periodic=True)
    assert policy.due_at(token_ok=False) is None and not policy.is_due(1e9, token_ok=False)
    assert FetchPolicy(periodic=False).due_at(token_ok=True) is None


def test_first_periodic_fetch_is_at_once() -> None:
    assert FetchPolicy(periodic=True).due_at(True) == 0.0
    assert FetchPolicy(periodic=True).is_due(0.0, True)


def test_interval_min_gap_and_reset_slack() -> None:
    policy = FetchPolicy(interval=300.0, periodic=True)
    policy.succeeded(1000.0, [1100.0, None, 900.0, 5000.0])
    assert policy.resets == (1100.0, 900.0, 5000.0)
    assert policy.due_at(True) == 1100.0 + RESET_SLACK, "just after the next reset"
    assert not policy.is_due(1104.9, True) and policy.is_due(1105.0, True)
    policy.succeeded(1000.0, [1010.0])
    assert policy.due_at(True) == 1000.0 + MIN_GAP, "never twice within the least gap"
    policy.succeeded(1000.0, [995.0])  # a reset at last + slack - 0 is already past
    assert policy.due_at(True) == 1300.0
    policy.succeeded(1000.0, [997.0])  # reset just before the fetch: its slack is still ahead
    assert policy.due_at(True) == 1000.0 + MIN_GAP
    policy.succeeded(1000.0, [])
    assert policy.due_at(True) == 1300.0
    policy.request()
    assert policy.due_at(True) == 1000.0 + MIN_GAP


def test_a_request_without_periodic_fetching() -> None:
    policy = FetchPolicy(periodic=False)
    policy.request()
    assert policy.due_at(True) == 0.0
    policy.succeeded(500.0, [])
    assert policy.due_at(True) is None and not policy.requested


def test_failures_back_off_and_retry_after_is_capped() -> None:
    policy = FetchPolicy(interval=300.0, periodic=True)
    assert policy.failed(1000.0) == 60.0 and policy.due_at(True) == 1060.0
    assert policy.failed(1060.0) == 120.0 and policy.due_at(True) == 1180.0
    assert policy.failed(1180.0, retry_after=30.0) == 240.0, "the backoff when it is longer"
    assert policy.failed(2000.0, retry_after=5000.0) == RETRY_AFTER_CAP
    assert policy.due_at(True) == 2000.0 + RETRY_AFTER_CAP and policy.failures == 4
    policy.request()
    assert policy.due_at(True) == 2000.0 + RETRY_AFTER_CAP, "a plain request keeps the backoff"
    policy.request(urgent=True)
    assert policy.due_at(True) == 2000.0 + MIN_GAP, "an urgent one forgets it, not the least gap"
    assert policy.not_before == 2000.0 + MIN_GAP
    policy.succeeded(2100.0, [])
    assert (policy.failures, policy.not_before, policy.requested) == (0, 0.0, False)


def test_a_failure_answers_the_request() -> None:
    policy = FetchPolicy(periodic=False)
    policy.request()
    policy.failed(100.0)
    assert policy.requested is False and policy.due_at(True) is None, "retried only when asked again"


def test_unknown_units_show_the_duration_as_the_server_sent_it() -> None:
    assert window_name({"duration": 1234567, "timeUnit": "TIME_UNIT_TICK"}) == ("1234567 tick", None)
    assert window_name({"duration": 1e15, "timeUnit": "TIME_UNIT_TICK"}) == ("1e+15 tick", None)
    assert window_name({"duration": 999999999999999, "timeUnit": "X"}) == ("999999999999999 x", None)


def test_urgent_request_before_any_attempt() -> None:
    policy = FetchPolicy(periodic=False)
    policy.request(urgent=True)
    assert policy.not_before == 0.0 and policy.due_at(True) == 0.0


# ----------------------------------------------------------------------------- found by mutation testing

def test_each_skipped_part_of_a_reply_is_logged_by_name(caplog) -> None:
    long_date = "not a date " + "x" * 60
    body = {
        "usage": {"used": 1, "limit": 2, "resetTime": long_date},
        "limits": [
            "garbage",
            {"window": {"duration": 5, "timeUnit": "TIME_UNIT_HOUR"}, "detail": []},
            {"window": {"duration": 1, "timeUnit": "TIME_UNIT_DAY"}, "detail": {"limit": "x"}},
            {"window": {"duration": 2, "timeUnit": "TIME_UNIT_DAY"}, "used": 1, "resetAt": -1},
        ],
    }
    with caplog.at_level(logging.INFO, logger="kimi_tray.kimi.usage_model"):
        usage = parse_usages(body)
    assert [w.name for w in usage.windows] == ["Week", "2 d"]
    assert [r.getMessage() for r in caplog.records] == [
        f"Ignoring a usage reset time that is not a date: {long_date[:40]!r}.",
        "Ignoring usage limit #1: not an object.",
        "Ignoring usage window '5 h': not an object.",
        "Ignoring usage window '1 d': neither `used` nor `limit` and `remaining` are numbers.",
        "Ignoring a usage reset time out of any calendar: '-1'.",
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kimi_tray.kimi.usage_model"):
        parse_time("9" * 60)
        parse_usages({"usage": {"used": 1}, "limits": {"not": "a list"}})
        parse_usages({"usage": {"used": 1}})
    assert [r.getMessage() for r in caplog.records] == [
        f"Ignoring a usage reset time out of any calendar: {'9' * 40!r}.",
        "Ignoring the usage reply's `limits`: not a list.",
    ]


def test_format_errors_say_what_was_wrong() -> None:
    with pytest.raises(UsageFormatError) as info:
        parse_usages([])
    assert str(info.value) == "The Kimi usage reply is not a JSON object."
    with pytest.raises(UsageFormatError) as info:
        parse_usages({})
    assert str(info.value) == "The Kimi usage reply holds no quota window we can read."


@pytest.mark.parametrize("used", [float("nan"), "nan", "inf", "-inf", "Infinity", True, None, [1]])
def test_numbers_that_are_not_usable_are_unknown(used: object) -> None:
    with pytest.raises(UsageFormatError):
        parse_usages({"usage": {"used": used}})


def test_times_just_above_zero_and_epoch_text_only() -> None:
    assert parse_time(0.5) == 0.5 and parse_time("0.5") == 0.5
    assert parse_time("1e5") is None, "not epoch text, not a date"
    assert Usage.from_cache({"windows": [{"name": "w", "used": 1, "resets_at": 0.5}]}, 60.0).windows[0] \
        .resets_at == 0.5


def test_a_date_without_a_zone_is_utc_whatever_the_local_zone(monkeypatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse_time("2026-12-01T00:00:00") == 1_796_083_200.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_window_of_just_over_366_days_is_garbled() -> None:
    assert window_name({"duration": 366 * 86400, "timeUnit": "TIME_UNIT_SECOND"})[1] == 366 * 86400.0
    assert window_name({"duration": 366 * 86400 + 1, "timeUnit": "TIME_UNIT_SECOND"}) == ("", None)
