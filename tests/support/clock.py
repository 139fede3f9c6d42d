"""A clock for tests: it jumps forward instead of sleeping, so a week of tokens runs in seconds."""

from __future__ import annotations

import threading


class FakeClock:
    """Implements kimi_tray.core.clock.Clock; wait() advances time instead of sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock, as a suspend/resume does."""
        with self._lock:
            self._now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, seconds))
        return event.is_set()
