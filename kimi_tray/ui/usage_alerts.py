"""Quota notifications that matter: each threshold once per window episode, remembered on disk.

An episode of a threshold ends when the window drops below it again (its reset), so the next
crossing notifies again; a restart in between never repeats a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kimi_tray.core.usage import Usage
from kimi_tray.stores.usage_store import UsageStore
from kimi_tray.ui.usage_text import reset_clock, window_line

if TYPE_CHECKING:
    from kimi_tray.core.config import Settings
    from kimi_tray.core.health import Status
    from kimi_tray.ui.notify import Notifier

log = logging.getLogger(__name__)


class UsageAlerts:
    def __init__(self, notifier: Notifier, store: UsageStore, thresholds: Sequence[float] = (80, 95),
                 exhausted: bool = True, back: bool = False) -> None:
        self.notifier = notifier
        self.store = store
        self.thresholds = sorted(float(t) for t in thresholds)
        self.exhausted = exhausted
        self.back = back
        self._seen: float | None = None

    def on_status(self, status: Status) -> None:
        """Engine listener: judge each new successful fetch once; stale numbers never notify."""
        usage = getattr(status, "usage", None)
        if usage is None or usage.is_stale(status.now) or usage.fetched_at == self._seen:
            return
        self._seen = usage.fetched_at
        self.check(usage, status.now)

    def check(self, usage: Usage, now: float) -> None:
        memory = self.store.load_alerts()
        changed = False
        for window in usage.windows:
            fraction = window.fraction_used
            if fraction is None:
                continue
            percent = 100 * fraction
            before: Any = memory.get(window.name)
            if not isinstance(before, dict):  # nothing remembered, or not in our shape
                before = {}
            levels = before.get("levels")
            levels = levels if isinstance(levels, list) else []
            sent = {float(t) for t in levels if isinstance(t, (int, float)) and not isinstance(t, bool)}
            was_exhausted = before.get("exhausted") is True
            sent = {t for t in sent if percent >= t}  # below a threshold again: a new episode
            if window.exhausted:
                if not was_exhausted and self.exhausted:
                    self._send("Kimi quota exhausted",
                               f"The {window.name} quota is used up; it resets at "
                               f"{reset_clock(window.resets_at, now)}.")
                    sent |= set(self.thresholds)
            elif was_exhausted and self.back:
                self._send("Kimi quota is back",
                           f"The {window.name} quota has reset: {window_line(window, now)}.")
            crossed = [t for t in self.thresholds if percent >= t and t not in sent]
            if crossed:
                self._send(f"Kimi quota {max(crossed):g} % used", window_line(window, now) + ".")
                sent |= set(crossed)
            after = {"levels": sorted(sent), "exhausted": window.exhausted}
            if before != after:
                memory[window.name] = after
                changed = True
        if changed:
            self.store.save_alerts(memory)

    def _send(self, title: str, message: str) -> None:
        log.info("%s: %s", title, message)
        self.notifier.send(title, message)


def alerts_from_settings(settings: Settings, notifier: Notifier, store: UsageStore) -> UsageAlerts:
    return UsageAlerts(notifier, store, settings.usage_thresholds,
                       exhausted=settings.usage_notify_exhausted, back=settings.usage_notify_back)
