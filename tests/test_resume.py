"""Resume from sleep: logind's signal on a private system bus renews the token within seconds.

The bus is a real dbus-daemon; the test plays logind (it owns org.freedesktop.login1 there). The
daemon under test is a real process whose wall clock libfaketime moves two hours forward while
it "sleeps", as a suspend does; its monotonic clock keeps running, as the test's does.
"""

from __future__ import annotations

import glob
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.engine.commands import Resumed
from kimi_tray.engine.scheduler import RESUME_RETRY, Engine
from kimi_tray.platform.resume import (
    PBT_APMRESUMEAUTOMATIC,
    PBT_APMRESUMESUSPEND,
    WM_POWERBROADCAST,
    GLibLogindListener,
    LogindListener,
    MacWakeListener,
    NullListener,
    WindowsPowerListener,
    resume_listener,
)
from tests.conftest import ROOT, kimi_file, read_json, require, wait_for, write_credentials
from tests.support.clock import FakeClock
from tests.support.system_bus import Counter

RESUME_WITHIN = 5.0
TWO_HOURS = 7200


# ----------------------------------------------------------------------------- the listener
@pytest.fixture(params=["jeepney", "glib"])
def logind_listener(request: pytest.FixtureRequest) -> Iterator:
    """Both listeners: jeepney on its own thread (the daemon), GLib's D-Bus client delivered by
    a GLib main loop (the tray's gtk backend runs one on its main thread)."""
    if request.param == "jeepney":
        yield LogindListener
        return
    request.getfixturevalue("glib_loop")
    yield GLibLogindListener


def test_logind_listener_hears_the_wake_and_not_the_sleep(system_bus, logind_listener) -> None:
    woke = Counter()
    listener = logind_listener(woke, address=system_bus.address).start()
    try:
        assert listener.ready.wait(5)
        system_bus.prepare_for_sleep(True)
        time.sleep(0.3)
        assert woke.count == 0
        system_bus.prepare_for_sleep(False)
        assert woke.event.wait(2)
        assert woke.count == 1
    finally:
        started = time.monotonic()
        listener.stop()
        assert time.monotonic() - started < 1  # a blocked receive is woken, not waited out


def test_logind_listener_ignores_an_impostor(system_bus, logind_listener) -> None:
    """Only the owner of org.freedesktop.login1 may announce a wake."""
    from jeepney import new_signal
    from jeepney.io.blocking import open_dbus_connection

    from tests.support.system_bus import LOGIN1

    woke = Counter()
    listener = logind_listener(woke, address=system_bus.address).start()
    impostor = open_dbus_connection(bus=system_bus.address)
    try:
        assert listener.ready.wait(5)
        impostor.send(new_signal(LOGIN1, "PrepareForSleep", "b", (False,)))
        time.sleep(0.5)
        assert woke.count == 0
    finally:
        impostor.close()
        listener.stop()


def test_no_system_bus_falls_back_quietly(tmp_path: Path, caplog, logind_listener) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    listener = logind_listener(Counter(), address=f"unix:path={tmp_path / 'no-bus'}").start()
    assert listener.ready.wait(5)
    listener.stop()
    notes = [r for r in caplog.records if r.name == "kimi_tray.platform.resume"]
    assert len(notes) == 1 and "noticing resume by the clock" in notes[0].getMessage()
    assert notes[0].levelno == logging.INFO


def test_each_platform_gets_its_listener() -> None:
    assert isinstance(resume_listener(Counter(), "linux"), LogindListener)
    assert isinstance(resume_listener(Counter(), "linux", glib=True), GLibLogindListener)
    assert isinstance(resume_listener(Counter(), "darwin"), MacWakeListener)
    assert isinstance(resume_listener(Counter(), "win32"), WindowsPowerListener)
    assert isinstance(resume_listener(Counter(), "freebsd14"), NullListener)


# ----------------------------------------------------------------------------- macOS and Windows
class FakeNotificationCenter:
    """Stands in for NSWorkspace's notification center (AppKit runs only on macOS)."""

    def __init__(self) -> None:
        self.observers: dict[str, object] = {}

    def addObserverForName_object_queue_usingBlock_(self, name, obj, queue, block):  # noqa: N802
        self.observers[name] = block
        return name

    def removeObserver_(self, token) -> None:  # noqa: N802
        del self.observers[token]


class FakeAppKit:
    NSWorkspaceDidWakeNotification = "NSWorkspaceDidWakeNotification"

    def __init__(self) -> None:
        self.center = FakeNotificationCenter()
        appkit = self

        class NSWorkspace:
            @staticmethod
            def sharedWorkspace():
                class Workspace:
                    def notificationCenter(self):
                        return appkit.center

                return Workspace()

        self.NSWorkspace = NSWorkspace


def test_macos_listener_registers_for_did_wake_and_unregisters() -> None:
    appkit, woke = FakeAppKit(), Counter()
    listener = MacWakeListener(woke, appkit=appkit).start()
    block = appkit.center.observers["NSWorkspaceDidWakeNotification"]
    block(object())
    assert woke.count == 1
    listener.stop()
    assert appkit.center.observers == {}


def test_macos_without_appkit_does_not_raise() -> None:
    MacWakeListener(Counter(), appkit=object()).start().stop()


def test_windows_power_broadcast_reports_one_resume() -> None:
    woke = Counter()
    listener = WindowsPowerListener(woke)
    listener.handle(WM_POWERBROADCAST, 0x0004, now=100.0)  # PBT_APMSUSPEND: going to sleep
    assert woke.count == 0
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, now=200.0)
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMESUSPEND, now=200.5)  # same resume, user input
    assert woke.count == 1
    listener.handle(0x0010, PBT_APMRESUMEAUTOMATIC, now=400.0)  # another message, same number
    assert woke.count == 1
    listener.handle(WM_POWERBROADCAST, PBT_APMRESUMEAUTOMATIC, now=900.0)  # the next resume
    assert woke.count == 2


# ----------------------------------------------------------------------------- the engine
def test_after_resume_a_failing_network_is_retried_quickly(settings, oauth_server) -> None:
    """Just woken, the Wi-Fi is still connecting: retry every second, not after 5, 10, 20 s."""
    clock = FakeClock()
    path = kimi_file(Path(settings.kimi_share_dir).parent)
    write_credentials(path, oauth_server.issue(), clock.now() - 10)  # expired
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 1.0)
    oauth_server.fail_next("drop")
    assert engine.step() >= 5.0  # no resume: the usual backoff

    write_credentials(path, oauth_server.issue(), clock.now() + 880)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 1.0)
    engine.step()
    clock.jump_wall(TWO_HOURS)
    engine.send(Resumed())
    oauth_server.fail_next("drop", "drop")
    before = oauth_server.successful_refreshes
    for _ in range(2):
        delay = engine.step()
        assert delay <= RESUME_RETRY
        clock.advance(delay)
    engine.step()
    assert oauth_server.successful_refreshes == before + 1
    assert read_json(path)["expires_at"] > clock.now() + 800


# ----------------------------------------------------------------------------- end to end
def libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


@pytest.fixture
def sleepy_daemon(env, home, oauth_server, system_bus, tmp_path) -> Iterator:
    """A real daemon on the private system bus with a wall clock the test can move."""
    require(libfaketime() is not None, "libfaketime (Debian package faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    log = tmp_path / "daemon.log"
    daemon_env = {**env, "DBUS_SYSTEM_BUS_ADDRESS": system_bus.address,
                  "LD_PRELOAD": libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(offset),
                  "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                  "KIMI_TRAY_OPENCLAW": "off"}  # the hand-off is not what is measured here
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "-v", "daemon"], env=daemon_env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # noqa: SIM115
    try:
        assert wait_for(lambda: "Listening for logind" in log.read_text()
                        and "Kimi: 14 min left" in log.read_text(), timeout=20), log.read_text()
        yield offset, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def suspend_two_hours(system_bus, offset: Path) -> float:
    system_bus.prepare_for_sleep(True)
    offset.write_text(f"+{TWO_HOURS}\n")  # the wall clock moves on while the machine sleeps
    return system_bus.prepare_for_sleep(False)


def renewed_after_suspend(path: Path, old_access: str) -> bool:
    data = read_json(path)
    return data["access_token"] != old_access and data["expires_at"] > time.time() + TWO_HOURS + 600


def test_daemon_renews_within_5_s_of_prepare_for_sleep_false(sleepy_daemon, system_bus, home,
                                                             oauth_server) -> None:
    offset, log = sleepy_daemon
    path = kimi_file(home)
    old_access = read_json(path)["access_token"]
    woke = suspend_two_hours(system_bus, offset)
    assert wait_for(lambda: renewed_after_suspend(path, old_access), timeout=RESUME_WITHIN + 5), \
        log.read_text()
    assert time.monotonic() - woke < RESUME_WITHIN, log.read_text()


def test_daemon_renews_within_5_s_while_the_network_comes_back(sleepy_daemon, system_bus, home,
                                                               oauth_server) -> None:
    offset, log = sleepy_daemon
    path = kimi_file(home)
    old_access = read_json(path)["access_token"]
    oauth_server.fail_next("drop", "drop")  # the first two attempts find no network
    woke = suspend_two_hours(system_bus, offset)
    assert wait_for(lambda: renewed_after_suspend(path, old_access), timeout=RESUME_WITHIN + 10), \
        log.read_text()
    assert time.monotonic() - woke < RESUME_WITHIN, log.read_text()


def test_a_renewal_just_before_the_sleep_does_not_hold_up_the_one_after_it(settings, oauth_server):
    """The minimum gap between two refreshes is kept on the monotonic clock too, which stands still
    while the machine sleeps: after two hours asleep the expired token is renewed at once, not a
    quarter of a lifetime later."""
    clock = FakeClock()
    path = kimi_file(Path(settings.kimi_share_dir).parent)
    write_credentials(path, oauth_server.issue(), clock.now() + 100)  # due now
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 1.0)
    engine.step()
    assert oauth_server.successful_refreshes == 1
    clock.advance(5)
    clock.jump_wall(TWO_HOURS)  # asleep: only the wall clock moves
    engine.send(Resumed())
    engine.step()
    assert oauth_server.successful_refreshes == 2
    assert read_json(path)["expires_at"] > clock.now() + 800
