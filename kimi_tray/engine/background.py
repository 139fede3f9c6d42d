"""A request on its own thread with a deadline for the whole of it, whose late answer is still heard.

httpx's timeouts are per read: a server sending a byte now and then would hold the caller (and
the Kimi lock) for ever. So the request runs on a thread and the caller waits as long as it
chooses; an answer that comes after the caller stopped waiting goes to `on_late` (a rotated
token must never be dropped) instead of being lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from kimi_tray.core.errors import KimiTrayError

log = logging.getLogger(__name__)
T = TypeVar("T")


class BackgroundCall(Generic[T]):
    def __init__(self, work: Callable[[], T], name: str, give_up_after: float,
                 unexpected: Callable[[Exception], KimiTrayError],
                 on_done: Callable[[], None] = lambda: None,
                 on_late: Callable[[T], None] | None = None) -> None:
        """give_up_after: real seconds until a caller stops waiting for good (and may ask again);
        unexpected: the error to report for a bug in `work`; on_done: runs on the thread when the
        answer is there (wakes the engine); on_late: gets an answer that came after abandon()."""
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: T | KimiTrayError | None = None
        self._abandoned = False
        self._on_late = on_late
        self._on_done = on_done
        self._unexpected = unexpected
        self.give_up_at = time.monotonic() + give_up_after
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def _run(self, work: Callable[[], T]) -> None:
        outcome: T | KimiTrayError
        try:
            outcome = work()
        except KimiTrayError as exc:
            outcome = exc
        except Exception as exc:  # a thread must not die silently; the log says what happened
            log.exception("Unexpected error in a background request")
            outcome = self._unexpected(exc)
        with self._lock:
            self._outcome = outcome
            late = self._abandoned
            if not late:
                self._done.set()
        if late:
            # Done only once the late answer is kept: a caller that waits for this call (before
            # sending the same refresh token again) must find the token it brought.
            if self._on_late is not None and not isinstance(outcome, KimiTrayError):
                try:
                    self._on_late(outcome)
                except Exception:
                    log.exception("Could not keep a late answer")
            self._done.set()
        self._on_done()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.give_up_at

    def wait(self, seconds: float) -> bool:
        """Real seconds (the server is real even when the engine's clock is not)."""
        return self._done.wait(max(0.0, seconds))

    def abandon(self) -> bool:
        """Stop waiting; False when the answer came meanwhile (then take it with result())."""
        with self._lock:
            if self._done.is_set():
                return False
            self._abandoned = True
            return True

    def result(self) -> T:
        """The answer, or the error it ended with (a call that has not ended raises `missing`)."""
        outcome = self._outcome
        if outcome is None:
            raise self._unexpected(RuntimeError("no answer yet"))
        if isinstance(outcome, KimiTrayError):
            raise outcome
        return outcome
