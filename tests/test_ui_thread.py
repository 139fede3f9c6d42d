"""The UI hand-off: calls from any thread run on the UI thread, in order, per backend. GLib runs
for real; macOS and Windows are faked at their edge (AppHelper.callAfter, PostMessage)."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest

from kimi_tray.ui import ui_thread


def from_workers(handoff: ui_thread.UiThread, count: int,
                 ran: list[tuple[int, threading.Thread]] | None = None) -> list[tuple[int, threading.Thread]]:
    """Post count calls, each from its own worker thread, one after another; each call, when it
    runs, appends its number and the thread it ran on to ran."""
    ran = [] if ran is None else ran
    for n in range(count):
        worker = threading.Thread(
            target=lambda n=n: handoff.call_soon(lambda: ran.append((n, threading.current_thread()))))
        worker.start()
        worker.join()
    return ran


def test_queued_calls_run_only_when_the_ui_thread_drains_in_order_and_survive_a_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    wakes: list[str] = []
    handoff = ui_thread.QueuedThread(lambda: wakes.append(threading.current_thread().name))
    handoff.call_soon(lambda: 1 / 0)
    ran = from_workers(handoff, 3)
    assert ran == [] and len(wakes) == 4, "nothing runs on the posting threads; each post wakes"
    handoff.drain()
    assert [n for n, _ in ran] == [0, 1, 2]
    assert {thread for _, thread in ran} == {threading.current_thread()}
    assert "A tray update failed" in caplog.text


def test_a_wake_up_after_the_loop_ended_is_not_an_error() -> None:
    def gone() -> None:
        raise ConnectionError("the display connection is closed")

    ui_thread.QueuedThread(gone).call_soon(lambda: None)


def test_call_later_runs_on_the_ui_thread_unless_cancelled() -> None:
    handoff = ui_thread.QueuedThread(lambda: None)
    ran: list[str] = []
    handoff.call_later(0.01, lambda: ran.append("kept"))
    cancel = handoff.call_later(0.01, lambda: ran.append("cancelled"))
    cancel()
    threading.Event().wait(0.2)
    assert ran == []
    handoff.drain()
    assert ran == ["kept"]


def test_glib_runs_calls_and_timeouts_on_the_loop_thread() -> None:
    GLib = pytest.importorskip("gi.repository.GLib")  # noqa: N806
    handoff = ui_thread.GLibThread()
    loop = GLib.MainLoop()
    ran = from_workers(handoff, 3)
    timed: list[threading.Thread] = []
    handoff.call_later(0.05, lambda: timed.append(threading.current_thread()))
    handoff.call_later(0.05, lambda: timed.append(threading.current_thread()))()  # cancelled
    handoff.call_later(0.2, loop.quit)
    loop.run()
    assert [n for n, _ in ran] == [0, 1, 2]
    assert {thread for _, thread in ran} | set(timed) == {threading.main_thread()}
    assert len(timed) == 1


class FakeWin32Icon:
    """pystray's Win32 icon as the hand-off sees it: a window handle and its message table."""

    def __init__(self) -> None:
        self._hwnd: int | None = None
        self._message_handlers: dict[int, Callable[[int, int], Any]] = {}


def test_win32_posts_a_private_message_that_pystrays_loop_drains(
        monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[tuple[int, int]] = []
    fake = types.ModuleType("pystray._util.win32")
    fake.WM_USER = 0x400  # type: ignore[attr-defined]
    fake.PostMessage = lambda hwnd, message, _w, _l: posted.append((hwnd, message))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pystray._util.win32", fake)
    util = types.ModuleType("pystray._util")
    util.win32 = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pystray._util", util)
    icon = FakeWin32Icon()
    handoff = ui_thread.win32_thread(icon)
    ran = from_workers(handoff, 1)
    assert posted == [] and ran == [], "no window yet: the call waits"
    icon._hwnd = 77
    from_workers(handoff, 1, ran)
    message = 0x400 + ui_thread.WIN32_CALL_MESSAGE_OFFSET
    assert posted == [(77, message)] and message not in (0x400 + 10, 0x400 + 11)
    icon._message_handlers[message](0, 0)  # pystray's window procedure, on its run thread
    assert [n for n, _ in ran] == [0, 0] and {t for _, t in ran} == {threading.current_thread()}


def test_macos_hands_calls_to_the_appkit_main_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    pending: list[Callable[[], object]] = []
    helper = types.ModuleType("PyObjCTools.AppHelper")
    helper.callAfter = pending.append  # type: ignore[attr-defined]
    package = types.ModuleType("PyObjCTools")
    package.AppHelper = helper  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "PyObjCTools", package)
    monkeypatch.setitem(sys.modules, "PyObjCTools.AppHelper", helper)
    handoff = ui_thread.for_icon(type("Icon", (), {"__module__": "pystray._darwin"})())
    ran = from_workers(handoff, 2)
    assert ran == [] and len(pending) == 2
    for call in pending:  # the AppKit run loop on the main thread
        call()
    assert [n for n, _ in ran] == [0, 1] and {t for _, t in ran} == {threading.current_thread()}


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="dummy"):
        ui_thread.for_icon(type("Icon", (), {"__module__": "pystray._dummy"})())
