"""The quota as Kimi reports it: a frozen model and a parser that survives odd replies.

`GET {base}/usages` answers with numbers usually as strings and some fields absent; anything we
cannot read is skipped with a log line, never a crash and never a made-up number.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

WEEK_NAME = "Week"
UNIT_SECONDS = {
    "TIME_UNIT_SECOND": 1,
    "TIME_UNIT_MINUTE": 60,
    "TIME_UNIT_HOUR": 3600,
    "TIME_UNIT_DAY": 86400,
    "TIME_UNIT_WEEK": 7 * 86400,
}


class UsageFormatError(ValueError):
    """The reply is not the JSON object we expect (the message says what was wrong)."""


@dataclass(frozen=True)
class UsageWindow:
    """One quota window: the weekly quota, or a rolling window such as the 5-hour one."""

    name: str
    used: float
    limit: float | None
    remaining: float | None
    resets_at: float | None = None
    length: float | None = None  # the window's span in seconds, when the server says

    @property
    def fraction_used(self) -> float | None:
        if not self.limit or self.limit <= 0:
            return None
        return max(0.0, min(1.0, self.used / self.limit))

    @property
    def percent_used(self) -> int | None:
        """Whole percent; 100 only when the window really is used up."""
        fraction = self.fraction_used
        if fraction is None:
            return None
        percent = round(100 * fraction)
        return 99 if percent >= 100 and not self.exhausted else percent

    @property
    def exhausted(self) -> bool:
        if self.remaining is not None:
            return self.remaining <= 0
        return self.limit is not None and self.used >= self.limit


@dataclass(frozen=True)
class Usage:
    """What we last learned about the quota, and whether the latest attempt to update it failed.

    `fetched_at` is when the numbers were fetched (None: never); `error` is the last fetch's
    failure (empty after a success). Numbers older than `stale_after` seconds are stale.
    """

    plan: str = ""
    fetched_at: float | None = None
    windows: tuple[UsageWindow, ...] = ()
    error: str = ""
    stale_after: float = 360.0
    checked_at: float | None = None  # the last attempt, successful or not

    def is_stale(self, now: float) -> bool:
        if self.fetched_at is None or self.error:
            return True
        return now - self.fetched_at > self.stale_after

    def most_constrained(self) -> UsageWindow | None:
        """The window closest to its limit (the one the icon and tooltip show)."""
        known = [w for w in self.windows if w.fraction_used is not None]
        if not known:
            return None
        return max(known, key=lambda w: (w.exhausted, w.fraction_used or 0.0))

    def failed(self, message: str, now: float) -> Usage:
        return replace(self, error=message, checked_at=now)

    def to_json(self, now: float) -> dict[str, Any]:
        """The `usage` object of `status --json` (resets_at in epoch seconds)."""
        stale = self.is_stale(now)
        return {
            "plan": self.plan or None,
            "fetched_at": self.fetched_at,
            "stale": stale,
            "error": self.error or None,
            "windows": [
                {"name": w.name, "used": _plain(w.used), "limit": _plain(w.limit),
                 "remaining": _plain(w.remaining), "resets_at": _plain(w.resets_at), "stale": stale}
                for w in self.windows
            ],
        }

    def to_cache(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "fetched_at": self.fetched_at,
            "error": self.error,
            "checked_at": self.checked_at,
            "windows": [
                {"name": w.name, "used": w.used, "limit": w.limit, "remaining": w.remaining,
                 "resets_at": w.resets_at, "length": w.length}
                for w in self.windows
            ],
        }

    @classmethod
    def from_cache(cls, data: Any, stale_after: float) -> Usage | None:
        """The last numbers from our own file; anything unexpected means no cache."""
        if not isinstance(data, dict):
            return None
        try:
            windows = tuple(
                UsageWindow(clean_name(str(w["name"])), float(w["used"]), _opt_float(w.get("limit")),
                            _opt_float(w.get("remaining")), _epoch(_opt_float(w.get("resets_at"))),
                            _opt_float(w.get("length")))
                for w in data.get("windows") or ()
            )
            return cls(plan=clean_name(str(data.get("plan") or "")),
                       fetched_at=_opt_float(data.get("fetched_at")), windows=windows,
                       error=str(data.get("error") or ""), stale_after=stale_after,
                       checked_at=_opt_float(data.get("checked_at")))
        except (KeyError, TypeError, ValueError):
            return None


def _plain(value: float | None) -> int | float | None:
    """Whole numbers as ints in JSON (the server counts requests), others as they are."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- parsing
def parse_usages(body: Any, stale_after: float = 360.0, fetched_at: float | None = None) -> Usage:
    """Read the `/usages` reply. Raises UsageFormatError only when nothing usable is in it."""
    if not isinstance(body, dict):
        raise UsageFormatError("The Kimi usage reply is not a JSON object.")
    windows: list[UsageWindow] = []
    weekly = body.get("usage")
    if weekly is not None:
        window = _window(WEEK_NAME, weekly, 7 * 86400.0)
        if window is not None:
            windows.append(window)
    limits = body.get("limits")
    if isinstance(limits, list):
        for index, entry in enumerate(limits):
            window = _limit_window(entry, index)
            if window is not None:
                windows.append(window)
    elif limits is not None:
        log.info("Ignoring the usage reply's `limits`: not a list.")
    if not windows:
        raise UsageFormatError("The Kimi usage reply holds no quota window we can read.")
    return Usage(plan=plan_name(body.get("user")), fetched_at=fetched_at, windows=_unique(windows),
                 stale_after=stale_after, checked_at=fetched_at)


def _unique(windows: list[UsageWindow]) -> tuple[UsageWindow, ...]:
    """'Week', 'Week (2)': names tell the lines apart, and notifications are remembered by name."""
    seen: dict[str, int] = {}
    named = []
    for window in windows:
        count = seen[window.name] = seen.get(window.name, 0) + 1
        named.append(window if count == 1 else replace(window, name=f"{window.name} ({count})"))
    return tuple(named)


def plan_name(user: Any) -> str:
    """'LEVEL_INTERMEDIATE' -> 'Intermediate'; unknown shapes give an empty name."""
    level = user.get("membershipLevel") if isinstance(user, dict) else None
    if not isinstance(level, str) or not level.strip():
        return ""
    words = re.sub(r"^(MEMBERSHIP_)?LEVEL_", "", level.strip()).replace("_", " ")
    return clean_name(words.title() if words.isupper() else words)


NAME_MAX = 24


def clean_name(text: str) -> str:
    """A name from the server as one short printable line: it goes into a menu and a tooltip."""
    words = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return words if len(words) <= NAME_MAX else words[:NAME_MAX - 1].rstrip() + "…"


def _limit_window(entry: Any, index: int) -> UsageWindow | None:
    if not isinstance(entry, dict):
        log.info("Ignoring usage limit #%d: not an object.", index + 1)
        return None
    name, length = window_name(entry.get("window"))
    detail = entry.get("detail", entry)
    return _window(clean_name(name) or f"Limit {index + 1}", detail, length)


def window_name(window: Any) -> tuple[str, float | None]:
    """{'duration': 300, 'timeUnit': 'TIME_UNIT_MINUTE'} -> ('5 h', 18000); unknown units as they come."""
    if not isinstance(window, dict):
        return "", None
    duration = _number(window.get("duration"))
    unit = window.get("timeUnit")
    unit = unit if isinstance(unit, str) else ""
    if duration is None or duration <= 0:
        return "", None
    seconds = UNIT_SECONDS.get(unit)
    if seconds is None:
        word = re.sub(r"^TIME_UNIT_", "", unit).lower() or "units"
        return f"{_num(duration)} {word}", None
    if duration * seconds > 366 * 86400:  # no quota window spans years: a garbled reply
        return "", None
    return span_name(duration * seconds), duration * seconds


def span_name(seconds: float) -> str:
    if seconds % (7 * 86400) == 0:
        weeks = int(seconds // (7 * 86400))
        return WEEK_NAME if weeks == 1 else f"{weeks} weeks"
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)} d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds)} s"


def _window(name: str, detail: Any, length: float | None) -> UsageWindow | None:
    if not isinstance(detail, dict):
        log.info("Ignoring usage window %r: not an object.", name)
        return None
    limit = _number(detail.get("limit"))
    used = _number(detail.get("used"))
    remaining = _number(detail.get("remaining"))
    if used is None and limit is not None and remaining is not None:
        used = max(0.0, limit - remaining)
    if remaining is None and limit is not None and used is not None:
        remaining = max(0.0, limit - used)
    if used is None:
        log.info("Ignoring usage window %r: neither `used` nor `limit` and `remaining` are numbers.",
                 name)
        return None
    resets_at = parse_time(detail.get("resetTime", detail.get("resetAt")))
    return UsageWindow(name, used, limit, remaining, resets_at, length)


def _number(value: Any) -> float | None:
    """Numbers arrive as strings ("2048") or numbers; anything else is unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value else None  # NaN is unknown
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def _num(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


_FRACTION = re.compile(r"(\.\d{6})\d+")
_EPOCH_TEXT = re.compile(r"-?\d+(\.\d+)?")


LAST_EPOCH = 253402300799.0  # 9999-12-31 23:59:59 UTC: later times cannot be shown as dates


def _epoch(value: float | None) -> float | None:
    """A time we can show, or None (0 and negative times, or beyond year 9999, are garbage)."""
    return value if value is not None and 0 < value <= LAST_EPOCH else None


def parse_time(value: Any) -> float | None:
    """ISO 8601 ('2026-12-01T00:00:00Z', nanoseconds allowed) or epoch seconds/milliseconds."""
    number = _number(value) if not isinstance(value, str) or _EPOCH_TEXT.fullmatch(value.strip()) else None
    if number is not None:
        epoch = _epoch(number / 1000 if number > 1e11 else number)
        if epoch is None:
            log.info("Ignoring a usage reset time out of any calendar: %r.", str(value)[:40])
        return epoch
    if not isinstance(value, str) or not value.strip():
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        log.info("Ignoring a usage reset time that is not a date: %r.", value[:40])
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return _epoch(moment.timestamp())
