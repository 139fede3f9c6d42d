"""Resume listeners, in-process: which D-Bus messages the bus is asked to forward (jeepney's own
matching of real messages), a Windows listener started where Windows is not, and a macOS
registration that fails half-way. The listener on a private system bus is in
tests/test_resume_edges.py."""

from __future__ import annotations

import logging

import pytest
from jeepney import DBusAddress, HeaderFields, Message, new_method_call, new_signal

from kimi_tray.platform.resume import (
    LOGIND_INTERFACE,
    LOGIND_NAME,
    LOGIND_PATH,
    MacWakeListener,
    WindowsPowerListener,
    is_wake_signal,
    wake_match_rule,
)
from tests.test_resume_edges import Counter, FakeAppKit

LOGIND = DBusAddress(LOGIND_PATH, bus_name=LOGIND_NAME, interface=LOGIND_INTERFACE)


def from_logind(message: Message, sender: str = LOGIND_NAME) -> Message:
    """As the bus delivers it: with the sender filled in (for a match rule, the well-known name)."""
    message.header.fields[HeaderFields.sender] = sender
    return message


@pytest.mark.parametrize("going_to_sleep", [False, True])
def test_the_bus_forwards_loginds_prepare_for_sleep_either_way(going_to_sleep: bool) -> None:
    """Both directions reach us; only `is_wake_signal` tells the resume from the suspend."""
    message = from_logind(new_signal(LOGIND, "PrepareForSleep", "b", (going_to_sleep,)))
    assert wake_match_rule().matches(message) is True
    assert is_wake_signal(message) is (not going_to_sleep)


@pytest.mark.parametrize("message", [
    new_signal(LOGIND, "PrepareForShutdown", "b", (False,)),
    new_signal(DBusAddress(LOGIND_PATH, interface="org.freedesktop.login1.Session"),
               "PrepareForSleep", "b", (False,)),
    new_signal(DBusAddress("/org/freedesktop/login1/session/_31", interface=LOGIND_INTERFACE),
               "PrepareForSleep", "b", (False,)),
    new_method_call(LOGIND, "PrepareForSleep", "b", (False,)),
], ids=["other-member", "other-interface", "other-path", "method-call"])
def test_the_bus_keeps_everything_else_from_logind_away(message: Message) -> None:
    assert wake_match_rule().matches(from_logind(message)) is False


def test_the_bus_keeps_an_impostors_look_alike_away() -> None:
    message = from_logind(new_signal(LOGIND, "PrepareForSleep", "b", (False,)), sender=":1.42")
    assert wake_match_rule().matches(message) is False


def test_a_wake_needs_exactly_one_false_argument() -> None:
    assert is_wake_signal(new_signal(LOGIND, "PrepareForSleep", "b", (False,))) is True
    assert is_wake_signal(new_signal(LOGIND, "PrepareForSleep", "", ())) is False
    assert is_wake_signal(new_signal(LOGIND, "PrepareForSleep", "bb", (False, False))) is False


def test_the_windows_listener_elsewhere_gives_up_on_its_own_thread(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    woke = Counter()
    listener = WindowsPowerListener(woke)
    listener.stop()  # before start: no window to close
    assert listener.start() is listener
    thread = listener._thread
    assert thread is not None and thread.name == "kimi-resume"
    assert thread.daemon is True, "never holds up exit"
    thread.join(5)
    assert not thread.is_alive()
    (note,) = [r for r in caplog.records if r.name == "kimi_tray.platform.resume"]
    assert note.levelno == logging.INFO
    assert note.getMessage().startswith("No power broadcast from Windows (")
    assert note.getMessage().endswith("); noticing resume by the clock.")
    listener.stop()
    assert woke.count == 0


def test_a_macos_registration_that_failed_is_not_undone(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    appkit = FakeAppKit()

    def refuse(name, obj, queue, block):  # noqa: ANN001, ANN202
        raise RuntimeError("no run loop")

    appkit.center.addObserverForName_object_queue_usingBlock_ = refuse  # type: ignore[method-assign]
    listener = MacWakeListener(Counter(), appkit=appkit)
    assert listener.start() is listener
    listener.stop()
    assert appkit.center.removed == [], "nothing was registered, so nothing is removed"
    assert [r.getMessage() for r in caplog.records] == [
        "No wake notification from macOS (no run loop); noticing resume by the clock."]
