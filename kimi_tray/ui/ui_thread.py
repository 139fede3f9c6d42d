"""One door onto the UI thread: the only way the tray's other threads reach pystray.

pystray's backends differ in what they tolerate from other threads (its macOS backend calls
AppKit on the calling thread, its Win32 menu rebuild is not thread-safe), so the tray never
relies on them: the engine's listener, timers and worker threads hand each change to the thread
that runs the icon (`Icon.run()`, the main thread), through the toolkit's own mechanism:

- gtk / appindicator: `GLib.idle_add`, and `GLib.timeout_add` for timed redraws (pystray runs
  the GLib main loop on the main thread);
- macOS: `AppHelper.callAfter`, which runs the call on the AppKit main thread;
- Windows: a private window message posted to pystray's own window, whose handler (in pystray's
  message loop on the run thread) drains a queue;
- xorg: an X ClientMessage sent to pystray's own window, handled by pystray's event loop on the
  run thread (the same mechanism pystray uses for its own calls), which drains a queue.

Timed calls on the backends without a GLib loop use a timer thread that only hands the call on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
Call = Callable[[], object]
Cancel = Callable[[], None]
WIN32_CALL_MESSAGE_OFFSET = 0x40  # WM_USER + this; pystray itself uses WM_USER + 10 and + 11


class UiThread:
    """Runs calls on the UI thread. `post` must be safe to call from any thread."""

    def __init__(self, post: Callable[[Call], None]) -> None:
        self._post = post

    def call_soon(self, fn: Call) -> None:
        self._post(_logged(fn))

    def call_later(self, delay: float, fn: Call) -> Cancel:
        """Run fn on the UI thread after delay seconds; the returned cancel must be called on
        the UI thread (the tray cancels only from there), so a cancelled call never runs."""
        cancelled = False

        def fire() -> None:
            if not cancelled:
                fn()

        timer = threading.Timer(max(0.0, delay), lambda: self.call_soon(fire))
        timer.daemon = True
        timer.name = "ui-timer"
        timer.start()

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            timer.cancel()

        return cancel


class GLibThread(UiThread):
    """The GLib main loop that pystray's gtk and appindicator backends run on the main thread."""

    def __init__(self) -> None:
        from gi.repository import GLib

        self._glib = GLib

        def post(fn: Call) -> None:
            GLib.idle_add(_once(fn))

        super().__init__(post)

    def call_later(self, delay: float, fn: Call) -> Cancel:
        done = False

        def fire() -> bool:
            nonlocal done
            done = True
            _logged(fn)()
            return False

        source = self._glib.timeout_add(max(0, round(delay * 1000)), fire)

        def cancel() -> None:
            nonlocal done
            if not done:
                done = True
                self._glib.source_remove(source)

        return cancel


class QueuedThread(UiThread):
    """A queue drained on the UI thread when the backend's loop receives a wake-up message."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._wake = wake

        def post(fn: Call) -> None:
            self._calls.put(fn)
            try:
                self._wake()
            except Exception:  # the loop has ended (the icon stopped): nothing is left to update
                log.debug("Could not wake the UI thread", exc_info=True)

        super().__init__(post)

    def drain(self) -> None:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            fn()


def on_xorg_client_message(icon: Any, atom: int, handler: Callable[[Any], None]) -> None:
    """pystray's xorg loop dispatches X events by type, one handler per type: ClientMessages
    carrying `atom` go to `handler`, all others to the handler before it (pystray's own)."""
    import Xlib.X

    previous = icon._message_handlers.get(Xlib.X.ClientMessage, lambda event: None)

    def on_client_message(event: Any) -> None:
        if event.client_type == atom:
            handler(event)
        else:
            previous(event)

    icon._message_handlers[Xlib.X.ClientMessage] = on_client_message


def xorg_thread(icon: Any) -> QueuedThread:
    """A ClientMessage carrying our atom, sent to pystray's own window, drains the queue."""
    display, window = icon._display, icon._window
    atom = display.intern_atom("_KIMI_TRAY_UI_CALL")

    def wake() -> None:
        icon._send_message(window, atom)
        display.flush()

    handoff = QueuedThread(wake)
    on_xorg_client_message(icon, atom, lambda _event: handoff.drain())
    return handoff


def win32_thread(icon: Any) -> QueuedThread:
    """pystray's Win32 loop dispatches window messages through `_message_handlers`; ours drains
    the queue. Calls made before pystray creates its window wait for the first one after."""
    from pystray._util import win32

    message = win32.WM_USER + WIN32_CALL_MESSAGE_OFFSET

    def wake() -> None:
        if icon._hwnd:
            win32.PostMessage(icon._hwnd, message, 0, 0)

    handoff = QueuedThread(wake)
    icon._message_handlers[message] = lambda _wparam, _lparam: handoff.drain()
    return handoff


def appkit_thread() -> UiThread:
    from PyObjCTools import AppHelper

    return UiThread(AppHelper.callAfter)


def for_icon(icon: Any) -> UiThread:
    """The hand-off that fits the backend pystray chose for this icon."""
    backend = type(icon).__module__.rsplit("._", 1)[-1]
    if backend in ("gtk", "appindicator"):
        return GLibThread()
    if backend == "xorg":
        return xorg_thread(icon)
    if backend == "win32":
        return win32_thread(icon)
    if backend == "darwin":
        return appkit_thread()
    raise ValueError(f"no UI thread hand-off for the pystray backend {backend!r}")


def _once(fn: Call) -> Callable[[], bool]:
    def run() -> bool:
        fn()
        return False  # GLib: do not call again

    return run


def _logged(fn: Call) -> Call:
    """A failing UI update is logged, never lost silently, and never stops the loop."""

    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("A tray update failed")

    return run
