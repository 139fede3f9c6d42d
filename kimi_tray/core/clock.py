"""Time enters the engine through a Clock, so tests can run a week of tokens in seconds."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in epoch seconds (token expiries are wall-clock)."""

    def monotonic(self) -> float:
        """A clock that never jumps; compared with now() to detect suspend/resume."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to `seconds` or until `event` is set; True if it was set."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


class FakeClock:
    """A clock that jumps forward instead of sleeping; used by tests and benchmarks."""

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
