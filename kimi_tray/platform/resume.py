"""Hear the moment the computer wakes from sleep, so the token is renewed in seconds, not minutes.

One listener per platform, chosen once: logind's `PrepareForSleep(false)` on the D-Bus system bus
(Linux), the workspace did-wake notification (macOS), the power-broadcast resume message
(Windows). Where none can run, a listener that does nothing: the engine's wall/monotonic gap check
still notices a resume at its next wake-up. No listener ever raises into the app.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

OnResume = Callable[[], None]

LOGIND_NAME = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_INTERFACE = "org.freedesktop.login1.Manager"


class ResumeListener(Protocol):
    def start(self) -> ResumeListener: ...

    def stop(self) -> None: ...


class NullListener:
    """No wake signal here; the engine's clock-gap check is the only resume detector."""

    def start(self) -> NullListener:
        return self

    def stop(self) -> None:
        pass


# ----------------------------------------------------------------------------- Linux
def is_wake_signal(message: Any) -> bool:
    """True for logind's PrepareForSleep(false): the system has just resumed."""
    from jeepney import HeaderFields, MessageType

    header = message.header
    return (
        header.message_type is MessageType.signal
        and header.fields.get(HeaderFields.interface) == LOGIND_INTERFACE
        and header.fields.get(HeaderFields.member) == "PrepareForSleep"
        and header.fields.get(HeaderFields.path) == LOGIND_PATH
        and message.body == (False,)
    )


def wake_match_rule() -> Any:
    """What the bus forwards to the listener: logind's PrepareForSleep and nothing else, so other
    traffic on the system bus never wakes it (`is_wake_signal` still checks each message)."""
    from jeepney import MatchRule

    return MatchRule(type="signal", sender=LOGIND_NAME, interface=LOGIND_INTERFACE,
                     member="PrepareForSleep", path=LOGIND_PATH)


class LogindListener:
    """Listens on the system bus (or `address`, for a private test bus) with jeepney."""

    def __init__(self, on_resume: OnResume, address: str | None = None) -> None:
        self.on_resume = on_resume
        self.address = address
        self._connection: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.ready = threading.Event()  # set once subscribed (or once it gave up)

    def start(self) -> LogindListener:
        self._thread = threading.Thread(target=self._run, name="kimi-resume", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(OSError):  # wakes the blocked receive; close() does not
                connection.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def _subscribe(self) -> Any:
        from jeepney import message_bus
        from jeepney.io.blocking import open_dbus_connection

        connection = open_dbus_connection(bus=self.address or "SYSTEM")
        connection.send_and_get_reply(message_bus.AddMatch(wake_match_rule()), timeout=5)
        return connection

    def _run(self) -> None:
        try:
            self._connection = self._subscribe()
        except Exception as exc:  # no system bus (containers, WSL), no jeepney, a refusing policy
            log.info("No resume signal from logind (%s); noticing resume by the clock instead.", exc)
            self.ready.set()
            return
        self.ready.set()
        log.debug("Listening for logind's PrepareForSleep.")
        try:
            while not self._stopping:
                message = self._connection.receive()
                if is_wake_signal(message):
                    log.info("The system resumed from sleep; renewing if due.")
                    self.on_resume()
        except Exception as exc:
            if not self._stopping:
                log.info("Lost the system bus (%s); noticing resume by the clock instead.", exc)
        finally:
            self._connection.close()


class GLibLogindListener:
    """The same signal through GLib's D-Bus client, delivered by the GLib main loop the tray
    already runs (its gtk and appindicator backends): no jeepney and no thread of its own."""

    def __init__(self, on_resume: OnResume, address: str | None = None) -> None:
        self.on_resume = on_resume
        self.address = address
        self._connection: Any = None
        self._subscription = 0
        self.ready = threading.Event()  # set once subscribed (or once it gave up)

    def start(self) -> GLibLogindListener:
        try:
            from gi.repository import Gio

            if self.address is None:
                connection = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
            else:
                flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                         | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
                connection = Gio.DBusConnection.new_for_address_sync(self.address, flags, None, None)
            # The bus routes to us only what the owner of logind's name sends.
            self._subscription = connection.signal_subscribe(
                LOGIND_NAME, LOGIND_INTERFACE, "PrepareForSleep", LOGIND_PATH, None,
                Gio.DBusSignalFlags.NONE, self._signal)
            self._connection = connection
            log.debug("Listening for logind's PrepareForSleep.")
        except Exception as exc:  # no system bus (containers, WSL), a refusing policy
            log.info("No resume signal from logind (%s); noticing resume by the clock instead.",
                     getattr(exc, "message", exc))
        self.ready.set()
        return self

    def _signal(self, *args: Any) -> None:
        parameters = args[5]  # connection, sender, path, interface, member, parameters, data
        if parameters.unpack() == (False,):
            log.info("The system resumed from sleep; renewing if due.")
            self.on_resume()

    def stop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.signal_unsubscribe(self._subscription)
            if self.address is not None:  # the system bus is shared with the rest of the process
                with contextlib.suppress(Exception):
                    connection.close_sync(None)


# ----------------------------------------------------------------------------- macOS
class MacWakeListener:
    """NSWorkspaceDidWakeNotification via PyObjC (which pystray's macOS backend already needs).

    `appkit` is injectable so the registration can be checked where AppKit does not exist; the
    notification arrives on the main thread's run loop, which pystray runs."""

    def __init__(self, on_resume: OnResume, appkit: Any = None) -> None:
        self.on_resume = on_resume
        self._appkit = appkit
        self._token: Any = None
        self._center: Any = None

    def start(self) -> MacWakeListener:
        try:
            appkit = self._appkit
            if appkit is None:
                import AppKit as appkit  # type: ignore[import-not-found,no-redef]
            self._center = appkit.NSWorkspace.sharedWorkspace().notificationCenter()
            self._token = self._center.addObserverForName_object_queue_usingBlock_(
                appkit.NSWorkspaceDidWakeNotification, None, None, self._woke)
        except Exception as exc:
            log.info("No wake notification from macOS (%s); noticing resume by the clock.", exc)
        return self

    def _woke(self, _notification: Any) -> None:
        log.info("The system woke from sleep; renewing if due.")
        self.on_resume()

    def stop(self) -> None:
        if self._center is not None and self._token is not None:
            self._center.removeObserver_(self._token)
            self._token = None


# ----------------------------------------------------------------------------- Windows
WM_POWERBROADCAST = 0x0218
PBT_APMRESUMEAUTOMATIC = 0x0012
PBT_APMRESUMESUSPEND = 0x0007
WM_DESTROY = 0x0002
WM_CLOSE = 0x0010


def is_resume_broadcast(message: int, wparam: int) -> bool:
    """Windows sends PBT_APMRESUMEAUTOMATIC on every resume (SUSPEND too when a user acts)."""
    return message == WM_POWERBROADCAST and wparam in (PBT_APMRESUMEAUTOMATIC, PBT_APMRESUMESUSPEND)


class WindowsPowerListener:
    """A hidden top-level window (message-only windows get no broadcasts) on its own thread."""

    def __init__(self, on_resume: OnResume) -> None:
        self.on_resume = on_resume
        self._thread: threading.Thread | None = None
        self._hwnd = 0
        self._last_resume = 0.0

    def start(self) -> WindowsPowerListener:
        self._thread = threading.Thread(target=self._run, name="kimi-resume", daemon=True)
        self._thread.start()
        return self

    def handle(self, message: int, wparam: int, now: float) -> None:
        """One resume fires both AUTOMATIC and SUSPEND: report it once."""
        if is_resume_broadcast(message, wparam) and now - self._last_resume > 5:
            self._last_resume = now
            log.info("The system resumed from sleep; renewing if due.")
            self.on_resume()

    def _run(self) -> None:  # pragma: no cover, no mutate block - Windows only
        try:
            import ctypes
            import time
            from ctypes import wintypes

            user32 = ctypes.windll.user32  # type: ignore[attr-defined]
            lresult = ctypes.c_ssize_t
            wndproc_type = ctypes.WINFUNCTYPE(  # type: ignore[attr-defined]
                lresult, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)
            user32.DefWindowProcW.restype = lresult
            user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM,
                                              wintypes.LPARAM]

            def wndproc(hwnd: int, message: int, wparam: int, lparam: int) -> int:
                try:
                    self.handle(message, wparam, time.monotonic())
                except Exception:
                    log.exception("The resume callback failed")
                if message == WM_DESTROY:
                    user32.PostQuitMessage(0)
                return int(user32.DefWindowProcW(hwnd, message, wparam, lparam))

            self._wndproc = wndproc_type(wndproc)  # keep a reference for the window's lifetime

            class WNDCLASS(ctypes.Structure):
                _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", wndproc_type),
                            ("cbClsExtra", ctypes.c_int), ("cbWndExtra", ctypes.c_int),
                            ("hInstance", wintypes.HINSTANCE), ("hIcon", wintypes.HICON),
                            ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                            ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]

            klass = WNDCLASS()
            klass.lpfnWndProc = self._wndproc
            klass.lpszClassName = "KimiTrayPowerListener"
            if not user32.RegisterClassW(ctypes.byref(klass)):
                raise OSError("RegisterClassW failed")
            self._hwnd = user32.CreateWindowExW(0, klass.lpszClassName, "kimi-tray", 0, 0, 0, 0, 0,
                                                None, None, None, None)
            if not self._hwnd:
                raise OSError("CreateWindowExW failed")
            msg = wintypes.MSG()
            while user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
                user32.TranslateMessage(ctypes.byref(msg))
                user32.DispatchMessageW(ctypes.byref(msg))
        except Exception as exc:
            log.info("No power broadcast from Windows (%s); noticing resume by the clock.", exc)

    def stop(self) -> None:  # pragma: no cover, no mutate block - Windows only
        if self._hwnd:
            import ctypes

            ctypes.windll.user32.PostMessageW(self._hwnd, WM_CLOSE, 0, 0)  # type: ignore[attr-defined]
            self._hwnd = 0


def resume_listener(on_resume: OnResume, platform: str | None = None,
                    glib: bool = False) -> ResumeListener:
    """The listener for this platform (not started); glib: the caller runs a GLib main loop."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return GLibLogindListener(on_resume) if glib else LogindListener(on_resume)
    if platform == "darwin":
        return MacWakeListener(on_resume)
    if platform == "win32":
        return WindowsPowerListener(on_resume)
    return NullListener()
