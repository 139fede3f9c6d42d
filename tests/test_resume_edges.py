"""Resume listeners at their edges, in-process: which D-Bus message is logind's wake (real jeepney
messages; a private system bus for the listener itself), Windows' resume broadcasts around the 5 s
de-duplication window, the macOS registration (a stand-in AppKit), and which platform gets which."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from jeepney import DBusAddress, new_method_call, new_signal

from kimi_tray.platform.resume import (
    LOGIND_INTERFACE,
    LOGIND_PATH,
    PBT_APMRESUMEAUTOMATIC,
    PBT_APMRESUMESUSPEND,
    WM_POWERBROADCAST,
    LogindListener,
    MacWakeListener,
    NullListener,
    WindowsPowerListener,
    is_resume_broadcast,
    is_wake_signal,
    resume_listener,
)
from tests.support.system_bus import Counter

LOGIND = DBusAddress(LOGIND_PATH, bus_name="org.freedesktop.login1", interface=LOGIND_INTERFACE)


# -- Linux
def test_only_prepare_for_sleep_false_from_logind_is_a_wake() -> None:
    assert is_wake_signal(new_signal(LOGIND, "PrepareForSleep", "b", (False,))) is True
    assert is_wake_signal(new_signal(LOGIND, "PrepareForSleep", "b", (True,))) is False
    assert is_wake_signal(new_signal(LOGIND, "PrepareForShutdown", "b", (False,))) is False
    other_interface = DBusAddress(LOGIND_PATH, interface="org.freedesktop.login1.Session")
    assert is_wake_signal(new_signal(other_interface, "PrepareForSleep", "b", (False,))) is False
    other_path = DBusAddress("/org/freedesktop/login1/seat", interface=LOGIND_INTERFACE)
    assert is_wake_signal(new_signal(other_path, "PrepareForSleep", "b", (False,))) is False
    call = new_method_call(LOGIND, "PrepareForSleep", "b", (False,))
    assert is_wake_signal(call) is False, "a method call is no announcement"


def test_the_listener_wakes_only_on_the_resume_and_stops(system_bus, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="kimi_tray.platform.resume")
    woke = Counter()
    listener = LogindListener(woke, address=system_bus.address).start()
    try:
        assert listener.ready.wait(5)
        assert listener._thread is not None and listener._thread.daemon is True, "never holds up exit"
        assert listener._thread.name == "kimi-resume"
        system_bus.prepare_for_sleep(True)
        system_bus.prepare_for_sleep(False)
        assert woke.event.wait(5)
        system_bus.prepare_for_sleep(False)
        assert listener._thread is not None
        for _ in range(100):
            if woke.count == 2:
                break
            woke.event.clear()
            woke.event.wait(0.05)
        assert woke.count == 2
    finally:
        listener.stop()
    assert listener._thread is not None and not listener._thread.is_alive()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "Listening for logind's PrepareForSleep."
    assert messages.count("The system resumed from sleep; renewing if due.") == 2
    assert not any("Lost the system bus" in m for m in messages), "a stop is no loss"


def test_without_a_bus_the_listener_gives_up_once_and_quietly(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    listener = LogindListener(Counter(), address=f"unix:path={tmp_path / 'none'}").start()
    assert listener.ready.wait(5)
    listener.stop()
    (note,) = [r for r in caplog.records if r.name == "kimi_tray.platform.resume"]
    assert note.levelno == logging.INFO
    assert re.fullmatch(r"No resume signal from logind \(.*(No such file|Errno).*\); noticing resume "
                        r"by the clock instead\.", note.getMessage())


def test_a_bus_that_goes_away_is_a_loss_said_once(system_bus, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    listener = LogindListener(Counter(), address=system_bus.address).start()
    assert listener.ready.wait(5)
    system_bus.stop()
    assert listener._thread is not None
    listener._thread.join(5)
    assert not listener._thread.is_alive()
    losses = [r for r in caplog.records if "Lost the system bus" in r.getMessage()]
    assert len(losses) == 1 and losses[0].levelno == logging.INFO
    assert re.fullmatch(r"Lost the system bus \(.+\); noticing resume by the clock instead\.",
                        losses[0].getMessage())
    listener.stop()
    system_bus.proc.wait()


def test_a_listener_never_started_stops_fine() -> None:
    LogindListener(Counter()).stop()
    MacWakeListener(Counter(), appkit=FakeAppKit()).stop()
    listener = NullListener()
    assert listener.start() is listener
    listener.stop()


# -- Windows
@pytest.mark.parametrize(("message", "wparam", "resume"), [
    (WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, True), (WM_POWERBROADCAST, PBT_APMRESUMESUSPEND, True),
    (WM_POWERBROADCAST, 0x0004, False), (WM_POWERBROADCAST, 0x000A, False),
    (0x0010, PBT_APMRESUMEAUTOMATIC, False)])
def test_which_broadcast_is_a_resume(message: int, wparam: int, resume: bool) -> None:
    assert is_resume_broadcast(message, wparam) is resume


def test_a_resume_is_reported_once_within_five_seconds(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    woke = Counter()
    listener = WindowsPowerListener(woke)
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, now=5.01)  # soon after boot
    assert woke.count == 1
    woke.count = 0
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, now=100.0)
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMESUSPEND, now=105.0)  # the same resume
    assert woke.count == 1
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMESUSPEND, now=105.01)  # the next one
    assert woke.count == 2
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, now=110.0)  # 5 s after the last
    assert woke.count == 2
    listener.handle(WM_POWERBROADCAST, 0x0004, now=500.0)
    assert woke.count == 2
    assert [r.getMessage() for r in caplog.records] == [
        "The system resumed from sleep; renewing if due."] * 3


# -- macOS
class FakeCenter:
    def __init__(self) -> None:
        self.added: list[tuple] = []
        self.removed: list[object] = []

    def addObserverForName_object_queue_usingBlock_(self, name, obj, queue, block):  # noqa: N802
        self.added.append((name, obj, queue, block))
        return "token"

    def removeObserver_(self, token) -> None:  # noqa: N802
        self.removed.append(token)


class FakeAppKit:
    NSWorkspaceDidWakeNotification = "did-wake"

    def __init__(self) -> None:
        self.center = FakeCenter()
        center = self.center

        class Workspace:
            def notificationCenter(self):  # noqa: N802
                return center

        class NSWorkspace:
            @staticmethod
            def sharedWorkspace():  # noqa: N802
                return Workspace()

        self.NSWorkspace = NSWorkspace


def test_macos_listens_for_did_wake_on_the_main_queue_and_unregisters_once(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    appkit, woke = FakeAppKit(), Counter()
    listener = MacWakeListener(woke, appkit=appkit)
    assert listener.start() is listener
    ((name, obj, queue, block),) = appkit.center.added
    assert (name, obj, queue) == ("did-wake", None, None)
    block(object())
    assert woke.count == 1
    assert [r.getMessage() for r in caplog.records] == ["The system woke from sleep; renewing if due."]
    listener.stop()
    listener.stop()
    assert appkit.center.removed == ["token"]


def test_macos_without_appkit_logs_and_does_nothing(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    listener = MacWakeListener(Counter(), appkit=object())
    assert listener.start() is listener
    listener.stop()
    assert [r.getMessage() for r in caplog.records] == [
        "No wake notification from macOS ('object' object has no attribute 'NSWorkspace'); "
        "noticing resume by the clock."]


def test_each_platform_gets_its_listener(monkeypatch) -> None:
    woke = Counter()
    linux = resume_listener(woke, "linux")
    assert isinstance(linux, LogindListener) and linux.on_resume is woke and linux.address is None
    mac, windows = resume_listener(woke, "darwin"), resume_listener(woke, "win32")
    assert isinstance(mac, MacWakeListener) and mac.on_resume is woke
    assert isinstance(windows, WindowsPowerListener) and windows.on_resume is woke
    assert isinstance(resume_listener(woke, "freebsd14"), NullListener)
    assert isinstance(resume_listener(woke, "cygwin"), NullListener)
    monkeypatch.setattr("sys.platform", "darwin")
    assert isinstance(resume_listener(woke), MacWakeListener)


def test_the_system_bus_is_found_through_its_usual_variable(system_bus, monkeypatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus.address)
    woke = Counter()
    listener = LogindListener(woke).start()
    try:
        assert listener.ready.wait(5) and listener._connection is not None
        system_bus.prepare_for_sleep(False)
        assert woke.event.wait(5)
    finally:
        listener.stop()


def test_only_logind_itself_is_heard(system_bus) -> None:
    """Anyone on the bus may send a PrepareForSleep look-alike; only logind's name counts."""
    from jeepney.io.blocking import open_dbus_connection

    woke = Counter()
    listener = LogindListener(woke, address=system_bus.address).start()
    impostor = open_dbus_connection(bus=system_bus.address)
    try:
        assert listener.ready.wait(5)
        system_bus.logind()  # the name has its owner
        impostor.send(new_signal(LOGIND, "PrepareForSleep", "b", (False,)))
        assert not woke.event.wait(0.3)
        system_bus.prepare_for_sleep(False)
        assert woke.event.wait(5) and woke.count == 1
    finally:
        impostor.close()
        listener.stop()
