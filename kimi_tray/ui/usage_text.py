"""Words for the quota: one line per window, its age, and the short form for a tooltip."""

from __future__ import annotations

import datetime as dt

from kimi_tray.core.usage import Usage, UsageWindow

DAY = 86400.0


def format_span(seconds: float) -> str:
    """'45 min', '2 h 10 min', '5 d' (rounded up to the minute: 'resets in 0 min' never shows)."""
    minutes = max(1, int(-(-max(0.0, seconds) // 60)))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days = int(seconds // DAY)
    hours = int((seconds - days * DAY) // 3600)
    return f"{days} d {hours} h" if days < 2 and hours else f"{days} d"


def _local(epoch: float, fmt: str) -> str:
    return dt.datetime.fromtimestamp(epoch).strftime(fmt)


def reset_words(resets_at: float | None, now: float) -> str:
    if resets_at is None:
        return ""
    left = resets_at - now
    if left <= 0:
        return "resets now"
    if left < DAY:
        return f"resets in {format_span(left)}"
    return f"resets {_local(resets_at, '%a %H:%M')} (in {format_span(left)})"


def used_words(window: UsageWindow) -> str:
    percent = window.percent_used
    if percent is not None:
        return f"{percent} % used"
    return f"{_count(window.used)} used"


def window_line(window: UsageWindow, now: float) -> str:
    """'Week: 25 % used, resets Mon 01:00 (in 5 d)' or '5 h: 25 % used, resets in 2 h 10 min'."""
    parts = [f"{window.name}: {used_words(window)}"]
    if window.exhausted:
        parts[0] = f"{window.name}: used up"
    reset = reset_words(window.resets_at, now)
    if reset:
        parts.append(reset)
    return ", ".join(parts)


def age_line(usage: Usage, now: float) -> str:
    """'as of 14:03', or 'as of 13:40, could not update: ...' when the numbers are not fresh."""
    if usage.fetched_at is None:
        return f"Usage unknown: {usage.error}" if usage.error else "Usage not fetched yet"
    head = f"as of {_local(usage.fetched_at, '%H:%M')}"
    if usage.error:
        return f"{head}, could not update: {usage.error}"
    if usage.is_stale(now):
        return f"{head} ({format_span(now - usage.fetched_at)} ago)"
    return head


def short_line(usage: Usage | None, now: float) -> str:
    """The most constrained window for a tooltip: '5 h: 25 % used' (with '(old)' when stale)."""
    if usage is None:
        return ""
    window = usage.most_constrained()
    if window is None:
        return ""
    text = f"{window.name}: {'used up' if window.exhausted else used_words(window)}"
    return text + (" (as of " + _local(usage.fetched_at, "%H:%M") + ")"
                   if usage.is_stale(now) and usage.fetched_at else "")


def plan_words(usage: Usage | None) -> str:
    return f"plan {usage.plan}" if usage is not None and usage.plan else ""


def reset_clock(resets_at: float | None, now: float) -> str:
    """'14:00' today, 'Mon 01:00' later in the week (for notifications)."""
    if resets_at is None:
        return "an unknown time"
    fmt = "%H:%M" if resets_at - now < DAY * 0.9 else "%a %H:%M"
    return _local(resets_at, fmt)


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
