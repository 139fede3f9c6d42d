"""A request on its own thread: answers, errors, bugs, the deadline, and a late answer kept.

Real threads; each "request" blocks on an Event the test controls, so nothing sleeps for real
beyond a few milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from kimi_tray.core.errors import KimiTrayError, TransientError
from kimi_tray.engine.background import BackgroundCall


class Bug(KimiTrayError):
    pass


def unexpected(exc: Exception) -> KimiTrayError:
    return Bug(f"bug: {type(exc).__name__}: {exc}")


def gated(answer: object = "token", error: Exception | None = None):
    gate = threading.Event()

    def work() -> object:
        gate.wait(10)
        if error is not None:
            raise error
        return answer
    return gate, work


def test_an_answer_in_time_is_the_result_and_wakes_the_caller() -> None:
    woke = threading.Event()
    gate, work = gated("token")
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected, on_done=woke.set)
    assert call.running is True and call.wait(0) is False
    gate.set()
    assert call.wait(5) is True and call.running is False
    assert woke.wait(5)
    assert call.result() == "token"
    assert call.abandon() is False, "the answer came: nothing to abandon"


def test_the_thread_carries_the_name_given() -> None:
    names: list[str] = []
    call: BackgroundCall[None] = BackgroundCall(lambda: names.append(threading.current_thread().name),
                                                "refresh-token", 30, unexpected)
    assert call.wait(5)
    assert names == ["refresh-token"]


def test_a_known_error_is_raised_by_result_as_it_was() -> None:
    error = TransientError("server said 503", retry_after=7)
    gate, work = gated(error=error)
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    gate.set()
    assert call.wait(5)
    with pytest.raises(TransientError) as raised:
        call.result()
    assert raised.value is error


def test_a_bug_becomes_the_unexpected_error_and_is_logged(caplog) -> None:
    caplog.set_level(logging.ERROR)
    gate, work = gated(error=ZeroDivisionError("boom"))
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    gate.set()
    assert call.wait(5)
    with pytest.raises(Bug, match="^bug: ZeroDivisionError: boom$"):
        call.result()
    assert [r.getMessage() for r in caplog.records] == ["Unexpected error in a background request"]


def test_no_answer_yet_raises_the_unexpected_error() -> None:
    gate, work = gated()
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    with pytest.raises(Bug, match="^bug: RuntimeError: no answer yet$"):
        call.result()
    gate.set()


def test_the_deadline_is_real_seconds_from_the_start() -> None:
    before = time.monotonic()
    gate, work = gated()
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    after = time.monotonic()
    assert before + 30 <= call.give_up_at <= after + 30
    assert call.expired is False
    gone: BackgroundCall[object] = BackgroundCall(work, "req", 0, unexpected)
    assert gone.expired is True, "at the deadline itself it has expired"
    gate.set()


def test_wait_never_takes_a_negative_time() -> None:
    gate, work = gated()
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    started = time.monotonic()
    assert call.wait(-5) is False
    assert time.monotonic() - started < 1
    gate.set()


def test_a_late_answer_goes_to_on_late_before_the_call_counts_as_done() -> None:
    kept: list[object] = []
    keeping = threading.Event()
    release = threading.Event()

    def on_late(answer: object) -> None:
        keeping.set()
        release.wait(10)
        kept.append(answer)

    woke = threading.Event()
    gate, work = gated("rotated")
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected, on_done=woke.set,
                                                  on_late=on_late)
    assert call.abandon() is True
    gate.set()
    assert keeping.wait(5)
    assert call.running is True, "still running while the late answer is being kept"
    release.set()
    assert call.wait(5) and kept == ["rotated"]
    assert woke.wait(5)


def test_a_late_error_is_not_handed_to_on_late() -> None:
    kept: list[object] = []
    gate, work = gated(error=TransientError("503"))
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected, on_late=kept.append)
    assert call.abandon()
    gate.set()
    assert call.wait(5)
    assert kept == []


def test_a_late_answer_without_on_late_still_ends_the_call() -> None:
    gate, work = gated("rotated")
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected)
    assert call.abandon()
    gate.set()
    assert call.wait(5) and call.result() == "rotated"


def test_a_failing_on_late_is_logged_and_the_call_still_ends(caplog) -> None:
    caplog.set_level(logging.ERROR)

    def on_late(answer: object) -> None:
        raise OSError("disk gone")

    woke = threading.Event()
    gate, work = gated("rotated")
    call: BackgroundCall[object] = BackgroundCall(work, "req", 30, unexpected, on_done=woke.set,
                                                  on_late=on_late)
    assert call.abandon()
    gate.set()
    assert call.wait(5) and woke.wait(5)
    assert [r.getMessage() for r in caplog.records] == ["Could not keep a late answer"]


def test_the_request_thread_never_keeps_the_process_alive() -> None:
    gate, work = gated()
    BackgroundCall(work, "slow-request", 30, unexpected)
    try:
        (thread,) = [t for t in threading.enumerate() if t.name == "slow-request"]
        assert thread.daemon is True
    finally:
        gate.set()
