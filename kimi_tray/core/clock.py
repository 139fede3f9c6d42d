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
