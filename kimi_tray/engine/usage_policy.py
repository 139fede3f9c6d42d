"""The one place that decides when to ask the server for the quota (pure: time comes in as numbers).

Every `interval` while a desktop session shows the numbers, at once when asked (a renewal, a login,
the menu opening, a resume), just after each window's reset; never twice within `min_gap`, with
backoff after failures, and never while the token is dead or expired. Without a desktop session
(the daemon) only explicit requests fetch, so a server stays quiet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MIN_GAP = 60.0
BACKOFF_FIRST = 60.0
BACKOFF_CAP = 1800.0
RETRY_AFTER_CAP = 3600.0
RESET_SLACK = 5.0  # let the server roll the window over before we ask


def usage_backoff(failures: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))


@dataclass
class FetchPolicy:
    interval: float = 300.0
    periodic: bool = False
    min_gap: float = MIN_GAP
    last_attempt: float | None = None
    failures: int = 0
    not_before: float = 0.0
    requested: bool = False
    resets: tuple[float, ...] = ()

    def request(self, urgent: bool = False) -> None:
        """Fetch as soon as allowed; `urgent` (resume, login) also forgets the failure backoff."""
        self.requested = True
        if urgent and self.last_attempt is not None:
            self.not_before = min(self.not_before, self.last_attempt + self.min_gap)

    def due_at(self, token_ok: bool) -> float | None:
        """When the next fetch is due (epoch s), or None for 'not until something changes'."""
        if not token_ok:
            return None
        last = self.last_attempt
        candidates: list[float] = []
        if self.requested:
            candidates.append(0.0)
        if self.periodic:
            if last is None:
                candidates.append(0.0)
            else:
                candidates.append(self.not_before if self.failures else last + self.interval)
                upcoming = [r + RESET_SLACK for r in self.resets if r + RESET_SLACK > last]
                if upcoming:
                    candidates.append(min(upcoming))
        if not candidates:
            return None
        floor = self.not_before
        if last is not None:
            floor = max(floor, last + self.min_gap)
        return max(min(candidates), floor)

    def is_due(self, now: float, token_ok: bool) -> bool:
        due = self.due_at(token_ok)
        return due is not None and now >= due

    def succeeded(self, now: float, resets: Iterable[float | None]) -> None:
        self.last_attempt, self.failures, self.not_before, self.requested = now, 0, 0.0, False
        self.resets = tuple(r for r in resets if r is not None)

    def failed(self, now: float, retry_after: float | None = None) -> float:
        """Record a failure; returns the delay before the next try."""
        self.last_attempt, self.requested = now, False
        self.failures += 1
        delay = usage_backoff(self.failures)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        self.not_before = now + delay
        return delay
